"""Paired statistics over seeds: pure functions on arrays, no DataFrames, no files.

Arms are compared seed for seed (both runs of a seed share data order and every weight outside
attention), so the unit of analysis is the per-seed difference treatment - baseline (of values
signed so that larger is better: mimetic.report.compare negates a loss first). Its 95%
interval is Student's t-interval over those differences; from BOOTSTRAP_MIN_N seeds on, a
percentile bootstrap interval of their mean is added (fixed generator seed: reruns print the same
numbers). The test is the paired t-test (scipy.stats.ttest_rel), two-sided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
BOOTSTRAP_MIN_N = 5  # below this a bootstrap has too few distinct resamples to mean anything
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0

# Verdicts on a claimed gain, in the order a reader scans them (best news first).
REPRODUCED = "reproduced"
SMALLER = "smaller gain"
NOT_SIGNIFICANT = "no significant gain"
REVERSED = "reversed"
TOO_FEW = "too few seeds"
NOT_RUN = "not run"
SIGNIFICANT = "significant gain"  # no claim to compare with, but the interval excludes 0
VERDICTS = (REPRODUCED, SMALLER, SIGNIFICANT, NOT_SIGNIFICANT, REVERSED, TOO_FEW, NOT_RUN)

INTERVAL_METHOD = ("95% Student t-interval of the mean paired difference over seeds (df = n - 1); "
                   f"from n >= {BOOTSTRAP_MIN_N} also a percentile bootstrap interval of that mean "
                   f"({BOOTSTRAP_RESAMPLES} resamples, generator seed {BOOTSTRAP_SEED})")
TEST_METHOD = "two-sided paired t-test over seeds (scipy.stats.ttest_rel)"


@dataclass(frozen=True)
class Summary:
    """n, mean and sample standard deviation (ddof=1; NaN below 2 values)."""

    n: int
    mean: float
    sd: float


@dataclass(frozen=True)
class Paired:
    """The per-seed difference treatment - baseline over n seeds present in both arms."""

    n: int
    mean: float
    sd: float
    t_lo: float
    t_hi: float
    boot_lo: float
    boot_hi: float
    p: float


def _array(x: object) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if not np.isfinite(a).all():
        raise ValueError(f"non-finite values in {a}: drop missing runs before computing statistics")
    return a


def summary(x: object) -> Summary:
    a = _array(x)
    return Summary(len(a), float(a.mean()) if len(a) else math.nan,
                   float(a.std(ddof=1)) if len(a) > 1 else math.nan)


def t_interval(x: object, level: float = LEVEL) -> tuple[float, float]:
    """Student's t-interval of the mean of `x`; (NaN, NaN) below 2 values."""
    a = _array(x)
    if len(a) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a))
    return float(a.mean() - half), float(a.mean() + half)


def bootstrap_interval(x: object, level: float = LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `x`: `resamples` draws of len(x) indices with
    replacement from numpy's default_rng(seed), the (1-level)/2 and (1+level)/2 quantiles (numpy's
    linear interpolation) of the resampled means. (NaN, NaN) below 2 values."""
    a = _array(x)
    if len(a) < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    lo, hi = np.quantile(a[idx].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_p(treatment: object, baseline: object) -> float:
    """Two-sided paired t-test p; NaN below 2 pairs. Where every difference is the same (sd 0, e.g.
    epoch counts) t is 0/0 or infinite: p is 1.0 for all-zero differences (no evidence of any
    difference), else 0.0, the limit scipy reaches with a precision warning."""
    t, b = _array(treatment), _array(baseline)
    if len(t) < 2:
        return math.nan
    d = t - b
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_rel(t, b).pvalue)


def paired(treatment: object, baseline: object, level: float = LEVEL,
           bootstrap_min_n: int = BOOTSTRAP_MIN_N) -> Paired:
    """Statistics of the per-seed gain treatment[i] - baseline[i] (arrays aligned by seed)."""
    t, b = _array(treatment), _array(baseline)
    if t.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {len(t)} vs {len(b)}")
    d = t - b
    s = summary(d)
    t_lo, t_hi = t_interval(d, level)
    boot = bootstrap_interval(d, level) if len(d) >= bootstrap_min_n else (math.nan, math.nan)
    return Paired(s.n, s.mean, s.sd, t_lo, t_hi, boot[0], boot[1], paired_p(t, b))


def verdict(gain: Paired | None, claimed: float | None = None, sign: int | None = None) -> str:
    """The verdict on a claimed gain from the t-interval [lo, hi] of the paired gain.

    None for `gain`: the experiment or an arm was not run. A numeric claim (`claimed`) is
    REPRODUCED when lo > 0 and hi >= claimed. A direction claim (`sign` +1 or -1: the claimed sign
    of the gain, where the source gives no number) is REPRODUCED when the interval excludes 0 on
    the claimed side, REVERSED when it excludes 0 on the other side. Without either an interval
    above 0 is a SIGNIFICANT gain. The other cases read alike for all three.
    """
    if claimed is not None and sign is not None:
        raise ValueError(f"a claim has a gain ({claimed}) or a direction ({sign:+d}), not both")
    if sign not in (None, 1, -1):
        raise ValueError(f"a claimed direction is +1 or -1, not {sign!r}")
    if gain is None:
        return NOT_RUN
    if gain.n < 2:
        return TOO_FEW
    lo, hi = gain.t_lo, gain.t_hi
    if sign is not None:
        # a claimed negative gain is the mirror image of a positive one
        lo, hi = (lo, hi) if sign > 0 else (-hi, -lo)
        return REPRODUCED if lo > 0 else REVERSED if hi < 0 else NOT_SIGNIFICANT
    if hi < 0:
        return REVERSED
    if lo <= 0:
        return NOT_SIGNIFICANT
    if claimed is None:
        return SIGNIFICANT
    return REPRODUCED if hi >= claimed else SMALLER
