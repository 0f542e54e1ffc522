"""The regression gate: a run against a committed baseline, cell metric by cell metric.

Each cell (backend x direction x workload) and gated metric gets an estimated change with its interval,
and one of three outcomes (`decide`: the rule, its model and why): *worse* (the change exceeds a small
practical threshold in the bad direction, with the family-wise error over the whole gate held by Holm's
adjustment), *ok* (a change of the size that matters, 10%, is ruled out) or *inconclusive* (neither: the
cell says the smallest change it would catch and the repeats 10% would need); *better* mirrors worse.

A baseline is one or more runs of the same scenario and environment; it keeps every run's repeats, so the
gate knows how far runs drift apart (between-run variance) as well as how far repeats scatter; a one-run
baseline assumes its environment's measured drift (DRIFT_FLOOR) and says so.

Exit codes: 0 nothing worse (inconclusive cells are listed, not failed), 1 something worse, 2 not
comparable (different accelerator, exit source or environment, or a baseline cell the run lacks), with
the reason. A QEMU change is *not* a reason to refuse: catching what an upgrade did is what the gate is
for; it is shown in the header. A host change is, for the metrics that follow the host's speed under an
emulator (`hostspeed`): against a baseline from another host kernel or CPU, or when the run's native
ceiling moved past its spread, those metrics are *not comparable* (exit 2, the difference named), never
worse, and the others are still judged. A scenario whose `[gate] on_host_change = "report"` shows them
so and does not let them set the exit code (the CI job: it judges code, not the machine it ran on).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from iobench import decide, hostspeed, results, topologies
from iobench.compare import comparability, environment
from iobench.errors import UserError
from iobench.schema import HIGHER_IS_BETTER, cell_kind
from iobench.summary import cv

BASELINE_VERSION = 2
MIN_REPEATS_FOR_BASELINE = 5


@dataclass(frozen=True)
class MetricRule:
    """How one metric is gated: `floor` is the smallest absolute change that counts, in the metric's unit
    (0.0003 against 0.0001 copies per packet is not a "200% regression"). Which way is better is the schema's."""

    floor: float
    unit: str


# The floors are the smallest absolute change that counts; with the interval rule they only matter near
# zero (a value at or below zero is shifted by its floor before the log). Under the tolerance rule they were
# 0.002 exits or interrupts and 0.05 copies per packet: 6% of virtio's 0.032 exits per packet and 5% of
# one copy, a threshold of their own that no repeat count could get under.
GATED: dict[str, MetricRule] = {
    "throughput_bps": MetricRule(10e6, "bit/s"),
    "exits_per_packet": MetricRule(0.0005, "exits/packet"),
    "irq_injections_per_packet": MetricRule(0.0005, "interrupts/packet"),
    "copies_per_packet_measured": MetricRule(0.01, "copies/packet"),
    "cpu_us_per_packet": MetricRule(0.5, "µs/packet"),
    "exits_per_transaction": MetricRule(0.02, "exits/transaction"),
    "irq_injections_per_transaction": MetricRule(0.02, "interrupts/transaction"),
    "exits_per_datagram": MetricRule(0.02, "exits/datagram"),
    "irq_injections_per_datagram": MetricRule(0.02, "interrupts/datagram"),
}
# Which metrics gate which kind of cell. Request/response and paced cells are gated on what the device
# model and driver decide per transaction or datagram (structural, steady from boot to boot; a paced
# cell's copies per packet too: one datagram is one packet), not on their rates or CPU time, which follow
# the host's speed (and, in the lab, L1's emulation from boot to boot).
GATED_BY_KIND: dict[str, tuple[str, ...]] = {
    "stream": ("throughput_bps", "exits_per_packet", "irq_injections_per_packet", "copies_per_packet_measured",
               "cpu_us_per_packet"),
    "rr": ("exits_per_transaction", "irq_injections_per_transaction"),
    "paced": ("exits_per_datagram", "irq_injections_per_datagram", "copies_per_packet_measured"),
}
HOST_SPEED_METRICS = ("throughput_bps", "cpu_us_per_packet")

