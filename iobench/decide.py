"""How the gate decides: an interval for each change, three outcomes, and the error of the whole gate held.

Why not "median moved by more than 3 x CV and the repeats separate" (the rule before): a true 10% change
sat on its 10% floor and was caught about half the time at best, and nothing held the chance that *some*
cell of an unchanged rerun came out worse across 20-50 cell metrics (../shared/GATE.md).

The model, on log values (a relative change is a shift, and noise is closer to symmetric):
- a run's *location* for a cell is the Hodges-Lehmann estimate of its repeats (the median of the Walsh
  averages): one disturbed repeat (an L2 that booted twice, a stolen core) does not move it much, and it
  keeps 95% of the mean's efficiency under normal noise (variance factor KAPPA = pi/3 over the mean's);
- the change is the current run's location minus the mean location of the baseline's R runs;
- its variance has two parts (GATE.md): runs drift (sigma_b, between-run SD) and repeats scatter
  (sigma_w, within-run SD):  Var = sigma_b^2 (1 + 1/R) + KAPPA sigma_w^2 (1/n + 1/(R n_b)).
  sigma_w is measured (the pooled robust scale of the baseline runs' repeats; the current run's own plain
  SD where it is larger), and each part's degrees of freedom give Student's t for the interval (Welch-Satterthwaite);
  sigma_b is measured from the baseline's runs when it has two or more (moderated toward the environment's
  drift, `moderated`), and never taken below a floor measured on this project's own runs per
  environment (`gate.DRIFT_FLOOR`), which is also what a one-run baseline assumes, saying so. In one job
  of interleaved rounds (`iobench ab`) there is no run-to-run drift between A and B: sigma_b = 0 and only
  the repeats count.
The decision (three outcomes, as criterion.rs; the family's error held, as asv's small alpha does):
- *worse*: the change exceeds a small practical threshold (1% by default, or the metric's absolute floor
  where that is larger) in the bad direction, one-sided, with Holm's step-down adjustment over every cell
  metric of the gate, at ALPHA: an unchanged rerun is called worse somewhere in at most ~5% of gates;
- *ok*: the one-sided 95% bound in the bad direction lies below the change that matters (10% by default);
- *inconclusive*: neither; the cell shows the smallest change it would catch (80% power) and how many
  repeats 10% would take, or that no number of repeats would (between-run drift).
*better* is the mirror of worse, reported, never failing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

ALPHA = 0.05  # the family-wise error of one gate: any cell of an unchanged rerun called worse
OK_LEVEL = 0.95  # one-sided confidence of an "ok" (the change excluded is below the one that matters)
POWER = 0.80
KAPPA = math.pi / 3  # variance of a Hodges-Lehmann location over the mean's, under normal noise
THRESHOLD = 0.01  # a change smaller than this is noise by definition (criterion.rs: 1%)
MATTERS = 0.10  # the change a gate must be able to rule out (and, with its repeats, to catch)
PRIOR_DF = 4  # how much the environment's measured drift weighs against a cell's own runs (`moderated`)


def hodges_lehmann(values: Sequence[float]) -> float:
    """The median of the Walsh averages (x_i + x_j) / 2, i <= j."""
    return statistics.median((a + values[j]) / 2 for i, a in enumerate(values) for j in range(i, len(values)))


def log_values(values: Sequence[float], floor: float) -> list[float]:
    """ln of each value; shifted by the metric's absolute floor when any value is zero or below (0 copies
    per packet), so that such a cell still has a scale."""
    shift = floor if min(values) <= 0 else 0.0
    return [math.log(v + shift) if v + shift > 0 else math.log(floor) for v in values]


MAD_EFFICIENCY = 0.37  # of the MAD against the SD under normal noise: its degrees of freedom count for this much
MIN_ROBUST_RESIDUALS = 12  # fewer (one or two runs of five): the plain pooled SD, whose small df the t quantile knows


def pooled_within(runs: Sequence[Sequence[float]]) -> tuple[float, float]:
    """sigma_w of a baseline's runs and its degrees of freedom: 1.4826 x the median absolute residual of
    every repeat from its own run's median, pooled over the runs (the exact zero of each odd run's median
    left out). Robust: one disturbed repeat in twenty (a boot that took 12.2 exits per transaction among
    17.3s, measured) does not set a cell's noise, where the plain SD took it from 0.4% to 7.6% and blinded
    the cell. Pooled, not per run: the MAD of 3-5 values underestimates the spread, the MAD of 15-30
    residuals does not. Its degrees of freedom are the SD's times the MAD's efficiency (0.37). Under
    MIN_ROBUST_RESIDUALS residuals (one or two runs), the plain pooled SD with its full degrees of freedom."""
    residuals = []
    for r in runs:
        if len(r) >= 2:
            med = statistics.median(r)
            devs = sorted(abs(v - med) for v in r)
            residuals += devs[1:] if len(r) % 2 else devs  # an odd run's median is one of its values
    df = sum(len(r) - 1 for r in runs if len(r) >= 2)
    if not df:
        return 0.0, 0.0
    if len(residuals) < MIN_ROBUST_RESIDUALS:  # one run of five (iobench ab's A side): the plain SD, all its df
        return math.sqrt(sum(statistics.variance(r) * (len(r) - 1) for r in runs if len(r) >= 2) / df), float(df)
    return 1.4826 * statistics.median(residuals), max(1.0, MAD_EFFICIENCY * df)


def run_sd(values: Sequence[float]) -> float:
    """The current run's own scatter: its plain sample SD (a run gone noisy, or with a wild repeat, is
    judged with less confidence, never more)."""
    return statistics.stdev(values) if len(values) >= 2 else 0.0


def measured_between(runs: Sequence[Sequence[float]], within: float) -> float | None:
    """sigma_b from R >= 2 runs: the variance of their locations less what their repeats explain."""
    if len(runs) < 2:
        return None
    locs = [hodges_lehmann(r) for r in runs]
    nb = statistics.mean(len(r) for r in runs)
    return math.sqrt(max(0.0, statistics.variance(locs) - KAPPA * within**2 / nb))


def moderated(measured: float, df: int, prior: float, prior_df: int | None = None) -> float:
    """A between-run SD from few runs, moderated toward the environment's measured drift as limma moderates
    a gene's variance toward the prior of all genes (Smyth 2004): (d0 s0^2 + d s^2) / (d0 + d), with
    d0 = PRIOR_DF. Three runs alone give a variance with 2 degrees of freedom, whose t quantile (4.3 at
    97.5%) would blind the gate to anything under ~30%; moderated, a cell that drifts more than its
    environment still gets a wider interval, and one that only seemed to by chance does not lose its power."""
    d0 = PRIOR_DF if prior_df is None else prior_df
    return math.sqrt((d0 * prior**2 + df * measured**2) / (d0 + df))


@dataclass(frozen=True)
class Noise:
    """What the variance of a change is made of, on the log scale, with each part's degrees of freedom
    (an estimate from few values is uncertain: the interval uses Student's t with the Welch-Satterthwaite
    degrees of freedom of the sum, so three runs or five repeats are not taken for certainty)."""

    within: float  # sigma_w of the baseline's runs
    between: float  # sigma_b used (measured, or its floor, or assumed)
    runs: int  # R, the baseline's runs
    repeats: float  # n_b, the baseline's repeats per run
    current_within: float | None = None  # the current run's own sigma_w
    within_df: float = 0.0  # of `within`
    between_df: float = math.inf  # of `between`: R - 1 when measured, infinite for a floor or none

    def _parts(self, n: int) -> list[tuple[float, float]]:
        """(variance, degrees of freedom) of each part of Var(current - baseline) with n current repeats.
        The current side's scatter is its own where that is larger than the baseline's (a run gone noisy is
        not judged with a quiet baseline's confidence), else the baseline's."""
        own = self.current_within or 0.0
        cur, cur_df = (own, n - 1) if self.noisier(own, n) else (self.within, self.within_df)
        return [(self.between**2 * (1 + 1 / self.runs), self.between_df),
                (KAPPA * cur**2 / n, cur_df),
                (KAPPA * self.within**2 / (self.runs * self.repeats), self.within_df)]

    def noisier(self, own: float, n: int) -> bool:
        """Whether the current run's own SD is past what the baseline's scatter explains (one-sided F test at
        5%): then the current side is judged with its own SD and its n - 1 degrees of freedom. Not simply
        "larger": five repeats' SD exceeds the true one half the time, and its 4 degrees of freedom would
        cost every cell a t quantile of ~7 at the gate's Holm level."""
        if own <= 0 or n < 2:
            return False
        if self.within <= 0:
            return True
        from scipy.special import fdtri

        return bool(own**2 / self.within**2 > float(fdtri(n - 1, max(self.within_df, 1.0), 0.95)))

    def se(self, n: int) -> float:
        """The standard error of (current location - baseline location) with n current repeats."""
        return math.sqrt(sum(v for v, _ in self._parts(n)))

    def df(self, n: int) -> float:
        """Welch-Satterthwaite degrees of freedom of the sum (infinite when every part is known)."""
        parts = self._parts(n)
        total = sum(v for v, _ in parts)
        denom = sum(v * v / d for v, d in parts if v > 0 and d and d != math.inf)
        if any(v > 0 and not d for v, d in parts):  # a part estimated from nothing: as unsure as can be
            return 1.0
        return total * total / denom if denom > 0 else math.inf


def _ppf(df: float, q: float) -> float:
    """The q-quantile of Student's t with df degrees of freedom (the normal's when df is infinite)."""
    from scipy.special import ndtri, stdtrit

    return float(ndtri(q)) if df == math.inf else float(stdtrit(df, q))


def _sf(df: float, x: float) -> float:
    """P(T > x) for Student's t with df degrees of freedom (the normal's when df is infinite)."""
    from scipy.special import ndtr, stdtr

    return float(ndtr(-x)) if df == math.inf else float(stdtr(df, -x))


@dataclass(frozen=True)
class Change:
    """One cell metric's estimated change, current over baseline, with its standard error (log scale)."""

    log_ratio: float
    se: float
    bad_sign: int  # +1 when a rise is bad (exits per packet), -1 when a fall is (throughput)
    df: float = math.inf

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided interval of the ratio."""
        q = _ppf(self.df, 0.5 + level / 2)
        return math.exp(self.log_ratio - q * self.se), math.exp(self.log_ratio + q * self.se)

    def p_worse(self, threshold: float) -> float:
        """One-sided p of "no worse than `threshold`" (the null hypothesis a worse verdict rejects)."""
        return self._p(self.bad_sign, threshold)

    def p_better(self, threshold: float) -> float:
        return self._p(-self.bad_sign, threshold)

    def _p(self, sign: int, threshold: float) -> float:
        if self.se <= 0:
            return 0.0 if sign * self.log_ratio > math.log1p(threshold) else 1.0
        return _sf(self.df, (sign * self.log_ratio - math.log1p(threshold)) / self.se)

    def rules_out(self, matters: float, level: float = OK_LEVEL) -> bool:
        """Whether the one-sided bound in the bad direction stays below a change of `matters`."""
        return self.bad_sign * self.log_ratio + _ppf(self.df, level) * self.se < math.log1p(matters)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: reject where adjusted p < ALPHA holds the family-wise error."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out


def detectable(se: float, threshold: float, family: int, df: float = math.inf, power: float = POWER) -> float:
    """The smallest true change caught with `power` (one-sided, at Bonferroni's ALPHA / family: Holm's
    first step, the most demanding), as a relative change."""
    q = _ppf(df, 1 - ALPHA / max(family, 1)) + _ppf(df, power)
    return math.expm1(math.log1p(threshold) + q * se)


def repeats_for(noise: Noise, threshold: float, family: int, target: float = MATTERS,
                most: int = 200) -> int | None:
    """How many repeats per run (the scenario's `repeats`, for the current run and a baseline remade at it)
    would make `target` detectable; None when no number would (the between-run part alone is too large:
    compare in one job, `iobench ab`, or make the baseline of more runs)."""
    if detectable(noise.between * math.sqrt(1 + 1 / noise.runs), threshold, family, noise.between_df) > target:
        return None

    def sees(n: int) -> bool:
        at = replace(noise, repeats=n, within_df=max(noise.within_df, MAD_EFFICIENCY * noise.runs * (n - 1)))
        return detectable(at.se(n), threshold, family, at.df(n)) <= target

    if not sees(most):
        return None
    lo, hi = 2, most
    while lo < hi:  # what is detectable shrinks as n grows
        mid = (lo + hi) // 2
        if sees(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
