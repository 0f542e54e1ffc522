"""Traffic from the iperf3 program (-J) and, for request/response, sockperf, run in the run's
namespace against the guest's servers.

Why the programs and not Python wrappers: iperf3's JSON is its stable interface, sockperf's
ping-pong summary (round trips completed, percentiles of the round-trip time from its own samples)
is what the field reads, and the exact command line is saved with the results. A failed or empty
result is an error with the tool's own text, never a zero row.

Workloads: `stream` (iperf3, saturation: bulk transfer one way), `rr` (sockperf ping-pong: one
request in flight, each answered before the next is sent; per-transaction figures are properties
of the device model and driver, not of the host's speed; sockperf's messages carry its 14-byte
header: a message is never shorter) and `paced` (iperf3 UDP at a fixed offered datagram rate,
well below saturation: exits and interrupts per datagram at that rate, and the loss). Why iperf3
and not sockperf for paced: the guest already carries it, it paces in both directions (`-R`), and
its receiver counts every datagram by sequence number, so loss is the receiver's count in either
direction; sockperf's under-load mode counts loss only on the replies it asked for.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench.errors import CellFailed
from iobench.topology import enter_netns

IPERF3_PORT = 5201  # where the guest's `iperf3 -s` listens
# iperf3's words for a peer that stopped answering (the guest's network or the guest itself hung),
# as opposed to a peer that answers "no" (connection refused: no server there).
_UNREACHABLE = ("No route to host", "Connection timed out", "Host is unreachable")


class GuestUnresponsive(CellFailed):
    """The client overran its window or the guest stopped answering while its QEMU still runs: the
    guest is hung, and its VM is booted again for the cells left (like a VM that died)."""
SOCKPERF_PORT = 11111  # where the guest's `sockperf server` listens (TCP and UDP)
SOCKPERF_MIN_MESSAGE = 14
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TOTAL = re.compile(r"\[Total Run\] RunTime=(?P<t>[\d.]+) sec;.*?SentMessages=(?P<sent>\d+); ReceivedMessages=(?P<recv>\d+)")
_VALID = re.compile(r"\[Valid Duration\] RunTime=(?P<t>[\d.]+) sec; SentMessages=(?P<sent>\d+); "
                    r"ReceivedMessages=(?P<recv>\d+)")
_PERCENTILE = re.compile(r"---> percentile (?P<p>[\d.]+) =\s*(?P<v>[\d.]+)")
_MAX = re.compile(r"---> <MAX> observation =\s*(?P<v>[\d.]+)")


@dataclass(frozen=True)
class TrafficSpec:
    server: str
    direction: str  # rx: host->guest (client sends); tx: guest->host (-R)
    duration_s: int
    omit_s: int = 1
    protocol: str = "tcp"
    streams: int = 1
    message_bytes: int = 0  # 0: iperf3's default (128 KiB for TCP)
    udp_bitrate: str = "1G"
    port: int = IPERF3_PORT
    kind: str = "stream"  # stream (iperf3), rr (sockperf ping-pong) or paced (iperf3 UDP at rate_pps)
    rate_pps: int = 0  # paced: offered datagrams per second

    @property
    def tool(self) -> str:
        return "sockperf" if self.kind == "rr" else "iperf3"

    @property
    def raw_name(self) -> str:
        """The file name suffix of the client's raw output in raw/."""
        return "sockperf.txt" if self.kind == "rr" else "iperf3.json"


@dataclass(frozen=True)
class TrafficResult:
    """What iperf3 measured: receiver-side goodput over the timed part (omit excluded)."""

    bits_per_second: float
    bytes_received: int
    bytes_sent: int
    retransmits: int | None
    raw: dict[str, Any]
    transactions: int | None = None  # rr: round trips completed in the client's whole run
    transactions_per_s: float | None = None  # rr: over sockperf's valid duration (its start and end trimmed)
    latency_us: dict[str, float] | None = None  # rr: round-trip time percentiles (LATENCY_POINTS)
    # paced: schema.PACED_COLUMNS from iperf3's sums over the whole run (paced cells omit nothing, so the
    # datagrams are those of the window the counters cover)
    paced: dict[str, float] | None = None

# How long a client may run past its window before the guest counts as hung (the lab's phase budget,
# labwatch.traffic_budget, includes it); read at each call, so a test of a hung guest need not wait it out.
OVERRUN_SLACK_S = 30.0

# iperf3 sends a paced burst every pacing tick (1000 us by default); a tick no longer than the gap
# between two datagrams keeps them spaced instead of sent in bursts of rate/1000.
PACING_TICK_US_MAX = 1000


def client_argv(spec: TrafficSpec) -> list[str]:
    if spec.kind == "rr":
        return rr_argv(spec)
    if spec.kind == "paced":
        return paced_argv(spec)
    argv = ["iperf3", "-c", spec.server, "-J", "-t", str(spec.duration_s), "-O", str(spec.omit_s)]
    if spec.protocol == "udp":
        argv += ["-u", "-b", spec.udp_bitrate]
    if spec.streams != 1:
        argv += ["-P", str(spec.streams)]
    if spec.message_bytes:
        argv += ["-l", str(spec.message_bytes)]
    if spec.direction == "tx":
        argv.append("-R")
    if spec.port != IPERF3_PORT:
        argv += ["-p", str(spec.port)]
    return argv