# The smallest between-run SD (log scale) the gate assumes, per environment: what a one-run baseline
# assumes, and the least a multi-run baseline's measured drift is taken to be (three runs estimate a
# variance poorly, and an underestimate is a false alarm). Measured on this machine kind (2026-12-06,
# host kernel v1300; the between-run SD of each cell's Hodges-Lehmann locations less what its repeats
# explain, `decide.measured_between`):
# - TCG, scenarios/ci.toml, 3 runs: device-model metrics 0.0-3.7% (rr 0.4-2.3%, virtio streams 1.0-1.3%),
#   except e1000's saturated guest->host stream (6.4-7.6%: its batching follows timing), which a
#   multi-run baseline measures itself; throughput and CPU per packet 3.6-19%.
# - the lab, scenarios/ci-lab.toml: two runs here 0.0-6.6% apart per cell; a CI machine of the same kind
#   measured every cell 3-33% above this machine's baseline (mean +17%, the same direction for all 12:
#   the whole run moved, as one L1's speed moves every count whose timing matters). A committed lab
#   baseline cannot rule out 10% for that reason: `iobench ab` compares two builds in one L1 instead.
# - real KVM: no measurement of this project's yet; 2% for device-model metrics and 5% for rates,
#   the TCG floor (a host with no emulator in the path drifts less, not more).
DRIFT_FLOOR: dict[str, tuple[float, float, float]] = {
    # environment -> (device-model metrics, host-bound device-model metrics, rates and CPU time)
    "tcg": (0.01, 0.03, 0.10),
    "lab": (0.12, 0.12, 0.20),
    "kvm": (0.02, 0.02, 0.05),
}

Key = tuple[str, str, str, str]  # backend, direction, workload, metric


def drift_kind(env: dict[str, Any]) -> str:
    """Which DRIFT_FLOOR row an environment (`compare.environment`) takes."""
    if env.get("environment") == "lab" or env.get("outer_kernel"):
        return "lab"
    return "tcg" if hostspeed.emulated(env) else "kvm"


def drift_floor(metric: str, env: dict[str, Any], host_bound: bool = False) -> float:
    """The least between-run SD a metric gets in an environment; `host_bound`: the metric follows the
    host's speed under an emulator (hostspeed), as a saturated stream's per-packet counts do."""
    device, bound, speed = DRIFT_FLOOR[drift_kind(env)]
    return speed if metric in HOST_SPEED_METRICS else bound if host_bound else device


# --- the exact U test (the native ceiling: has the host's speed moved?) ---------------------

def _u_distribution(n1: int, n2: int) -> list[int]:
    """Number of rank orderings giving each U = 0..n1*n2 (no ties), by the classic recurrence."""
    table: dict[tuple[int, int], list[int]] = {}

    def counts(a: int, b: int) -> list[int]:
        if (a, b) in table:
            return table[(a, b)]
        if a == 0 or b == 0:
            out = [1]
        else:
            left, right = counts(a - 1, b), counts(a, b - 1)  # the largest value from sample 1, or from 2
            out = [0] * (a * b + 1)
            for u, c in enumerate(left):
                out[u + b] += c
            for u, c in enumerate(right):
                out[u] += c
        table[(a, b)] = out
        return out

    return counts(n1, n2)


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact p-value of the Mann-Whitney U test (ties count one half)."""
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    dist = _u_distribution(len(a), len(b))
    total = sum(dist)
    below = sum(c for k, c in enumerate(dist) if k <= u) / total
    above = sum(c for k, c in enumerate(dist) if k >= u) / total
    return min(1.0, 2 * min(below, above))


# --- baseline -----------------------------------------------------------------------------

def samples(run: results.RunData) -> dict[Key, list[float]]:
    """The repeats' values of every gated metric of every cell of a run."""
    out: dict[Key, list[float]] = {}
    for r in run.records():
        for metric in GATED_BY_KIND[cell_kind(str(r["direction"]), str(r["workload"]))]:
            if r.get("exit_source") == "none" and metric != "throughput_bps":
                continue  # native: no VM, 0 exits by construction, no QEMU copies or threads: only the ceiling counts
            v = r.get(metric)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            out.setdefault((topologies.label(str(r["backend"]), r.get("topology")), str(r["direction"]), str(r["workload"]),
                            metric), []).append(float(v))
    return out


def _metric_rules() -> dict[str, dict[str, Any]]:
    """A baseline's "metrics": each gated metric's better direction, unit and absolute floor."""
    return {m: {"higher_is_better": HIGHER_IS_BETTER[m], "unit": rule.unit, "floor": rule.floor}
            for m, rule in GATED.items()}


