"""QEMU's syscall byte counters and CPU time per thread, from /proc.

Why /proc/<pid>/io: `rchar` and `wchar` count every byte the process moved
through read/write-family syscalls, which is exactly the user/kernel copy that
QEMU's userspace datapath pays per packet (tap read/writev) and that vhost-net
removes.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ThreadCPU:
    """CPU time of one thread, with the name QEMU gave it (-name ...,debug-threads=on)."""

    tid: int
    comm: str
    kind: str
    cpu_s: float


def parse_io(text: str) -> dict[str, int]:
    """Parse /proc/<pid>/io ("key: value" lines)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            out[key.strip()] = int(value)
    return out


def read_io(pid: int) -> dict[str, int]:
    return parse_io(Path(f"/proc/{pid}/io").read_text())


def parse_stat_cpu_s(stat: str) -> float:
    """utime+stime in seconds from a /proc/.../stat line; comm may contain spaces and
    parentheses, so fields are counted after the last ')'."""
    rest = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / CLK_TCK


def thread_kind(comm: str, tid: int, pid: int) -> str:
    """Thread kind from its name: vCPU threads are "CPU n/KVM" or "CPU n/TCG"."""
    if comm.startswith("CPU ") and "/" in comm:
        return "vcpu"
    if comm.startswith("vhost-"):
        return "vhost"
    if tid == pid:
        return "main"
    if comm.startswith("IO "):
        return "iothread"
    return "other"


def thread_states(pid: int) -> dict[int, dict[str, Any]]:
    """A process's threads by tid: name, scheduler state (R running, S sleeping, D uninterruptible,
    T stopped) and CPU seconds; a thread that ends while read is left out (the lab's L1 diagnosis,
    a QEMU that SIGKILL did not end)."""
    found: dict[int, dict[str, Any]] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
            found[int(task.name)] = {"tid": int(task.name), "comm": (task / "comm").read_text().strip(),
                                     "state": stat[stat.rindex(")") + 2], "cpu_s": parse_stat_cpu_s(stat)}
        except (OSError, ValueError):
            continue
    return found


def read_threads(pid: int, vhost_tids: Collection[int] | None = None) -> list[ThreadCPU]:
    """Every thread of `pid`, plus vhost worker kernel threads serving it.

    On kernels before 6.4 the vhost worker is a kernel thread named
    `vhost-<qemu pid>`, not a task of QEMU, so it is found by name: a scan of every
    process, unless `vhost_tids` says which they are (found before; empty: none can be,
    as for a backend without vhost). The scan is most of a sample's cost in the lab.
    """
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            cpu = parse_stat_cpu_s((task / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue
        tid = int(task.name)
        out.append(ThreadCPU(tid, comm, thread_kind(comm, tid, pid), cpu))
    if vhost_tids is None:
        return out + vhost_workers(pid)
    return out + [t for t in map(_worker, vhost_tids) if t is not None and t.tid not in {o.tid for o in out}]


def _worker(tid: int) -> ThreadCPU | None:
    """A known vhost worker's CPU time now (None: it is gone)."""
    try:
        comm = Path(f"/proc/{tid}/comm").read_text().strip()
        return ThreadCPU(tid, comm, "vhost", parse_stat_cpu_s(Path(f"/proc/{tid}/stat").read_text()))
    except (FileNotFoundError, ProcessLookupError):
        return None


def vhost_workers(pid: int) -> list[ThreadCPU]:
    name = f"vhost-{pid}"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pid:
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
            cpu = parse_stat_cpu_s((entry / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.append(ThreadCPU(int(entry.name), name, "vhost", cpu))
    return found


def cpu_by_kind(threads: list[ThreadCPU]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in threads:
        out[t.kind] = out.get(t.kind, 0.0) + t.cpu_s
    return out


@dataclass(frozen=True)
class ChildrenUsage:
    """What the kernel accounts to this process's reaped children (RUSAGE_CHILDREN): the traffic client
    is the one child that ends inside a window, so a window's delta is its CPU and context switches."""

    cpu_s: float
    voluntary: int
    involuntary: int

    def __sub__(self, other: ChildrenUsage) -> ChildrenUsage:
        return ChildrenUsage(self.cpu_s - other.cpu_s, self.voluntary - other.voluntary,
                             self.involuntary - other.involuntary)


def children_usage() -> ChildrenUsage:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ChildrenUsage(r.ru_utime + r.ru_stime, r.ru_nvcsw, r.ru_nivcsw)
