"""The public API (driftlab/api.py): one dispatcher for the analytic expected gradient that
covers MSE and CE and refuses what it does not cover, naming the field."""

import pytest

import driftlab
from driftlab.montecarlo.estimators import Budget
from driftlab.montecarlo.stats import z_score
from driftlab.theory.expected_grad import expected_grad_positive_mse

SMALL = Budget(draws=512, inputs_per_draw=16, chunk=512)


def test_mse_value_is_the_closed_form():
    b = driftlab.Block(loss="mse", act="relu", d_in=16, width=32, d_out=4)
    assert driftlab.expected_grad(b) == expected_grad_positive_mse(b)


def test_ce_value_is_not_the_mse_value_and_agrees_with_monte_carlo():
    b = driftlab.Block(loss="ce", act="relu", d_in=16, width=32, d_out=4)
    a = driftlab.expected_grad(b, SMALL)
    assert a.tier.startswith("semi-analytic") and a.stderr > 0
    mse = expected_grad_positive_mse(driftlab.Block(loss="mse", act="relu", d_in=16, width=32,
                                                    d_out=4)).value
    assert abs(a.value - mse) > 10 * a.stderr  # the silent MSE fallback is gone
    mc = driftlab.estimate(b, samples=8192)
    assert abs(z_score(mc.mean, mc.stderr, a.value, a.stderr)) < 4.5  # ≈ 1e-5 false alarm


def test_mse_formula_refuses_a_ce_setting():
    with pytest.raises(ValueError, match="loss='ce'"):
        expected_grad_positive_mse(driftlab.Block(loss="ce"))


@pytest.mark.parametrize("fields, field", [
    ({"loss": "ce", "w2_mean": 0.1}, "w2_mean"),
    ({"loss": "ce", "target_coupling": 0.5}, "target_coupling"),
    ({"loss": "ce", "reduction": "mean"}, "reduction"),
    ({"loss": "mse", "act": "gelu", "w2_mean": 0.1}, "w2_mean"),
])
def test_uncovered_settings_are_refused_naming_the_field(fields, field):
    with pytest.raises(ValueError, match=field):
        driftlab.expected_grad(driftlab.Block(**fields))


def test_estimate_sizes_itself_to_a_standard_error_and_refuses_too_much():
    b = driftlab.Block(d_in=8, width=8, d_out=2)
    r = driftlab.estimate(b, se=2e-3)
    assert r.stderr < 2e-3 * 1.5  # the pilot's SE is itself an estimate
    with pytest.raises(ValueError, match="se="):
        driftlab.estimate(b, se=1e-9)