def _check_runs(runs: Sequence[results.RunData]) -> None:
    """A baseline's runs: each complete, with enough repeats, and all of one scenario and environment."""
    total = sum(int(run.meta.get("scenario", {}).get("repeats", 0)) for run in runs)
    if total < MIN_REPEATS_FOR_BASELINE:
        raise UserError(f"{runs[0].directory}" + (f" and {len(runs) - 1} more run(s)" if len(runs) > 1 else "")
                        + f" hold {total} repeat(s) in all; a baseline needs at least {MIN_REPEATS_FOR_BASELINE} "
                        "so that its noise means something.")
    for run in runs:
        if run.meta.get("status") != "ok":
            raise UserError(f"{run.directory} has status {run.meta.get('status')}: a baseline needs every cell measured.")
    first = environment(runs[0].meta)
    for run in runs[1:]:
        blocking, _ = comparability(first, environment(run.meta))
        blocking += hostspeed.host_differences(first, environment(run.meta))  # an emulator's speed set by another host
        name = run.meta.get("scenario", {}).get("name"), runs[0].meta.get("scenario", {}).get("name")
        if name[0] != name[1]:
            blocking.append(f"scenario differs: {name[1]} vs {name[0]}")
        if blocking:
            raise UserError(f"{run.directory} cannot share a baseline with {runs[0].directory}: {blocking[0]}.")


def make_baseline(runs: results.RunData | Sequence[results.RunData], name: str) -> dict[str, Any]:
    """A baseline from one or more complete runs of one scenario and environment (at least
    MIN_REPEATS_FOR_BASELINE repeats in all): every run's repeats kept apart per cell, with the within-run SD and,
    from two runs on, the between-run SD they show. Cells are those of the latest run."""
    runs = [runs] if isinstance(runs, results.RunData) else sorted(runs, key=lambda r: r.meta.get("finished") or 0)
    if not runs:
        raise UserError("no run to make a baseline of: give one or more results directories.")
    _check_runs(runs)
    per_run = [samples(r) for r in runs]
    env = environment(runs[-1].meta)
    ids = [r.meta["run_id"] for r in runs]
    cells = []
    for key in sorted(per_run[-1]):
        metric = key[3]
        raw = [found[key] for found in per_run if key in found]
        logs = [decide.log_values(v, GATED[metric].floor) for v in raw]
        within, _ = decide.pooled_within(logs)
        between = decide.measured_between(logs, within)
        pooled = [v for r in raw for v in r]
        bound = hostspeed.host_bound(env, runs[-1].meta.get("scenario", {}), topologies.backend_of(key[0]),
                                     cell_kind(key[1], key[2]), metric, key[2])
        cells.append({"backend": key[0], "direction": key[1], "workload": key[2], "metric": metric,
                      "host_bound": bound or "", "runs": raw, "values": pooled,
                      "cv": None if (c := cv(pooled)) is None else round(c, 4),
                      "sigma_within": round(within, 5),
                      "sigma_between": None if between is None else round(between, 5)})
    kind = drift_kind(env)
    return {
        "baseline_version": BASELINE_VERSION, "name": name, "run_id": ids[-1], "runs": ids,
        "created": time.strftime("%Y-%m-%d", time.gmtime(runs[-1].meta.get("finished", time.time()))),
        "how": (f"{len(ids)} run(s) ({ids[0]}" + (f" .. {ids[-1]}" if len(ids) > 1 else "") + "); per cell: the "
                "within-run SD of log values (1.4826 x the median absolute residual from each run's median, pooled) and "
                + ("the between-run SD of the runs' Hodges-Lehmann locations" if len(ids) > 1 else
                   "no between-run SD of its own (one run)")
                + f"; between-run SD taken at least its environment's measured drift ({kind}: device-model "
                f"metrics {DRIFT_FLOOR[kind][0]:.0%}, those that follow the host's speed {DRIFT_FLOOR[kind][1]:.0%}, "
                f"rates and CPU time {DRIFT_FLOOR[kind][2]:.0%}; gate.DRIFT_FLOOR)"),
        "environment": env,
        "metrics": _metric_rules(),
        "cells": cells,
        "drift_floors": {"kind": kind, "device": DRIFT_FLOOR[kind][0], "host_bound": DRIFT_FLOOR[kind][1],
                         "rates": DRIFT_FLOOR[kind][2]},
    }


