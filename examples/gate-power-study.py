#!/usr/bin/env python3
"""Measure the gate's false alarms and power on real runs (the method behind docs/gate.md's tables).

    examples/gate-power-study.py RUN_DIR [RUN_DIR ...] [--baseline-runs K] [--draws D] [--trials T] [--seed S]

Every run is in turn the *rerun*; its baseline is K other runs drawn at random (seeded), so the rerun is
independent of the baseline it is judged against; with --draws D, D baselines are drawn for each rerun
(D trials per rerun: more trials than runs, each rerun's noise counted D times). Then:
- false alarms: the share of reruns with any cell metric called worse (unchanged code);
- power: into each judged cell metric of each rerun, one at a time, a 10% change in the bad direction is
  injected (its values scaled in the run's rows) and the gate run again: caught = that cell called worse.
Printed: the false-alarm rate, and per cell metric its median printed detectable effect, trials and the
share caught, split by whether the gate said it could see 10% there (detectable <= 10%).
Runs must be of one scenario and environment (the gate refuses others)."""

from __future__ import annotations

import argparse
import random
import statistics
from collections import defaultdict
from pathlib import Path

from iobench import gate, results
from iobench.schema import HIGHER_IS_BETTER


def scaled(run: results.RunData, key: gate.Key, factor: float) -> results.RunData:
    rows = run.rows.copy()
    mask = (rows["backend"] == key[0]) & (rows["direction"] == key[1]) & (rows["workload"] == key[2])
    rows.loc[mask, key[3]] = rows.loc[mask, key[3]] * factor
    return results.RunData(run.directory, run.meta, rows, run.summary, run.timeline)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--baseline-runs", type=int, default=5)
    ap.add_argument("--trials", type=int, default=0, help="reruns to use (default: every run)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--draws", type=int, default=1, help="baselines drawn per rerun (default 1)")
    ap.add_argument("--change", type=float, default=0.10)
    args = ap.parse_args()
    runs = [results.load(p) for p in args.runs]
    rng = random.Random(args.seed)
    reruns = [i for i in list(range(len(runs)))[: args.trials or None] for _ in range(args.draws)]
    alarms, judged = [], 0
    stats: dict[gate.Key, list[tuple[float, bool, int | None]]] = defaultdict(list)
    for i in reruns:
        others = [j for j in range(len(runs)) if j != i]
        base = gate.make_baseline([runs[j] for j in rng.sample(others, min(args.baseline_runs, len(others)))],
                                  f"study-{i}")
        result = gate.gate(runs[i], base)
        worse = [v for v in result.verdicts if v.verdict == "worse"]
        alarms.append(bool(worse))
        judged += 1
        print(f"rerun {runs[i].meta['run_id']}: {len(result.verdicts)} judged, worse: "
              + (", ".join(f"{v.backend}/{v.direction}/{v.metric} x{v.ratio}" for v in worse) or "none"), flush=True)
        for v in result.verdicts:
            if v.verdict == gate.NOT_COMPARABLE:
                continue
            key = (v.backend, v.direction, v.workload, v.metric)
            factor = (1 + args.change) ** (-1 if HIGHER_IS_BETTER[v.metric] else 1)
            hit = gate.gate(scaled(runs[i], key, factor), base)
            got = next(h for h in hit.verdicts if (h.backend, h.direction, h.workload, h.metric) == key)
            stats[key].append((got.detectable or 0.0, got.verdict == "worse", got.repeats_for_10))
    print(f"\nfalse alarms: {sum(alarms)} of {judged} unchanged reruns had a cell called worse "
          f"({sum(alarms) / max(judged, 1):.0%}); baselines of {args.baseline_runs} other runs each")
    print(f"\n| cell | metric | detects (median) | n for 10% (median) | trials | caught | "
          f"where it said <= {args.change:.0%}: caught |")
    print("|---|---|---|---|---|---|---|")
    for key, got in sorted(stats.items()):
        seen = [hit for det, hit, _ in got if det <= args.change]
        needs = [n for _, _, n in got]
        need = "never" if any(n is None for n in needs) else str(int(statistics.median(n for n in needs if n is not None)))
        print(f"| {key[0]}/{key[1]}/{key[2]} | {key[3]} | {statistics.median(d for d, _, _ in got):.1%} | {need} | "
              f"{len(got)} | {sum(h for _, h, _ in got) / len(got):.0%} | "
              + (f"{sum(seen) / len(seen):.0%} of {len(seen)}" if seen else "-") + " |")


if __name__ == "__main__":
    main()
