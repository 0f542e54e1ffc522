"""Exits, traffic and CPU per time slice of a window: timeline.csv (columns: schema.TIMELINE_COLUMNS).

Why: a row's totals cannot show whether exits come in bursts, whether the idle
rate is steady enough to subtract, or whether throughput and exits drift within
a window. A timeline answers that from the same counters, read once per
`interval_s` while the window runs: every instrument samples at each tick
(instruments.Measurement) and gives its columns per slice between consecutive
samples; this module puts a slice's columns together.

What sampling costs the guest: under TCG nothing (the trace file is already
being written). Under KVM, QEMU versions whose `query-stats` reads each vCPU's
stats on that vCPU's thread (`run_on_cpu`, e.g. QEMU 7.2) kick every vCPU out
once per sample: at most `vcpus` extra exits per sample, said in run.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SAMPLING_COST = ("KVM: at most one exit per vCPU per sample where QEMU's query-stats runs on each vCPU thread "
                 "(run_on_cpu); TCG: none (trace file size only)")


@dataclass(frozen=True)
class SliceId:
    run_id: str
    backend: str
    repeat: int
    attempt: int
    workload: str
    direction: str  # "" for the idle window: it belongs to the VM, not to a direction
    phase: str  # "idle" or "traffic"
    topology: str = "direct"


def rows(ident: SliceId, times: Sequence[float], slices: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per slice between consecutive sample times, from the instruments' columns of each
    slice (`bytes`/`packets` of the data direction, the exit columns, CPU per thread kind). A window
    without an exit source (native) has no timeline."""
    t0 = times[0] if times else 0.0
    out = []
    for i, (a, b, part) in enumerate(zip(times, times[1:], slices, strict=False)):
        if "exits" not in part:
            continue
        interval = b - a
        row: dict[str, Any] = {
            "run_id": ident.run_id, "backend": ident.backend, "repeat": ident.repeat, "attempt": ident.attempt,
            "workload": ident.workload, "direction": ident.direction, "phase": ident.phase, "topology": ident.topology,
            "slice": i,
            "t_start_s": round(a - t0, 3), "interval_s": round(interval, 3), **part}
        row["exits_per_s"] = round(row["exits"] / interval, 1) if interval > 0 else None
        row["exits_per_packet"] = round(row["exits"] / row["packets"], 4) if row.get("packets") else None
        out.append(row)
    return out