def pooled_baseline(runs: Sequence[results.RunData], name: str) -> dict[str, Any]:
    """A baseline from several earlier runs of the same scenario and environment (the history)."""
    if not runs:
        raise UserError("the history holds no earlier ok run of this scenario and environment to make a baseline of.")
    return make_baseline(runs, name)


def ab_baseline(run: results.RunData, a: str, b: str) -> dict[str, Any]:
    """A's cells of a run as the baseline B is judged against in the same run (`iobench ab`), under B's
    name; one "run" of A's repeats, and the gate told `one_job` (no between-run drift)."""
    found = {k: v for k, v in samples(run).items() if k[0] == a}
    if not found:
        raise UserError(f"the run {run.directory} has no measured cell of {a}: nothing to judge {b} against.")
    env = environment(run.meta)
    return {"baseline_version": BASELINE_VERSION, "name": f"{a} in the same run", "run_id": run.meta["run_id"],
            "runs": [run.meta["run_id"]],
            "created": time.strftime("%Y-%m-%d", time.gmtime(run.meta.get("finished", time.time()))),
            "how": f"{a}'s repeats in the same run as {b}, rounds in ABBA order: no between-run drift, "
                   "only the repeats' scatter (within-run SD of log values, both sides pooled)",
            "environment": env,
            "metrics": _metric_rules(),
            "cells": [{"backend": b, "direction": k[1], "workload": k[2], "metric": k[3], "runs": [v], "values": v}
                      for k, v in sorted(found.items())]}


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"no baseline at {path}: create one with `iobench gate RUN --update-baseline {path}`.") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}).") from exc
    if data.get("baseline_version") != BASELINE_VERSION:
        raise UserError(f"{path} is baseline format {data.get('baseline_version')}; this iobench reads "
                        f"{BASELINE_VERSION}: write a new one with --update-baseline.")
    return data


# --- verdicts -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    backend: str
    direction: str
    workload: str
    metric: str
    baseline: float  # median of the baseline's repeats (all runs)
    current: float  # median of the run's repeats
    ratio: float | None  # the estimated change, current / baseline (Hodges-Lehmann locations, log scale)
    low: float | None  # its 95% interval
    high: float | None
    p: float | None  # Holm-adjusted one-sided p of "no worse than the threshold"
    threshold: float  # the practical threshold: changes below it are noise by definition
    detectable: float | None  # the smallest change caught with 80% power at these repeats (relative)
    repeats_for_10: int | None  # current repeats that would make 10% detectable (None: no number would)
    drift: float  # the between-run SD used (log scale)
    drift_source: str  # "measured over R runs", "floor", "assumed (one run)", "none (one job)"
    verdict: str  # worse / better / ok / inconclusive / not comparable
    host_bound: str = ""  # why this metric follows the host's speed (hostspeed.host_bound), "" when it does not


NOT_COMPARABLE = "not comparable"


@dataclass
class GateResult:
    verdicts: list[Verdict]
    blocking: list[str]  # why the run cannot be compared (exit 2)
    notes: list[str]  # differences shown but not blocking (QEMU, kernel, scenario, extra cells)
    host_changed: list[str] = field(default_factory=list)  # why host-bound metrics are not comparable (exit 2)

    @property
    def exit_code(self) -> int:
        if self.blocking:
            return 2
        if any(v.verdict == "worse" for v in self.verdicts):
            return 1
        return 2 if self.host_changed else 0


def _listed(items: list[str]) -> str:
    return ", ".join(items[:6]) + (" ..." if len(items) > 6 else "")


@dataclass(frozen=True)
class _Cell:
    """One cell metric to judge: the baseline's runs and the current repeats, as log values."""

    key: Key
    base_runs: list[list[float]]
    current: list[float]
    noise: decide.Noise
    drift_source: str
    threshold: float
    bad_sign: int

    def change(self) -> decide.Change:
        base = statistics.mean(decide.hodges_lehmann(r) for r in self.base_runs)
        n = len(self.current)
        return decide.Change(decide.hodges_lehmann(self.current) - base, self.noise.se(n), self.bad_sign,
                             self.noise.df(n))


