"""`iobench compare A B`: the same cells of two runs side by side, with ratios.

Cells are matched by backend x direction x workload on the summary medians.
Each metric knows which way is better. Runs whose exits come from different
sources (TCG trap equivalents vs KVM exits) are never compared on exits, and
runs from different accelerators, environments or QEMU versions are flagged
as not comparable unless the caller says the difference is the point
(`allow_qemu_change`, for upgrade studies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench import results
from iobench.errors import UserError

# metric -> True when higher is better
METRICS = {
    "throughput_bps": True,
    "exits_per_packet": False,
    "net_exits_per_packet": False,
    "irq_injections_per_packet": False,
    "copies_per_packet_measured": False,
    "cpu_us_per_packet": False,
}
EXIT_METRICS = {"exits_per_packet", "net_exits_per_packet", "irq_injections_per_packet"}
SAME_WITHIN = 0.02


@dataclass(frozen=True)
class Line:
    backend: str
    direction: str
    workload: str
    metric: str
    a: float
    b: float
    ratio: float | None
    verdict: str  # better / worse / same (for B against A)


def _load(directory: Path) -> tuple[dict[str, Any], dict[tuple[str, str, str, str], float]]:
    data = results.load(directory)
    if data.summary.empty:
        raise UserError(f"{directory} has no summary.csv rows to compare.")
    records: list[dict[str, Any]] = data.summary.to_dict("records")  # type: ignore[assignment]
    medians = {(str(r["backend"]), str(r["direction"]), str(r["workload"]), str(r["metric"])): float(r["median"])
               for r in records}
    return data.meta, medians


def comparability(a: dict[str, Any], b: dict[str, Any], allow_qemu_change: bool) -> tuple[list[str], list[str]]:
    """(reasons nothing can be compared, reasons exits cannot be compared)."""
    blocking, exits = [], []
    if a["accel"]["exit_source"] != b["accel"]["exit_source"]:
        exits.append(f"exits come from {a['accel']['exit_source']} in A and {b['accel']['exit_source']} in B: "
                     "TCG trap equivalents and KVM exits are different counts")
    for key, what in (("accel", "accelerator"),):
        if a["accel"][key] != b["accel"][key]:
            blocking.append(f"{what} differs: {a['accel'][key]} vs {b['accel'][key]}")
    if a.get("environment", "host") != b.get("environment", "host"):
        blocking.append(f"environment differs: {a.get('environment', 'host')} vs {b.get('environment', 'host')}")
    qa, qb = a.get("host", {}).get("qemu"), b.get("host", {}).get("qemu")
    if qa != qb and not allow_qemu_change:
        blocking.append(f"QEMU differs: {qa} vs {qb} (pass --allow-qemu-change to compare across an upgrade)")
    return blocking, exits


def compare(dir_a: Path, dir_b: Path, allow_qemu_change: bool = False) -> tuple[list[Line], list[str], list[str]]:
    meta_a, med_a = _load(dir_a)
    meta_b, med_b = _load(dir_b)
    blocking, no_exits = comparability(meta_a, meta_b, allow_qemu_change)
    lines: list[Line] = []
    if blocking:
        return lines, blocking, no_exits
    for key, a in med_a.items():
        backend, direction, workload, metric = key
        if metric not in METRICS or key not in med_b or (no_exits and metric in EXIT_METRICS):
            continue
        b = med_b[key]
        ratio = b / a if a else None
        if ratio is None or abs(ratio - 1) <= SAME_WITHIN:
            verdict = "same"
        else:
            verdict = "better" if (ratio > 1) == METRICS[metric] else "worse"
        lines.append(Line(backend, direction, workload, metric, a, b, round(ratio, 4) if ratio else None, verdict))
    return lines, blocking, no_exits
