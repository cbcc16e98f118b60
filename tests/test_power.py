"""reports/power.py: TOST, non-inferiority, power, MDE and n for power, each against a
simulation or a planted effect that must (or must not) be detected."""

import numpy as np
import pytest
from scipy import stats

from driftlab.reports import power as P


def _reject_rate(n, true, sd, alpha, reps=4000, seed=0):
    x = np.random.default_rng(seed).normal(true, sd, (reps, n))
    p = stats.ttest_1samp(x, 0.0, axis=1, alternative="greater").pvalue
    return float(np.mean(p < alpha))


def test_planted_effect_at_the_mde_is_found_with_the_stated_power():
    n, sd, alpha = 8, 0.3, 0.01
    d = P.mde(n, sd, alpha)
    rate = _reject_rate(n, d, sd, alpha)
    assert abs(rate - 0.8) < 0.03, (d, rate)  # tol: 4000 reps: SE of the rate 0.006, so ~5 SE
    assert _reject_rate(n, d / 3, sd, alpha) < 0.4  # a third of the MDE: mostly missed
    assert _reject_rate(n, 0.0, sd, alpha) < 2 * alpha  # no effect: the level


def test_n_for_power_is_the_smallest_n_reaching_it():
    n = P.n_for_power(0.5, 1.0, 0.05)
    assert P.power_one_sided(n, 0.5, 1.0, 0.05) >= 0.8 > P.power_one_sided(n - 1, 0.5, 1.0, 0.05)
    assert P.n_for_power(1.0, 1.0, 0.05) == 8  # the textbook d = 1 one-sided value
    assert P.n_for_power(1e-6, 1.0, 0.05) is None  # beyond N_MAX
    assert P.n_for_power(0.0, 1.0, 0.05) is None
    with pytest.raises(ValueError, match="test"):
        P.n_for_power(1.0, 1.0, 0.05, test="two-sided")


def test_tost_decides_absence_only_when_the_margin_allows_it():
    x = np.random.default_rng(1).normal(0.0, 1.0, 12)
    assert P.tost(x, 2.0).p < 0.05  # wide margin: absent
    assert P.tost(x, 0.05).p > 0.5  # margin far below the SE: cannot be absent
    shifted = P.tost(x + 3.0, 2.0)  # a real effect beyond the margin: not absent
    assert shifted.p > 0.5 and shifted.p_low < 1e-6
    with pytest.raises(ValueError, match="margin"):
        P.tost(x, 0.0)


def test_tost_power_bound_against_simulation():
    n, sd, margin, alpha = 8, 1.0, 1.2, 0.05
    x = np.random.default_rng(2).normal(0.0, sd, (4000, n))
    m, se = x.mean(1), x.std(1, ddof=1) / np.sqrt(n)
    t = stats.t.ppf(1 - alpha, n - 1)
    rate = np.mean(((m + margin) / se > t) & ((m - margin) / se < -t))
    bound = P.power_tost(n, margin, sd, alpha)
    assert bound <= rate + 0.02 and rate - bound < 0.1, (bound, rate)
    assert P.n_for_power(margin, sd, alpha, test="tost") <= n + 2


def test_non_inferiority_accepts_a_small_deficit_within_the_margin_only():
    x = np.random.default_rng(3).normal(-0.1, 0.2, 16)
    assert P.non_inferiority(x, 0.5).p < 0.01
    assert P.non_inferiority(x, 0.01).p > 0.5
