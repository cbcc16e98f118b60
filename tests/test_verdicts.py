"""reports/verdicts.py: the tests behind every verdict word have the stated size and power."""

import numpy as np
import pytest

from driftlab.reports import verdicts as V
from driftlab.testing import assert_close


def test_holm_matches_hand_computation():
    # p sorted: 0.01 (×4 = .04), 0.02 (×3 = .06), 0.03 (×2 = .06 by monotonicity), 0.5 (×1)
    assert_close(np.asarray(V.holm([0.03, 0.01, 0.5, 0.02])), np.array([0.06, 0.04, 0.5, 0.06]))
    assert_close(np.asarray(V.holm([0.9, 0.8])), np.array([1.0, 1.0]))


def test_one_sided_t_has_its_size_under_the_null():
    rng = np.random.default_rng(0)
    p = np.array([V.one_sided(rng.normal(size=5), "greater").p for _ in range(4000)])
    rate = np.mean(p < 0.05)  # binomial SE ≈ 0.0034
    # tol: 4000 null draws: binomial SE of the rate ≈ 0.0034, so 0.015 ≈ 4.4 SE
    assert abs(rate - 0.05) < 0.015


def test_sign_test_and_two_sample():
    assert_close(V.one_sided([1, 2, 3, 4, 5, 6], "greater", method="sign").p, 1 / 64)
    a, b = np.arange(6.0), np.arange(6.0) - 2.0
    assert V.two_sample(a, b, "greater", paired=True).p == 0.0  # constant difference
    w = V.two_sample(a + 3, b, "greater")
    assert w.p < 0.01 and w.p_opposite > 0.99
    assert_close(w.mean, 5.0)




def test_too_little_data_concludes_nothing_and_bad_input_is_named():
    r = V.one_sided([float("nan"), 2.0], "greater")
    assert r.n == 1 and r.p == r.p_opposite == 1.0
    with pytest.raises(ValueError, match="direction='up' invalid; allowed: greater, less"):
        V.one_sided([1.0, 2.0], "up")