def _cell(cell: dict[str, Any], current: list[float], rule: dict[str, Any], env: dict[str, Any],
          one_job: bool, host_bound: bool = False) -> _Cell:
    """The noise model of one cell metric: within-run SD over the baseline's runs and the current run,
    between-run SD measured (two runs or more) but not below the environment's floor, or none in one job."""
    key: Key = (cell["backend"], cell["direction"], cell["workload"], cell["metric"])
    floor = rule["floor"]
    base_runs = [decide.log_values(r, floor) for r in cell.get("runs") or [cell["values"]]]
    cur = decide.log_values(current, floor) if current else []  # none: planning, before the run
    within, within_df = decide.pooled_within(base_runs)
    between_df: float = math.inf
    if one_job:
        between, source = 0.0, "none (A and B in one job)"
    else:
        measured = decide.measured_between(base_runs, within)
        least = drift_floor(key[3], env, host_bound)
        moderated = None if measured is None else decide.moderated(measured, len(base_runs) - 1, least)
        if measured is None or moderated is None:
            between, source = least, f"assumed {least:.0%} (one-run baseline; gate.DRIFT_FLOOR)"
        elif moderated > least:
            between, source = moderated, f"measured {measured:.1%} over {len(base_runs)} runs (moderated {moderated:.1%})"
            between_df = decide.PRIOR_DF + len(base_runs) - 1
        else:
            between, source = least, f"floor {least:.0%} (measured {measured:.1%} over {len(base_runs)} runs)"
    median = statistics.median(cell["values"])
    # changes below the metric's absolute floor are noise too; from a median of 0 (a shifted log) one floor is 100%
    threshold = max(decide.THRESHOLD, floor / abs(median)) if median else 1.0
    nb = statistics.mean(len(r) for r in base_runs)
    own = decide.run_sd(cur) if cur else None
    noise = decide.Noise(within, between, len(base_runs), nb, own, within_df, between_df)
    return _Cell(key, base_runs, cur, noise, source, threshold,
                 -1 if rule["higher_is_better"] else 1)


@dataclass(frozen=True)
class Power:
    """What one cell metric of a baseline lets a gate see with `repeats` repeats (`iobench plan --power`)."""

    backend: str
    direction: str
    workload: str
    metric: str
    within: float  # sigma_w of the baseline's runs (log scale)
    drift: float  # sigma_b used
    drift_source: str
    detectable: float  # the smallest change caught with 80% power, relative
    repeats_for_10: int | None


def power(baseline: dict[str, Any], repeats: int, one_job: bool = False) -> list[Power]:
    """Before a run: per baseline cell metric, the smallest change a run of `repeats` repeats would catch
    (80% power, Holm over all the baseline's cells) and the repeats 10% would take; the current run's
    scatter taken as the baseline runs'."""
    family = len(baseline["cells"])
    out = []
    for cell in baseline["cells"]:
        c = _cell(cell, [], baseline["metrics"][cell["metric"]], baseline["environment"], one_job,
                  bool(cell.get("host_bound")))
        out.append(Power(*c.key, round(c.noise.within, 4), round(c.noise.between, 4), c.drift_source,
                         round(decide.detectable(c.noise.se(repeats), c.threshold, family, c.noise.df(repeats)), 4),
                         decide.repeats_for(c.noise, c.threshold, family)))
    return out


