"""Traffic from the iperf3 program (-J), run in the run's namespace against the guest's server.

Why the program and not a Python wrapper: iperf3's JSON is its stable interface,
and the exact command line is saved with the results. A failed or empty result
is an error with iperf3's own text, never a zero row.
"""

from __future__ import annotations

import json
import os
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


@dataclass(frozen=True)
class TrafficResult:
    """What iperf3 measured: receiver-side goodput over the timed part (omit excluded)."""

    bits_per_second: float
    bytes_received: int
    bytes_sent: int
    retransmits: int | None
    raw: dict[str, Any]


def client_argv(spec: TrafficSpec) -> list[str]:
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


def parse(text: str) -> TrafficResult:
    """Parse iperf3 -J output. Raises CellFailed with iperf3's own error text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CellFailed(f"iperf3 printed no JSON: {text.strip()[:200]!r}") from exc
    if data.get("error"):
        raise CellFailed(f"iperf3: {data['error']}")
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


def run(spec: TrafficSpec, netns: str, timeout_extra: float = 30.0,
        watch: Callable[[], str | None] | None = None, started: Callable[[int], None] | None = None) -> str:
    """Run the client to completion inside `netns` and return its raw JSON (saved
    by the caller before `parse`, so a failure keeps iperf3's own output).

    The client is killed (with its process group) if it overruns the window by
    `timeout_extra` seconds, if iobench is interrupted, or as soon as `watch` (called
    about four times a second: the runner also samples its counters there) returns a
    reason (QEMU died: waiting for iperf3's own timeout would hang the cell).
    `started` gets the client's pid (the copy trace charges its copies to iperf3: the kernel
    may have named that pid python3, from before its exec).
    """
    proc = subprocess.Popen(client_argv(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: enter_netns(netns), start_new_session=True)
    if started:
        started(proc.pid)
    limit = spec.duration_s + spec.omit_s + timeout_extra
    deadline = time.monotonic() + limit
    stop: str | None = None  # why iobench stopped the client itself
    out = err = ""
    try:
        while stop is None:
            try:
                out, err = proc.communicate(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                stop = watch() if watch else None
                if stop is None and time.monotonic() > deadline:
                    stop = f"iperf3 did not finish within {limit:.0f} s"
    finally:
        if proc.poll() is None:  # overrun, peer gone, or interrupted: no iperf3 outlives the cell
            _kill_group(proc)
    if stop:
        raise CellFailed(stop)
    if not out.strip():
        raise CellFailed(f"iperf3 exited with status {proc.returncode} and no JSON: {err.strip()[:200]}")
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


@contextmanager
def server(netns: str, timeout: float = 10.0) -> Iterator[subprocess.Popen[bytes]]:
    """`iperf3 -s` inside `netns` (the native row's stand-in for the guest), stopped on exit."""
    proc = subprocess.Popen(["iperf3", "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: enter_netns(netns), start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not listening(proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr and proc.poll() is not None else ""
                raise CellFailed(f"iperf3 server did not start listening in {netns}: {err.strip()[:200]}")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
