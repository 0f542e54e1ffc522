"""Test hook: IOBENCH_FAULT=<fault>:<backend>:<direction>[,...] injects real faults into those cells.

- `kill-qemu` (runner): SIGKILLs QEMU one second into the cell's first VM attempt;
- `iperf3-port` (runner): points the client at a port where the guest has no server;
- `stall-l1` (the lab's host): freezes L1 (QMP stop) as that cell's round-1 traffic starts.

One parser for every user, so that the runner and the lab read the variable alike.
"""

from __future__ import annotations

import os


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
