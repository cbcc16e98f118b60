"""Numeric tier: the softmax factor, the large-width drift limit, the sparsity law."""

import numpy as np
import pytest

from driftlab.montecarlo import stein_reduced
from driftlab.montecarlo.estimators import Budget
from driftlab.theory import expected_grad, gaussian
from driftlab.theory.setting import BlockSetting
from driftlab.testing import assert_close, assert_mc_agrees, mc_threshold



@pytest.mark.parametrize("t", [0.3, 2.0, 6.0, 10.0])
def test_softmax_factor_against_large_numpy_mc(t):
    k, n = 10, 400_000
    rng = np.random.default_rng(1)
    vals = []
    for _ in range(5):
        u = t * rng.standard_normal((n, k))
        sm = np.exp(u - u.max(1, keepdims=True))
        sm /= sm.sum(1, keepdims=True)
        vals.append(1 - (sm**2).sum(1))
    vals = np.concatenate(vals)
    se = vals.std() / np.sqrt(vals.size)
    assert_mc_agrees(vals.mean(), se, expected_grad.softmax_trace_factor(t, k))


def test_softmax_factor_limits_and_range():
    assert_close(expected_grad.softmax_trace_factor(0.0, 7), 1 - 1 / 7, kind="ops")
    assert_close(expected_grad.softmax_trace_factor(1.0, 1), 0.0, kind="ops", scale=1.0)
    vals = expected_grad.softmax_trace_factor([0.5, 1.0, 3.0], 10)
    assert np.all(np.diff(vals) < 0)  # more spread logits: more peaked softmax
    with pytest.raises(ValueError, match="t must lie"):
        expected_grad.softmax_trace_factor(50.0, 10)


def test_quadrature_and_closed_form_tiers_agree_for_relu():
    closed = expected_grad.positive_preactivation_moment("relu", 16, 0.25).value
    quad = gaussian.chi_expectation(lambda r: gaussian.H("relu", 0.25 * r), 16)
    assert quad == pytest.approx(closed, rel=1e-9)  # tol: the χ-law quadrature's error, not rounding


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_large_width_limit_approached_by_semi_analytic_drift(act):
    """k·s3²·E[h̄·m(s2‖h‖)] → the n → ∞ limit; at n = 512 they agree to ~1%."""
    s = BlockSetting(act=act, d_in=16, width=512, d_out=10)
    semi = stein_reduced.drift(s, Budget(draws=256, inputs_per_draw=32, chunk=64))
    limit = expected_grad.drift_large_width(s).value
    # The finite-width bias (~1% at n = 512, the docstring) is not noise, so the margin is
    # tol: 2% of the limit for the bias plus the suite's Monte Carlo threshold times the SE
    assert abs(semi.value - limit) <= 0.02 * limit + mc_threshold() * semi.stderr


def test_tanh_large_width_drift_is_zero():
    assert expected_grad.drift_large_width(BlockSetting(act="tanh", width=64)).value == 0.0


def test_sparsity_law_limits():
    h = np.abs(np.random.default_rng(0).standard_normal((8, 32)))
    assert_close(expected_grad.predicted_relu_sparsity(0.0, 1.0, h), 0.5, kind="ops")
    assert expected_grad.predicted_relu_sparsity(-1.0, 0.01, h) > 0.999
    assert expected_grad.predicted_relu_sparsity(-0.05, 0.2, h) > 0.5