def judge(cells: Sequence[_Cell], medians: Sequence[tuple[float, float]], bound: Sequence[str],
          matters: float = decide.MATTERS, looks: int = 1) -> list[Verdict]:
    """Every cell metric's verdict; Holm's adjustment runs over the family of cells judged together.
    `looks`: the gate may judge these cells this many times as repeats are added (`iobench gate
    --max-repeats`, iobench.sequential); each look spends ALPHA / looks (and an "ok" its share of the
    confidence), so that over all looks an unchanged cell is still called worse with at most ALPHA."""
    changes = [c.change() for c in cells]
    family = len(cells)
    alpha, ok_level = decide.ALPHA / looks, 1 - (1 - decide.OK_LEVEL) / looks
    p_worse = decide.holm([ch.p_worse(c.threshold) for ch, c in zip(changes, cells, strict=True)])
    p_better = decide.holm([ch.p_better(c.threshold) for ch, c in zip(changes, cells, strict=True)])
    out = []
    for c, ch, pw, pb, (mb, mc), hb in zip(cells, changes, p_worse, p_better, medians, bound, strict=True):
        if pw < alpha:
            verdict = "worse"
        elif pb < alpha:
            verdict = "better"
        elif ch.rules_out(matters, ok_level):
            verdict = "ok"
        else:
            verdict = "inconclusive"
        low, high = ch.interval()
        backend, direction, workload, metric = c.key
        out.append(Verdict(backend, direction, workload, metric, mb, mc, round(ch.ratio, 4), round(low, 4),
                           round(high, 4), round(pw, 5), round(c.threshold, 4),
                           round(decide.detectable(ch.se, c.threshold, family * looks, ch.df), 4),
                           decide.repeats_for(c.noise, c.threshold, family * looks, matters), round(c.noise.between, 4),
                           c.drift_source, verdict, hb))
    return out


def gate(run: results.RunData, baseline: dict[str, Any], allow_partial: bool = False,
         only_backends: Collection[str] | None = None, one_job: bool = False, looks: int = 1) -> GateResult:
    """Judge every baseline cell and metric. A run with failed cells, or cells with fewer repeats
    than the run asked for, is not comparable (a missing repeat would pass silently) unless
    `allow_partial`; then it is judged on what it has, and the gaps are noted. `only_backends`: the
    user chose to run these backends only; the baseline's others are named, not judged. `one_job`: the
    baseline is the A side of the same run (`iobench ab`): no run-to-run drift between the two. `looks`:
    how many times these cells may be judged as repeats are added (`judge`)."""
    env, scenario = environment(run.meta), run.meta.get("scenario", {})
    blocking, notes = comparability(baseline["environment"], env)
    if only_backends:
        skipped = sorted({c["backend"] for c in baseline["cells"] if topologies.backend_of(c["backend"]) not in only_backends})
        baseline = dict(baseline, cells=[c for c in baseline["cells"] if topologies.backend_of(c["backend"]) in only_backends])
        if skipped:
            notes.append(f"backends of the baseline not run by choice (not gated): {', '.join(skipped)}")
    partial = blocking if not allow_partial else notes
    status = run.meta.get("status", "ok")
    failed = [f"{c['backend']}/{c['direction']}/r{c['repeat']}" for c in topologies.labelled(run.meta.get("cells", []))
              if c.get("status") != "ok"]
    if status != "ok" or failed:
        partial.append(f"the run's status is {status}" + (f", {len(failed)} failed cell(s): {_listed(failed)}"
                                                            if failed else ""))
    current = samples(run)
    expected = int(run.meta.get("scenario", {}).get("repeats") or 0)
    why = hostspeed.host_differences(baseline["environment"], env)
    if not why and hostspeed.emulated(env):
        why = _speed_moved(baseline["cells"], current)
        if not one_job and not any(topologies.backend_of(c["backend"]) == "native" and c["metric"] == "throughput_bps"
                                   for c in baseline["cells"]):
            notes.append("no native stream in the baseline: the host's speed was not measured, so a slower host "
                         "is not told apart from a slower build in the metrics that follow it (host-bound)")
    cells: list[_Cell] = []
    medians: list[tuple[float, float]] = []
    bound: list[str] = []
    set_aside: list[Verdict] = []
    missing, short = [], []
    for cell in baseline["cells"]:
        key: Key = (cell["backend"], cell["direction"], cell["workload"], cell["metric"])
        if key not in current:
            missing.append("/".join(key))
            continue
        if len(current[key]) < expected:
            short.append(f"{'/'.join(key)} ({len(current[key])} of {expected})")
        rule = baseline["metrics"][key[3]]
        hb = hostspeed.host_bound(env, scenario, topologies.backend_of(key[0]), cell_kind(key[1], key[2]), key[3],
                                  key[2]) or ""
        judged = _cell(cell, current[key], rule, baseline["environment"], one_job, bool(hb))
        pair = (statistics.median(cell["values"]), statistics.median(current[key]))
        if why and hb:  # follows the host's speed, and the host changed: shown, not judged (nor in the family)
            (v,) = judge([judged], [pair], [hb])
            set_aside.append(replace(v, verdict=NOT_COMPARABLE, p=None))
            continue
        cells.append(judged)
        medians.append(pair)
        bound.append(hb)
    verdicts = judge(cells, medians, bound, looks=looks) + set_aside if cells or set_aside else []
    order = {(c["backend"], c["direction"], c["workload"], c["metric"]): i for i, c in enumerate(baseline["cells"])}
    verdicts.sort(key=lambda v: order[(v.backend, v.direction, v.workload, v.metric)])
    if missing:
        blocking.append(f"the run lacks {len(missing)} baseline cell(s): {_listed(missing)}")
    if short:
        partial.append(f"{len(short)} cell metric(s) have fewer repeats than the run's {expected}: {_listed(short)}")
    extra = {k[:3] for k in current} - {(c["backend"], c["direction"], c["workload"]) for c in baseline["cells"]}
    if extra:
        notes.append(f"cells not in the baseline (not gated): {', '.join('/'.join(k) for k in sorted(extra))}")
    host_changed = _host_speed(set_aside, len(verdicts), why, scenario, notes)
    return GateResult(verdicts, blocking, notes, host_changed)


