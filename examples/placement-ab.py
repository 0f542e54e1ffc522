#!/usr/bin/env python3
"""What pinning changes, from one run with placement = "alternate" (auto and none in ABBA rounds).

    examples/placement-ab.py RUN_DIR [--metric exits_per_packet --metric ...]

Per backend, workload and direction: for each placement, the number of rounds, the median and the
coefficient of variation (SD / mean) of each metric, side by side; the ratio of the medians (auto /
none); and the migrations per window. The method behind docs/placement.md's table: a placement that
lowers the CVs is worth making the default; one that changes the medians changes what is measured.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from iobench import results

DEFAULT_METRICS = ("exits_per_packet", "irq_injections_per_packet", "exits_per_transaction",
                   "irq_injections_per_transaction", "cpu_us_per_packet", "throughput_bps")


def cv(values: list[float]) -> float | None:
    if len(values) < 2 or not statistics.fmean(values):
        return None
    return statistics.stdev(values) / statistics.fmean(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--metric", action="append", help="rows.csv column (repeatable)")
    args = parser.parse_args()
    run = results.load(args.run)
    rows = run.records()
    metrics = args.metric or [m for m in DEFAULT_METRICS if any(r.get(m) == r.get(m) and r.get(m) is not None
                                                                for r in rows)]
    print(f"{'backend':8} {'workload':18} {'dir':3} {'metric':30} {'n a/n':>5} {'median auto':>12} {'median none':>12} "
          f"{'auto/none':>9} {'CV auto':>8} {'CV none':>8} {'migr. auto':>10} {'migr. none':>10}")
    cells = sorted({(r["backend"], r["workload"], r["direction"]) for r in rows})
    for backend, workload, direction in cells:
        mine = [r for r in rows if (r["backend"], r["workload"], r["direction"]) == (backend, workload, direction)]
        by = {p: [r for r in mine if r.get("placement") == p] for p in ("auto", "none")}
        moved = {p: statistics.fmean(float(r["migrations"]) for r in by[p]) if by[p] else float("nan")
                 for p in by}
        for m in metrics:
            vals = {p: [float(r[m]) for r in by[p] if r.get(m) == r.get(m) and r.get(m) is not None] for p in by}
            if not vals["auto"] or not vals["none"]:
                continue
            med = {p: statistics.median(v) for p, v in vals.items()}
            cvs = {p: cv(v) for p, v in vals.items()}
            print(f"{backend:8} {workload:18} {direction:3} {m:30} {len(vals['auto'])}/{len(vals['none']):<3} "
                  f"{med['auto']:12.4g} {med['none']:12.4g} {med['auto'] / med['none'] if med['none'] else float('nan'):9.3f} "
                  + " ".join(f"{c:8.1%}" if c is not None else f"{'-':>8}" for c in (cvs["auto"], cvs["none"]))
                  + f" {moved['auto']:10.1f} {moved['none']:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
