"""Change points in each cell's history: where a metric's per-run medians shifted, how much, how sure.

Why: the gate judges one run against a baseline; a slow drift, or a step that landed between two gate
runs, shows only in the series of runs. The history database (iobench.history) holds every run's
median per cell and metric; here each series (one scenario, host, environment and accelerator, one
cell and metric, runs in the order they finished) is segmented by an established change-point
method, `ruptures`' PELT on the log of the medians (a step of x% is a step of log(1+x) wherever the
level is), with a penalty of BIC's form (PENALTY, measured) on the series' own noise, estimated
robustly from its successive differences (a step is one large difference among many small ones). Each change point
found is then tested: the runs of the segment before it against those after it, by an exact
two-sided Mann-Whitney U test (scipy); only those with p below `alpha` are reported, with the size
as the ratio of the segments' medians. The p-value is computed after the segmentation chose the
split, so it is optimistic (a split is found where the series differs most): read it as a screen,
and confirm a change with the gate's own rule on runs made for it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iobench import topologies
from iobench.schema import HIGHER_IS_BETTER

MIN_RUNS = 6  # fewer runs than this: no series is segmented (two segments of three at least)
MIN_SEGMENT = 3
ALPHA = 0.05
# The runs of one series must be comparable: one scenario, on one host, environment and accelerator.
SERIES_KEYS = ("scenario", "host", "environment", "accel", "backend", "direction", "workload", "metric")


@dataclass(frozen=True)
class ChangePoint:
    """One shift in a series: the first run after it, the medians of the segments around it."""

    scenario: str
    host: str
    environment: str
    accel: str
    backend: str  # the cell's label: backend, or backend@topology
    direction: str
    workload: str
    metric: str
    run_id: str  # the first run of the new level
    finished: Any
    index: int  # its position in the series (0: the oldest run)
    runs: int  # the series' length
    before: float  # median of the segment before the change
    after: float  # median of the segment after
    n_before: int
    n_after: int
    p: float  # exact two-sided Mann-Whitney U, segment before vs segment after

    @property
    def size(self) -> float:
        """after / before - 1 (+0.12: up 12%)."""
        return self.after / self.before - 1 if self.before else math.inf

    @property
    def verdict(self) -> str:
        """worse or better by the schema's direction of the metric; "changed" for a metric without one."""
        better = HIGHER_IS_BETTER.get(self.metric)
        if better is None:
            return "changed"
        return "better" if (self.size > 0) == better else "worse"


def noise(values: Sequence[float]) -> float:
    """The series' noise SD, robust to steps: the median absolute successive difference / (0.6745 √2)
    (a step makes one large difference; MAD ignores it). Floored so a flat series has a finite penalty."""
    diffs = [b - a for a, b in zip(values, values[1:], strict=False)]
    if not diffs:
        return 0.0
    med = statistics.median(diffs)
    mad = statistics.median(abs(d - med) for d in diffs)
    return max(mad / 0.6745 / math.sqrt(2), 1e-3)


# The penalty per change point, in units of σ²·ln(n) (BIC's form is 2). Measured on simulated series
# (Gaussian noise σ = 2%, a step at the middle, 1000 series each; docs/gate.md), series of 12 | 24 runs:
#   penalty  false alarms per series   10% step found   5% step found
#   8        2.5% | 1.0%               92% | 100%       41% | 65%
#   12       1.2% | 0.1%               81% | 99%        27% | 42%
#   16       0.6% | 0.0%               69% | 95%        19% | 27%
# A history has dozens of series (cells x metrics), so a false alarm per series must be rare: 12.
PENALTY = 12.0


def segment(values: Sequence[float], min_segment: int = MIN_SEGMENT) -> list[int]:
    """Change points of `values` (indices where a new segment starts), by PELT with an L2 cost and the
    penalty PENALTY·σ²·ln(n) (σ: the noise above)."""
    import numpy as np
    import ruptures

    n = len(values)
    if n < 2 * min_segment:
        return []
    sigma = noise(values)
    algo = ruptures.Pelt(model="l2", min_size=min_segment, jump=1).fit(np.asarray(values, dtype=float).reshape(-1, 1))
    ends = algo.predict(pen=PENALTY * sigma * sigma * math.log(n))
    return [e for e in ends if e < n]


def u_test(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue)


@dataclass(frozen=True)
class Shift:
    """One significant change point of a series: where, the segments around it, the test."""

    index: int
    before: list[float]
    after: list[float]
    p: float


def in_series(values: Sequence[float], alpha: float = ALPHA, min_segment: int = MIN_SEGMENT) -> list[Shift]:
    """Every change point of one series of positive medians whose segments (from the previous change
    point to the next) differ at `alpha`."""
    if len(values) < max(MIN_RUNS, 2 * min_segment) or min(values) <= 0:
        return []
    points = segment([math.log(v) for v in values], min_segment)
    bounds = [0, *points, len(values)]
    out = []
    for i, k in enumerate(points, 1):
        before, after = list(values[bounds[i - 1]:k]), list(values[k:bounds[i + 1]])
        p = u_test(before, after)
        if p < alpha:
            out.append(Shift(k, before, after, p))
    return out


def find(history: Any, alpha: float = ALPHA, metrics: Sequence[str] | None = None,
         min_segment: int = MIN_SEGMENT) -> list[ChangePoint]:
    """Every significant change point of every series of `history`, a DataFrame of per-run medians
    (the history's summary joined with its runs: columns SERIES_KEYS, topology, run_id, finished,
    median; HISTORY_SQL), series by series, runs in the order they finished."""
    frame = history.copy()
    frame["backend"] = [topologies.label(b, t) for b, t in zip(frame["backend"], frame["topology"], strict=True)]
    if metrics:
        frame = frame[frame["metric"].isin(list(metrics))]
    out: list[ChangePoint] = []
    for key, sub in frame.groupby(list(SERIES_KEYS), dropna=False, sort=True):
        sub = sub.dropna(subset=["median"]).sort_values(["finished", "run_id"])
        values = [float(v) for v in sub["median"]]
        ids, finished = list(sub["run_id"]), list(sub["finished"])
        for shift in in_series(values, alpha, min_segment):
            series = dict(zip(SERIES_KEYS, (str(x) for x in key), strict=True))
            out.append(ChangePoint(**series, run_id=str(ids[shift.index]), finished=finished[shift.index],
                                   index=shift.index, runs=len(values), before=statistics.median(shift.before),
                                   after=statistics.median(shift.after), n_before=len(shift.before),
                                   n_after=len(shift.after), p=shift.p))
    return out


HISTORY_SQL = """
SELECT r.scenario, r.host, r.environment, r.accel, r.run_id, r.finished, s.backend, s.direction, s.workload,
       COALESCE(s.topology, 'direct') AS topology, s.metric, s.median
FROM summary s JOIN runs r USING (run_id)
WHERE r.status IN ('ok', 'partial')
"""
