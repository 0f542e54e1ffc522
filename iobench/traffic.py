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
from dataclasses import dataclass
from typing import Any

from iobench.errors import CellFailed
from iobench.topology import enter_netns


@dataclass(frozen=True)
class TrafficSpec:
    server: str
    direction: str  # rx: host->guest (client sends); tx: guest->host (-R)
    duration_s: int
    omit_s: int = 1


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
    if spec.direction == "tx":
        argv.append("-R")
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


def run(spec: TrafficSpec, netns: str, timeout_extra: float = 30.0) -> str:
    """Run the client to completion inside `netns` and return its raw JSON (saved
    by the caller before `parse`, so a failure keeps iperf3's own output).

    The client is killed (with its process group) if it overruns the window by
    `timeout_extra` seconds or if iobench is interrupted.
    """
    proc = subprocess.Popen(client_argv(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: enter_netns(netns), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=spec.duration_s + spec.omit_s + timeout_extra)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise CellFailed(f"iperf3 did not finish within {spec.duration_s + spec.omit_s + timeout_extra:.0f} s") from exc
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if not out.strip():
        raise CellFailed(f"iperf3 exited with status {proc.returncode} and no JSON: {err.strip()[:200]}")
    return out
