"""Exits, traffic and CPU per time slice of a window: timeline.csv (columns: schema.TIMELINE_COLUMNS).

Why: a row's totals cannot show whether exits come in bursts, whether the idle
rate is steady enough to subtract, or whether throughput and exits drift within
a window. A timeline answers that from the same counters, read once per
`interval_s` while the window runs (light reads: link stats over netlink,
/proc, and under KVM one `query-stats`; under TCG only the trace file's size).

What sampling costs the guest: under TCG nothing (the trace file is already
being written). Under KVM, QEMU versions whose `query-stats` reads each vCPU's
stats on that vCPU's thread (`run_on_cpu`, e.g. QEMU 7.2) kick every vCPU out
once per sample: at most `vcpus` extra exits per sample, said in run.json.

Under TCG the slices of the trace log are cut at line boundaries (a sample can
land mid-line while QEMU writes), so the slices' trap counts add up exactly to
the window's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench.counters import tcg
from iobench.measure import Snapshot, cpu_delta, exit_counts
from iobench.schema import FRAME_AT_MTU, VM_CPU_KINDS

SAMPLING_COST = ("KVM: at most one exit per vCPU per sample where QEMU's query-stats runs on each vCPU thread "
                 "(run_on_cpu); TCG: none (trace file size only)")



class Sampler:
    """Takes a snapshot every `interval_s` when poked; keeps them all.

    Poked from loops that already wait (iperf3's watchdog, the idle window's
    sleep), so no thread shares the QMP connection with the runner."""

    def __init__(self, take: Callable[[], Snapshot], interval_s: float) -> None:
        self.take = take
        self.interval_s = interval_s
        self.samples: list[Snapshot] = []

    def first(self, snap: Snapshot) -> None:
        self.samples = [snap]

    def poke(self) -> None:
        if self.interval_s > 0 and self.samples and time.monotonic() - self.samples[-1].monotonic >= self.interval_s:
            self.samples.append(self.take())

    def last(self, snap: Snapshot) -> list[Snapshot]:
        """Close the window with its edge snapshot; returns every snapshot, edges included."""
        self.samples.append(snap)
        return self.samples

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, sampling on the way (the idle window)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
            self.poke()


def trace_slices(trace_log: Path, offsets: Sequence[int]) -> list[tcg.TrapCounts]:
    """Trap counts of each slice between consecutive offsets, cut at line starts."""
    if len(offsets) < 2:
        return []
    with trace_log.open("rb") as f:
        f.seek(offsets[0])
        data = f.read(max(0, offsets[-1] - offsets[0]))
    cuts = [0]
    for off in offsets[1:-1]:
        pos = max(off - offsets[0], cuts[-1])
        if pos == 0:
            cuts.append(0)
            continue
        nl = data.find(b"\n", pos - 1)  # a cut just after a newline stays where it is
        cuts.append(len(data) if nl < 0 else nl + 1)
    cuts.append(len(data))
    return [tcg.parse(data[a:b].decode(errors="replace").splitlines()) for a, b in zip(cuts, cuts[1:], strict=False)]


@dataclass(frozen=True)
class SliceId:
    run_id: str
    backend: str
    repeat: int
    attempt: int
    workload: str
    direction: str  # "" for the idle window: it belongs to the VM, not to a direction
    phase: str  # "idle" or "traffic"


def rows(ident: SliceId, snaps: Sequence[Snapshot], data_keys: tuple[str, ...], trace_log: Path | None) -> list[dict[str, Any]]:
    """One row per slice between consecutive snapshots. `data_keys` are the
    link counters whose bytes count as data (one direction; both for the idle window)."""
    offsets = [s.trace_offset for s in snaps]
    traps = trace_slices(trace_log, [o for o in offsets if o is not None]) \
        if trace_log is not None and None not in offsets else None  # a lost trace log: no trap slices
    t0 = snaps[0].monotonic
    out = []
    for i, (a, b) in enumerate(zip(snaps, snaps[1:], strict=False)):
        interval = b.monotonic - a.monotonic
        nbytes = sum(b.link[k] - a.link[k] for k in data_keys)
        row: dict[str, Any] = {
            "run_id": ident.run_id, "backend": ident.backend, "repeat": ident.repeat, "attempt": ident.attempt,
            "workload": ident.workload, "direction": ident.direction, "phase": ident.phase, "slice": i,
            "t_start_s": round(a.monotonic - t0, 3), "interval_s": round(interval, 3),
            "bytes": nbytes, "packets": round(nbytes / FRAME_AT_MTU, 1)}
        if (a.kvm is None or b.kvm is None) and traps is None:
            continue  # no exit source (native): nothing to put on a timeline
        row |= exit_counts(a, b, traps[i] if traps is not None else None)  # the same mapping as a row's
        cpu = cpu_delta(a.threads, b.threads)
        row |= {f"cpu_s_{k}": cpu[k] for k in VM_CPU_KINDS}
        row["exits_per_s"] = round(row["exits"] / interval, 1) if interval > 0 else None
        row["exits_per_packet"] = round(row["exits"] / row["packets"], 4) if row["packets"] else None
        out.append(row)
    return out
