"""Sequential repeats for undecided cells: `iobench gate --scenario FILE --max-repeats N`.

Why: a cell the gate leaves inconclusive usually lacks repeats, not a baseline; running the whole
scenario again for it wastes the cells that were decided. So the gate looks, and for the backends
that still have an inconclusive cell it runs more rounds of those backends only (the scenario's
repeats again, or what is left of the budget), pools them with the rounds before and looks again,
until every cell is decided or each undecided cell has N repeats. A cell that N repeats would not
sharpen (its detectable change shrinks by less than a tenth: the between-run drift dominates) is not
run again.

The error over the looks is held by Bonferroni over the looks planned: with K possible looks each
spends ALPHA / K of the worse and better verdicts and (1 - OK_LEVEL) / K of the ok's confidence
(`gate.judge`), Holm's adjustment working over the cells within each look. A cell's first decision
is final; later looks only judge what was left. Simple and valid for any stopping rule (Pocock's or
O'Brien-Fleming's boundaries would spend less on early looks, at the price of a model of the
correlation between looks that a median of pooled rounds does not give exactly).

Rounds of later jobs are pooled into one current run (their repeats renumbered after the earlier
ones): the model then sees their between-job drift as part of the repeats' scatter, which widens the
interval rather than narrowing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from iobench import decide, gate, results, topologies

# Run `backends` again for `repeats` rounds (the same scenario and options) and return the new run.
RunMore = Callable[[list[str], int], results.RunData]


def looks_planned(repeats: int, max_repeats: int) -> int:
    """Looks a budget allows: the first at the scenario's repeats, then one per further batch of them."""
    if max_repeats <= repeats:
        return 1
    return 1 + math.ceil((max_repeats - repeats) / repeats)


def pooled(runs: Sequence[results.RunData]) -> results.RunData:
    """One run of the rounds of several: rows and cells of the later ones renumbered after the earlier
    ones' (per backend, so a backend run in 2 of 3 jobs has its own count), the scenario's repeats the
    most any backend has; the first run's directory and metadata otherwise."""
    frames: list[Any] = []
    cells: list[dict[str, Any]] = []
    offset: dict[str, int] = {}  # backend label -> rounds so far
    status = "ok"
    for run in runs:
        rows = run.rows.copy()
        labels = [topologies.label(str(b), t) for b, t in zip(rows["backend"], rows["topology"], strict=True)]
        rows["repeat"] = [int(r) + offset.get(label, 0) for r, label in zip(rows["repeat"], labels, strict=True)]
        frames.append(rows)
        for c in run.meta.get("cells", []):
            label = topologies.label(str(c["backend"]), c.get("topology"))
            cells.append({**c, "repeat": int(c["repeat"]) + offset.get(label, 0)})
        most = int(run.meta.get("scenario", {}).get("repeats", 1))
        for label in set(labels):
            offset[label] = offset.get(label, 0) + most
        if run.meta.get("status", "ok") != "ok":
            status = str(run.meta.get("status"))
    meta = dict(runs[0].meta, cells=cells, status=status,
                scenario=dict(runs[0].meta.get("scenario", {}), repeats=max(offset.values(), default=0)))
    return replace(runs[0], meta=meta, rows=pd.concat(frames, ignore_index=True))


def gate_until_decided(first: results.RunData, baseline: dict[str, Any], run_more: RunMore, max_repeats: int,
                       allow_partial: bool = False, only_backends: Collection[str] | None = None,
                       log: Callable[[str], None] = print) -> gate.GateResult:
    """Judge `first`; while cells stay inconclusive and the budget lasts, run their backends again and
    judge them on the pooled rounds. Returns every cell's first decision (or its last look's)."""
    repeats = int(first.meta.get("scenario", {}).get("repeats") or 1)
    looks = looks_planned(repeats, max_repeats)
    result = gate.gate(first, baseline, allow_partial, only_backends, looks=looks)
    if looks == 1 or result.blocking:
        return result
    sharper = _sharpened(baseline, repeats, max_repeats)
    final = {_key(v): v for v in result.verdicts if v.verdict != "inconclusive" or _key(v) not in sharper}
    hopeless = [v for v in result.verdicts if v.verdict == "inconclusive" and _key(v) not in sharper]
    undecided = [v for v in result.verdicts if _key(v) not in final]
    runs, done, look = [first], repeats, 1
    while undecided and done < max_repeats:
        backends = sorted({topologies.backend_of(v.backend) for v in undecided})
        step = min(repeats, max_repeats - done)
        look += 1
        log(f"gate: look {look} of {looks}: {len(undecided)} cell metric(s) undecided; {step} more round(s) of "
            f"{', '.join(backends)} (to {done + step} repeats)")
        runs.append(run_more(backends, step))
        done += step
        later = gate.gate(pooled(runs), baseline, allow_partial, backends, looks=looks)
        if later.blocking:
            result.blocking.extend(f"look {look}: {b}" for b in later.blocking)
            break
        waiting = {_key(v) for v in undecided}
        for v in later.verdicts:
            if _key(v) in waiting and (v.verdict != "inconclusive" or done >= max_repeats):
                final[_key(v)] = v
        undecided = [v for v in later.verdicts if _key(v) in waiting and _key(v) not in final]
    for v in undecided:  # the budget ended (or a later job could not be compared): the last look's verdict
        final.setdefault(_key(v), v)
    order = {_key(v): i for i, v in enumerate(result.verdicts)}
    verdicts = sorted(final.values(), key=lambda v: order.get(_key(v), len(order)))
    notes = [*result.notes, *([f"sequential: {len(hopeless)} inconclusive cell metric(s) not run again: {max_repeats} "
                               "repeats would not sharpen them by a tenth (the between-run drift dominates; compare "
                               "in one job: iobench ab)"] if hopeless else []),
             f"sequential: {look} look(s) of at most {looks} ({repeats} repeats each, up to "
                            f"{max_repeats}); each look judged at alpha {decide.ALPHA / looks:.3g} (Bonferroni "
                            f"over the looks); later rounds in {', '.join(str(r.directory) for r in runs[1:]) or '-'}"]
    return gate.GateResult(verdicts, result.blocking, notes, result.host_changed)


def _sharpened(baseline: dict[str, Any], repeats: int, max_repeats: int) -> set[tuple[str, str, str, str]]:
    """The cell metrics whose detectable change `max_repeats` would shrink by a tenth or more against
    `repeats` (gate.power, the model's own answer): only those are worth more rounds; where the
    between-run drift dominates, no number of repeats moves it."""
    now = {_key(p): p.detectable for p in gate.power(baseline, repeats)}
    later = {_key(p): p.detectable for p in gate.power(baseline, max_repeats)}
    return {k for k, d in now.items() if later[k] < 0.9 * d}


def _key(v: gate.Verdict | gate.Power) -> gate.Key:
    return (v.backend, v.direction, v.workload, v.metric)