def _speed_moved(cells: list[dict[str, Any]], current: dict[Key, list[float]]) -> list[str]:
    """Whether the run measured its host at another speed than the baseline's: the native ceiling (iperf3
    over veth, no QEMU in it, so only the host moves it) more than 10% away, its repeats apart (exact
    Mann-Whitney U, two-sided p < 0.05)."""
    out = []
    for cell in cells:
        key: Key = (cell["backend"], cell["direction"], cell["workload"], cell["metric"])
        if topologies.backend_of(key[0]) != "native" or key[3] != "throughput_bps" or key not in current:
            continue
        ratio = statistics.median(current[key]) / statistics.median(cell["values"])
        p = mann_whitney_p(cell["values"], current[key])
        if p < 0.05 and abs(ratio - 1) > 0.10:
            out.append(f"the host's speed moved: native {key[1]} throughput {ratio:.2f}x the baseline's (U test p={p:.3f})")
    return out


def _host_speed(set_aside: list[Verdict], total: int, why: list[str], scenario: dict[str, Any],
                notes: list[str]) -> list[str]:
    """Host-bound metrics (hostspeed) set aside because the host differs from the baseline's (`why`: its
    kernel or CPU, or its speed as the run measured it). Unless the scenario reports such metrics
    (`on_host_change = "report"`, then it is a note), why they are not comparable (exit 2)."""
    if not why or not set_aside:
        return []
    said = (f"{len(set_aside)} metric(s) that follow the host's speed under an emulator are not comparable "
            f"({'; '.join(why)}): measure a baseline on this host; the other {total - len(set_aside)} are judged")
    if scenario.get("on_host_change") == "report":
        notes.append(said.replace("are not comparable", "are reported, not gated")
                     + " ([gate] on_host_change = \"report\")")
        return []
    return [said]


# --- output ----------------------------------------------------------------------------------

def fmt(metric: str, v: float) -> str:
    return f"{v / 1e6:.0f} Mbit/s" if metric == "throughput_bps" else f"{v:.4g}"


def _detects(x: float | None) -> str:
    """The smallest detectable change: ±5.3%, or 12x past 1000% (a cell that sees nothing)."""
    return "-" if x is None else f"±{x:.1%}" if x < 10 else f"{x + 1:.0f}x"


def table_rows(result: GateResult) -> list[tuple[str, ...]]:
    return [(v.backend, v.direction, v.workload, v.metric, fmt(v.metric, v.baseline), fmt(v.metric, v.current),
             "-" if v.ratio is None else f"{v.ratio:.3f}",
             "-" if v.low is None else f"{v.low:.3f}..{v.high:.3f}",
             "-" if v.p is None else f"{v.p:.3g}", _detects(v.detectable),
             "-" if v.verdict == NOT_COMPARABLE else ("never" if v.repeats_for_10 is None else str(v.repeats_for_10)),
             f"{v.drift:.1%}", "yes" if v.host_bound else "-", v.verdict.upper() if v.verdict == "worse" else v.verdict)
            for v in result.verdicts]