def paced_argv(spec: TrafficSpec) -> list[str]:
    """iperf3 UDP at `rate_pps` datagrams of `message_bytes`: -b is their bit rate; no omitted
    seconds (the sums must cover the counters' window); a pacing tick no longer than the gap
    between two datagrams."""
    tick = max(1, min(PACING_TICK_US_MAX, 1_000_000 // spec.rate_pps))
    argv = ["iperf3", "-c", spec.server, "-J", "-t", str(spec.duration_s), "-O", "0", "-u",
            "-b", str(spec.rate_pps * spec.message_bytes * 8), "-l", str(spec.message_bytes),
            "--pacing-timer", str(tick)]
    if spec.direction == "tx":
        argv.append("-R")
    if spec.port != IPERF3_PORT:
        argv += ["-p", str(spec.port)]
    return argv


def parse_paced(text: str) -> TrafficResult:
    """iperf3 UDP -J: offered = datagrams the sender sent per second; achieved = datagrams the
    receiver got (its count by sequence number minus its lost count) per second; loss in %."""
    result = parse(text)
    end = result.raw.get("end", {})
    sent, got = end.get("sum_sent") or {}, end.get("sum_received") or {}
    if not sent.get("packets") or not got.get("seconds"):
        raise CellFailed("iperf3 reported no UDP datagram counts (sum_sent/sum_received packets)")
    datagrams, lost = int(sent["packets"]), int(got.get("lost_packets") or 0)
    counted = int(got.get("packets") or 0)
    received = max(counted - lost, 0)
    paced = {"datagrams": datagrams, "offered_pps": round(datagrams / float(sent["seconds"]), 1),
             "achieved_pps": round(received / float(got["seconds"]), 1),
             "loss_pct": round(100.0 * lost / counted, 3) if counted else 100.0,
             "jitter_ms": round(float(got.get("jitter_ms") or 0.0), 4)}
    return TrafficResult(result.bits_per_second, result.bytes_received, result.bytes_sent, None, result.raw,
                         paced=paced)


def rr_argv(spec: TrafficSpec) -> list[str]:
    """sockperf ping-pong: round-trip times (--full-rtt), no warm-up messages outside the count."""
    argv = ["sockperf", "ping-pong", "-i", spec.server, "-p", str(SOCKPERF_PORT if spec.port == IPERF3_PORT else spec.port),
            "-t", str(spec.duration_s), "--full-rtt", "--dontwarmup"]
    if spec.protocol == "tcp":
        argv.append("--tcp")
    if spec.message_bytes:
        argv += ["-m", str(spec.message_bytes)]
    return argv


def parse_rr(text: str, message_bytes: int) -> TrafficResult:
    """Parse sockperf ping-pong's summary. Transactions are the round trips of the whole run (the
    window the counters cover); the rate and percentiles are sockperf's, over its valid duration.
    Raises CellFailed with sockperf's own text when it has no result, GuestUnresponsive when the
    replies stopped before its warm-up ended (a hung path, not a measurement)."""
    clean = _ANSI.sub("", text)
    total, valid = _TOTAL.search(clean), _VALID.search(clean)
    if total and not valid and int(total["recv"]) > 0:
        # One request in flight at a time and no reply timeout: a ping-pong whose replies stop waits out
        # its timer. Answers that stopped inside the warm-up mean the path (guest, switch) hung mid-window
        # while the VM still runs: boot again, like an iperf3 that cannot reach the guest any more.
        raise GuestUnresponsive(
            f"the path stopped answering: sockperf got {total['recv']} replies, then none for the rest of its "
            f"{float(total['t']):.1f} s (request {total['sent']} never answered)")
    if not total or not valid or int(total["recv"]) == 0:
        said = [ln for ln in clean.splitlines() if "ERROR" in ln or "error" in ln]
        raise CellFailed("sockperf completed no round trip: " + (said[-1] if said else clean.strip()[-200:]))
    size = max(message_bytes, SOCKPERF_MIN_MESSAGE)
    points = {f"p{p.rstrip('0').rstrip('.').replace('.', '')}": float(v) for p, v in _PERCENTILE.findall(clean)}
    latency = {"p50": points.get("p50"), "p90": points.get("p90"), "p99": points.get("p99"),
               "p999": points.get("p999"), "max": float(m["v"]) if (m := _MAX.search(clean)) else None}
    received, runtime = int(total["recv"]), float(total["t"])
    return TrafficResult(
        bits_per_second=2 * size * 8 * received / runtime,  # requests and responses, payload only
        bytes_received=size * received, bytes_sent=size * int(total["sent"]), retransmits=None,
        raw={"tool": "sockperf", "summary": clean}, transactions=received,
        transactions_per_s=round(int(valid["recv"]) / float(valid["t"]), 1),
        latency_us={k: v for k, v in latency.items() if v is not None})


def parse_output(text: str, spec: TrafficSpec) -> TrafficResult:
    if spec.kind == "rr":
        return parse_rr(text, spec.message_bytes)
    return parse_paced(text) if spec.kind == "paced" else parse(text)


def parse(text: str) -> TrafficResult:
    """Parse iperf3 -J output. Raises CellFailed with iperf3's own error text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CellFailed(f"iperf3 printed no JSON: {text.strip()[:200]!r}") from exc
    if data.get("error"):
        raise (GuestUnresponsive if any(w in data["error"] for w in _UNREACHABLE) else CellFailed)(
            f"iperf3: {data['error']}")
    end = data.get("end", {})
    received = end.get("sum_received") or end.get("sum")
    sent = end.get("sum_sent") or end.get("sum")
    if not received or not received.get("bytes"):
        raise CellFailed("iperf3 reported no received bytes")
    return TrafficResult(
        bits_per_second=float(received["bits_per_second"]),
        bytes_received=int(received["bytes"]),
        bytes_sent=int(sent["bytes"]),
        retransmits=sent.get("retransmits"),
        raw=data,
    )


def run(spec: TrafficSpec, netns: str,
        watch: Callable[[], str | None] | None = None, started: Callable[[int], None] | None = None,
        cpus: list[int] | None = None) -> str:
    """Run the client to completion inside `netns` and return its raw JSON (saved
    by the caller before `parse`, so a failure keeps iperf3's own output).

    The client is killed (with its process group) if it overruns the window by
    OVERRUN_SLACK_S seconds, if iobench is interrupted, or as soon as `watch` (called
    about four times a second: the runner also samples its counters there) returns a
    reason (QEMU died: waiting for iperf3's own timeout would hang the cell).
    `started` gets the client's pid (the copy trace charges its copies to iperf3: the kernel
    may have named that pid python3, from before its exec). `cpus`: the client and every thread it
    makes run there (the placement's peer): this thread's affinity while it forks, which the child
    inherits, so the client starts on them rather than being moved there.
    """
    own = os.sched_getaffinity(0)
    if cpus:  # the child is born on its CPUs: moved there after the fork, it would start with a migration
        os.sched_setaffinity(0, cpus)
    try:
        proc = subprocess.Popen(client_argv(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: enter_netns(netns), start_new_session=True)
    finally:
        if cpus:
            os.sched_setaffinity(0, own)
    if started:
        started(proc.pid)
    limit = spec.duration_s + spec.omit_s + OVERRUN_SLACK_S
    deadline = time.monotonic() + limit
    stop: str | None = None  # why iobench stopped the client itself
    overran = False
    out = err = ""
    try:
        while stop is None:
            try:
                out, err = proc.communicate(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                stop = watch() if watch else None
                if stop is None and time.monotonic() > deadline:
                    stop = f"{spec.tool} did not finish within {limit:.0f} s"
                    overran = True
    finally:
        if proc.poll() is None:  # overrun, peer gone, or interrupted: no iperf3 outlives the cell
            _kill_group(proc)
    if stop:
        raise (GuestUnresponsive if overran else CellFailed)(stop)
    if not out.strip():
        raise CellFailed(f"{spec.tool} exited with status {proc.returncode} and no output: {err.strip()[:200]}")
    return out


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()



def listening(pid: int, port: int = IPERF3_PORT) -> bool:
    """Whether the namespace of `pid` has a TCP socket listening on `port` (IPv4 or IPv6)."""
    suffix = f":{port:04X}"
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == "0A":  # 0A = LISTEN
                return True
    return False


def bound_udp(pid: int, port: int) -> bool:
    """Whether the namespace of `pid` has a UDP socket bound to `port`."""
    suffix = f":{port:04X}"
    try:
        lines = Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(len(f := ln.split()) > 1 and f[1].endswith(suffix) for ln in lines)


@contextmanager
def server(netns: str, timeout: float = 10.0, spec: TrafficSpec | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`iperf3 -s` (or, for an rr spec, `sockperf server`) inside `netns` (the native row's stand-in
    for the guest), stopped on exit."""
    rr = spec is not None and spec.kind == "rr"
    argv = (["sockperf", "server", "-i", spec.server, "-p", str(SOCKPERF_PORT)] + (["--tcp"] if spec.protocol == "tcp"
            else []) if rr and spec is not None else ["iperf3", "-s"])
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: enter_netns(netns), start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not (bound_udp(proc.pid, SOCKPERF_PORT) if rr and spec is not None and spec.protocol == "udp"
                   else listening(proc.pid, SOCKPERF_PORT if rr else IPERF3_PORT)):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr and proc.poll() is not None else ""
                raise CellFailed(f"{argv[0]} server did not start listening in {netns}: {err.strip()[:200]}")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
