"""CPU time per thread kind and QEMU's syscall bytes, from /proc.

Why /proc: `/proc/<pid>/io` rchar+wchar count every byte QEMU moved through read/write-family
syscalls, the user/kernel copy its userspace datapath pays per packet (minus what QEMU wrote to its
own trace log, which is not a packet copy); `/proc/<pid>/task/*/stat` gives each thread's CPU time
by the name QEMU gave it (vCPU, main loop, I/O threads) and the vhost worker's. Native windows have
no QEMU: the peer's iperf3 server is the measured process, and only its CPU is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iobench.counters import proc, tcg
from iobench.instruments.base import Instrument, Reading, RunScope, Window
from iobench.schema import VM_CPU_KINDS


@dataclass(frozen=True)
class ProcSample:
    io: dict[str, int] | None
    threads: list[proc.ThreadCPU]
    trace_offset: int | None  # size of QEMU's -D log; None: the file is missing


def cpu_delta(before: list[proc.ThreadCPU], after: list[proc.ThreadCPU]) -> dict[str, float]:
    """CPU seconds per thread kind over the window, matched by thread id."""
    start = {t.tid: t.cpu_s for t in before}
    out = dict.fromkeys(VM_CPU_KINDS, 0.0)
    for t in after:
        out[t.kind] = out.get(t.kind, 0.0) + t.cpu_s - start.get(t.tid, 0.0)
    return {k: round(v, 3) for k, v in out.items()}


def trace_bytes(before: int | None, after: int | None, accel: str) -> tuple[int | None, list[str]]:
    """Bytes QEMU wrote to its own -D trace log in the window (they are in wchar, and are not packet
    copies), and why they are unknown when they are. Under KVM no trace event is on: a -D file QEMU
    never created had nothing written to it. Under TCG the trap counts are written there: a missing
    file is a lost measurement."""
    if before is not None and after is not None:
        return after - before, []
    if accel == "kvm":
        return 0, []
    return None, ["syscall_copy_bytes: QEMU's trace log was missing, its bytes could not be taken out of wchar"]


class ProcCounters(Instrument):
    name = "proc"

    def __init__(self, run: RunScope) -> None:
        self.run = run
        self.vhost_tids: list[int] | None = None  # the window's vhost workers, once found

    def start(self, window: Window) -> None:
        """A backend without vhost has no worker to look for; one with vhost is looked for once a window."""
        backend = window.boot.backend if window.boot else None
        self.vhost_tids = None if backend is not None and backend.vhost else []

    def sample(self, window: Window) -> ProcSample:
        threads = proc.read_threads(window.pid, self.vhost_tids)
        if self.vhost_tids is None:
            self.vhost_tids = [t.tid for t in threads if t.kind == "vhost"] or None  # none yet: look again
        if window.vm is None:
            return ProcSample(proc.read_io(window.pid), threads, None)
        return ProcSample(proc.read_io(window.pid), threads, tcg.log_size(window.vm.trace_log))

    def record(self, sample: Any) -> dict[str, Any]:
        return {"io": sample.io or {}, "threads": [t.__dict__ for t in sample.threads], "trace_offset": sample.trace_offset}

    def read(self, window: Window, samples: list[Any]) -> Reading:
        first, last = samples[0], samples[-1]
        window.facts["threads"] = last.threads
        if window.vm is None:  # native: the peer's iperf3 server, no QEMU
            server = sum(t.cpu_s for t in last.threads) - sum(t.cpu_s for t in first.threads)
            none: dict[str, Any] = {f"cpu_s_{k}": None for k in VM_CPU_KINDS}
            return Reading(columns={"copy_process": "none", "rchar": None, "wchar": None, "trace_log_bytes": None,
                                    "syscall_copy_bytes": None, **none, "cpu_s_iperf3_server": round(server, 3)})
        rchar = last.io["rchar"] - first.io["rchar"]
        wchar = last.io["wchar"] - first.io["wchar"]
        traced, na = trace_bytes(first.trace_offset, last.trace_offset, self.run.accel)
        cpu = cpu_delta(first.threads, last.threads)
        backend = window.boot.backend if window.boot else None
        vhost_missing = bool(backend and backend.vhost and not any(t.kind == "vhost" for t in last.threads))
        if vhost_missing:
            main = next((str(t.tid) for t in last.threads if t.kind == "main"), "<qemu pid>")
            na.append(f"cpu_s_vhost: no vhost-{main} worker thread was found, its CPU was not read")
        columns = {"copy_process": "qemu", "rchar": rchar, "wchar": wchar, "trace_log_bytes": traced,
                   "syscall_copy_bytes": rchar + wchar - traced if traced is not None else None,
                   **{f"cpu_s_{k}": cpu[k] for k in VM_CPU_KINDS}, "cpu_s_iperf3_server": None}
        if vhost_missing:
            columns["cpu_s_vhost"] = None
        slices = [{f"cpu_s_{k}": v for k, v in cpu_delta(a.threads, b.threads).items()}
                  for a, b in zip(samples, samples[1:], strict=False)]
        return Reading(columns=columns, na=["iperf3 server CPU is inside the guest", *na], slices=slices)