# "ratio": the estimated change (current / baseline, Hodges-Lehmann locations); "95% CI": its interval;
# "p (Holm)": of "no worse than the threshold", adjusted over the gate's cells (worse below 0.05);
# "detects": the smallest change caught with 80% power at these repeats; "n for 10%": current repeats
# that would catch 10% ("never": the drift between runs alone forbids it: compare in one job, `iobench ab`);
# "drift": the between-run SD used; "host-bound": follows the host's speed under an emulator (hostspeed).
HEADERS = ("backend", "dir", "workload", "metric", "baseline", "current", "ratio", "95% CI", "p (Holm)",
           "detects", "n for 10%", "drift", "host-bound", "verdict")


def how(result: GateResult) -> str:
    """One line on the rule and what this gate could see."""
    judged = [v for v in result.verdicts if v.verdict != NOT_COMPARABLE]
    counts = {k: sum(v.verdict == k for v in judged) for k in ("worse", "better", "ok", "inconclusive")}
    blind = sorted({f"{v.backend}/{v.direction}/{v.workload}" for v in judged if (v.detectable or 0) > decide.MATTERS})
    return (f"{len(judged)} cell metric(s) judged: {counts['worse']} worse, {counts['better']} better, {counts['ok']} ok "
            f"(a {decide.MATTERS:.0%} change ruled out), {counts['inconclusive']} inconclusive (listed, not failed); "
            f"worse = past a {decide.THRESHOLD:.0%} threshold with Holm-adjusted one-sided p < {decide.ALPHA}"
            + (f"; cannot see {decide.MATTERS:.0%} at these repeats: {_listed(blind)}" if blind else ""))


def markdown(result: GateResult, run: results.RunData, baseline: dict[str, Any], job_seconds: float | None) -> str:
    worse = [v for v in result.verdicts if v.verdict == "worse"]
    status = ("NOT COMPARABLE" if result.blocking else "FAILED: " + ", ".join(
        f"{v.backend} {v.direction} {v.metric}" for v in worse) if worse else
        "NOT COMPARABLE (host-bound metrics)" if result.host_changed else "passed")
    out = [f"## iobench gate: {status}", "",
           f"- run `{run.meta['run_id']}` against baseline `{baseline['name']}` (run {baseline['run_id']}, "
           f"{baseline['created']}); accel {run.meta['accel']['accel']} ({run.meta['accel']['exit_source']}), "
           f"environment {run.meta.get('environment', 'host')}",
           f"- baseline: {baseline['how']}", f"- verdicts: {how(result)}"]
    if job_seconds is not None:
        out.append(f"- gate job run time: {job_seconds:.0f} s (scenario run + gate)")
    out += [f"- not comparable: {b}" for b in (*result.blocking, *result.host_changed)]
    out += [f"- note: {n}" for n in result.notes]
    out += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    return "\n".join(out) + "\n"


def bmf(run: results.RunData) -> dict[str, Any]:
    """Bencher Metric Format: benchmark -> measure -> value with its min-max over repeats."""
    out: dict[str, Any] = {}
    for (backend, direction, workload, metric), vals in sorted(samples(run).items()):
        out.setdefault(f"{backend}/{direction}/{workload}", {})[metric.replace("_", "-")] = {
            "value": statistics.median(vals), "lower_value": min(vals), "upper_value": max(vals)}
    return out


def gab(run: results.RunData) -> dict[str, list[dict[str, Any]]]:
    """github-action-benchmark input, one list per tool: customSmallerIsBetter and customBiggerIsBetter."""
    out: dict[str, list[dict[str, Any]]] = {"customSmallerIsBetter": [], "customBiggerIsBetter": []}
    for (backend, direction, workload, metric), vals in sorted(samples(run).items()):
        rule = GATED[metric]
        med = statistics.median(vals)
        entry = {"name": f"{backend} {direction} {workload} {metric}", "unit": rule.unit, "value": med,
                 "range": f"{min(vals):.6g}..{max(vals):.6g}",
                 "extra": f"median of {len(vals)} repeats; run {run.meta['run_id']}"}
        out["customBiggerIsBetter" if HIGHER_IS_BETTER[metric] else "customSmallerIsBetter"].append(entry)
    return out


def as_json(result: GateResult) -> dict[str, Any]:
    return {"exit_code": result.exit_code, "blocking": result.blocking, "host_changed": result.host_changed,
            "notes": result.notes, "verdicts": [asdict(v) for v in result.verdicts]}
