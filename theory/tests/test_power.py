"""Power: planted errors must make the checks fail, at the sample sizes the suite uses.

For every agree/zero check: the analytic value shifted by its planted error (1% relative
for the E[g|p>0] theorems; the size stated in montecarlo/checks.py otherwise) in either
direction fails, and the predicted 99%-power detectable shift is below the planted
error. A flipped sign fails every non-zero check; a wrong MSE reduction (mean instead
of sum over outputs) fails every MSE gradient check; a sign check run with the
opposite claim fails.
"""

from dataclasses import replace

import pytest

from driftlab.montecarlo.checks import default_specs, evaluate
from driftlab.theory.expected_grad import Analytic, expected_grad_positive_mse

SPECS = default_specs()
N = len(SPECS)
AGREE = [i for i, s in enumerate(SPECS) if s.kind in ("agree", "zero")]
SIGNED = [i for i, s in enumerate(SPECS) if s.kind in ("positive", "negative")]
MSE_GRAD = [i for i, s in enumerate(SPECS) if s.kind == "agree" and s.quantity == "grad_positive"
            and s.setting.loss == "mse" and s.variant == "theorem"]


def _shifted(a: Analytic, delta: float) -> Analytic:
    return Analytic(a.value + delta, a.tier, a.stderr)


@pytest.mark.parametrize("index", AGREE)
def test_planted_error_is_caught(index, suite):
    r = suite.results[index]
    shift = suite.evaluator.planted_shift(r.spec, r.analytic)
    assert shift > 0
    assert r.detectable <= shift, f"check cannot detect its planted error: {r.as_dict()}"
    for sign in (+1, -1):
        planted = evaluate(r.spec, _shifted(r.analytic, sign * shift), r.mc, N)
        assert not planted.passed, f"planted {sign * shift:+.3g} not caught: {planted.as_dict()}"


@pytest.mark.parametrize("index", [i for i in AGREE if SPECS[i].kind == "agree"])
def test_flipped_sign_is_caught(index, suite):
    r = suite.results[index]
    flipped = evaluate(r.spec, r.analytic.scaled(-1.0), r.mc, N)
    assert not flipped.passed


@pytest.mark.parametrize("index", MSE_GRAD)
def test_wrong_reduction_is_caught(index, suite):
    r = suite.results[index]
    wrong = expected_grad_positive_mse(replace(r.spec.setting, reduction="mean"))
    assert not evaluate(r.spec, wrong, r.mc, N).passed


@pytest.mark.parametrize("index", SIGNED)
def test_opposite_sign_claim_fails(index, suite):
    r = suite.results[index]
    opposite = replace(r.spec, kind="negative" if r.spec.kind == "positive" else "positive")
    assert not evaluate(opposite, r.analytic, r.mc, N).passed
