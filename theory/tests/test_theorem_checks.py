"""Every theorem check of the suite (montecarlo/checks.py) against Monte Carlo.

The checks run once per session (fixture in conftest.py). Sample sizes, standard
errors and the Bonferroni thresholds are part of each result and printed by
``driftlab theory check``; the suite-wide false-alarm budget is α = 1e-3.
"""

import pytest

from driftlab.montecarlo.checks import default_specs

SPECS = default_specs()


def _label(spec):
    return f"{spec.kind}:{spec.quantity}:{spec.setting.describe()}{spec.extra}"


@pytest.mark.parametrize("index", range(len(SPECS)), ids=[_label(s) for s in SPECS])
def test_check_passes(index, suite):
    result = suite.results[index]
    assert result.spec == SPECS[index]
    assert result.passed, result.as_dict()


def test_every_activation_and_loss_is_covered():
    from driftlab.montecarlo.checks import ACTIVATIONS

    grad = {(s.setting.loss, s.setting.act) for s in SPECS if s.quantity == "grad_positive"}
    assert {(loss, a) for loss in ("mse", "ce") for a in ACTIVATIONS} <= grad
    kinds = {s.kind for s in SPECS}
    assert kinds == {"agree", "zero", "positive", "negative", "differs"}


def test_sample_sizes_and_errors_are_stated(suite):
    for r in suite.results:
        d = r.as_dict()
        assert d["samples"] >= d["draws"] >= 2 and d["mc_stderr"] > 0 and d["threshold"] > 3
