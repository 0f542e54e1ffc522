"""Test hook: IOBENCH_FAULT=<fault>:<backend>:<direction>[,...] injects real faults into those cells.

- `kill-qemu` (instruments.fault_hook): SIGKILLs QEMU one second into the cell's first window that runs;
- `kill-switch` (the same): SIGKILLs the vhost-user switch (testpmd) one second into that window;
- `stop-qemu` (the same): SIGSTOPs QEMU one second into that window (its monitor silent);
- `iperf3-port` (`adjust_spec`, for the runner): points the client at a port where the guest has no server;
- `stall-l1` (the lab's host): freezes L1 (QMP stop) as that cell's round-1 traffic starts.

One parser for every user, so that the runner and the lab read the variable alike.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any


def injected() -> list[tuple[str, str]]:
    """(fault, "<backend>:<direction>") for every item of IOBENCH_FAULT."""
    out = []
    for item in filter(None, os.environ.get("IOBENCH_FAULT", "").split(",")):
        fault, _, where = item.partition(":")
        out.append((fault, where))
    return out


def at(where: str) -> list[str]:
    """The faults injected at `where` ("<backend>:<direction>")."""
    return [fault for fault, here in injected() if here == where]


def adjust_spec(spec: Any, backend: str, direction: str) -> Any:
    """A traffic spec (traffic.TrafficSpec) with the `iperf3-port` fault applied where it is injected:
    nothing listens on that port, so the client fails with its own error."""
    if "iperf3-port" in at(f"{backend}:{direction}"):
        return replace(spec, port=spec.port + 98)
    return spec
