"""Paired statistics against references computed here by hand formulas, numpy and scipy."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from mimetic.report import stats

BASE = np.array([70.0, 72.0, 68.0, 71.0, 69.5, 70.5])
MIM = np.array([75.0, 80.0, 74.0, 77.0, 74.0, 78.5])


def test_summary_mean_and_sample_sd():
    s = stats.summary(MIM)
    assert s.n == 6
    assert s.mean == pytest.approx(sum(MIM) / 6)
    assert s.sd == pytest.approx(math.sqrt(sum((x - sum(MIM) / 6) ** 2 for x in MIM) / 5))
    one = stats.summary([3.0])
    assert one.n == 1 and one.mean == 3.0 and math.isnan(one.sd)


def test_t_interval_by_hand():
    d = MIM[:3] - BASE[:3]  # 5, 8, 6
    mean, sd = 19 / 3, math.sqrt(((5 - 19 / 3) ** 2 + (8 - 19 / 3) ** 2 + (6 - 19 / 3) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2}, from a table
    lo, hi = stats.t_interval(d)
    assert (lo, hi) == pytest.approx((mean - half, mean + half))
    assert all(math.isnan(v) for v in stats.t_interval([1.0]))


def test_bootstrap_interval_is_the_documented_percentile_bootstrap():
    d = MIM - BASE
    rng = np.random.default_rng(0)
    means = np.array([d[rng.integers(0, 6, size=6)].mean() for _ in range(10_000)])
    ref = np.percentile(means, [2.5, 97.5])
    assert stats.bootstrap_interval(d) == pytest.approx(tuple(ref))
    # and it agrees with scipy's percentile bootstrap up to resampling noise
    sp = sps.bootstrap((d,), np.mean, method="percentile", n_resamples=20_000, random_state=1).confidence_interval
    assert stats.bootstrap_interval(d) == pytest.approx((sp.low, sp.high), abs=0.3)
    assert stats.bootstrap_interval(d) == stats.bootstrap_interval(d)  # fixed seed: reproducible


def test_paired_statistics_match_scipy():
    g = stats.paired(MIM, BASE)
    d = MIM - BASE
    assert g.n == 6 and g.mean == pytest.approx(d.mean()) and g.sd == pytest.approx(d.std(ddof=1))
    half = sps.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6)
    assert (g.t_lo, g.t_hi) == pytest.approx((d.mean() - half, d.mean() + half))
    assert g.p == pytest.approx(sps.ttest_rel(MIM, BASE).pvalue)
    # t statistic by hand -> p by hand
    t = d.mean() / (d.std(ddof=1) / np.sqrt(6))
    assert g.p == pytest.approx(2 * sps.t.sf(abs(t), 5))
    assert g.t_lo < g.boot_lo < g.mean < g.boot_hi < g.t_hi  # the percentile bootstrap is narrower at n=6


def test_bootstrap_only_from_five_pairs():
    g = stats.paired(MIM[:4], BASE[:4])
    assert math.isnan(g.boot_lo) and math.isnan(g.boot_hi) and not math.isnan(g.t_lo)
    assert not math.isnan(stats.paired(MIM[:5], BASE[:5]).boot_lo)


def test_identical_arms_and_single_pair():
    g = stats.paired(BASE, BASE)
    assert g.mean == 0 and g.p == 1.0 and g.t_lo == 0 and g.t_hi == 0
    assert stats.verdict(g, 5.0) == stats.NOT_SIGNIFICANT
    one = stats.paired([75.0], [70.0])
    assert one.n == 1 and one.mean == 5 and math.isnan(one.p) and math.isnan(one.t_lo)


def test_paired_rejects_misaligned_or_missing():
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        stats.paired([1.0, math.nan], [1.0, 2.0])


def _gain(n, lo, hi):
    return stats.Paired(n=n, mean=(lo + hi) / 2, sd=1.0, t_lo=lo, t_hi=hi, boot_lo=math.nan, boot_hi=math.nan, p=0.5)


@pytest.mark.parametrize("lo, hi, claimed, expected", [
    (1.0, 6.0, 5.0, stats.REPRODUCED),
    (1.0, 5.0, 5.0, stats.REPRODUCED),      # hi == claim counts
    (0.5, 4.9, 5.0, stats.SMALLER),
    (-0.1, 7.0, 5.0, stats.NOT_SIGNIFICANT),
    (0.0, 7.0, 5.0, stats.NOT_SIGNIFICANT),  # lo == 0 is not above 0
    (-3.0, 0.0, 5.0, stats.NOT_SIGNIFICANT),
    (-3.0, -0.5, 5.0, stats.REVERSED),
    (1.0, 2.0, None, stats.SIGNIFICANT),
])
def test_verdict_cases(lo, hi, claimed, expected):
    assert stats.verdict(_gain(3, lo, hi), claimed) == expected


def test_verdict_too_few_and_not_run():
    assert stats.verdict(stats.paired([80.0], [70.0]), 5.0) == stats.TOO_FEW
    assert stats.verdict(stats.paired([], []), 5.0) == stats.TOO_FEW
    assert stats.verdict(None, 5.0) == stats.NOT_RUN


@pytest.mark.parametrize("lo, hi, sign, expected", [
    (0.5, 2.0, 1, stats.REPRODUCED),          # excludes 0 on the claimed side
    (-1.0, 2.0, 1, stats.NOT_SIGNIFICANT),    # contains 0
    (0.0, 2.0, 1, stats.NOT_SIGNIFICANT),     # lo == 0 does not exclude it
    (-3.0, -0.5, 1, stats.REVERSED),          # excludes 0 on the other side
    (-3.0, -0.5, -1, stats.REPRODUCED),       # a claimed negative gain: mirrored
    (-3.0, 0.0, -1, stats.NOT_SIGNIFICANT),
    (0.5, 2.0, -1, stats.REVERSED),
])
def test_direction_verdicts(lo, hi, sign, expected):
    assert stats.verdict(_gain(3, lo, hi), sign=sign) == expected


def test_direction_verdict_too_few_not_run_and_misuse():
    assert stats.verdict(stats.paired([80.0], [70.0]), sign=1) == stats.TOO_FEW
    assert stats.verdict(None, sign=-1) == stats.NOT_RUN
    with pytest.raises(ValueError, match="not both"):
        stats.verdict(_gain(3, 1.0, 2.0), 5.0, 1)
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        stats.verdict(_gain(3, 1.0, 2.0), sign=2)
