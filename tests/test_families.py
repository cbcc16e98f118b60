"""Claim families (reports/families.py): the four words, Holm within a claim, and power.

Each test plants an effect (or its absence) of stated size and asserts the word; the
power tests plant an effect at the design's own MDE and at half of it."""

import numpy as np
import pytest

from driftlab.reports import families as F
from driftlab.reports.init_grad import predicted, predicted_signs
from driftlab.testing import assert_close


def _claim(values_per_cell, test="less", margin=0.01, **kw):
    cells = tuple(F.Cell(f"c{i}", tuple(v)) for i, v in enumerate(values_per_cell))
    return F.Claim("2", "drift negative", "Δ", test, margin, margin, cells, **kw)


def _normal(mean, sd, n, seed):
    return np.random.default_rng(seed).normal(mean, sd, n)


def test_the_four_words_from_planted_cells():
    v = F.decide(_claim([_normal(-0.05, 0.005, 8, 0), _normal(0.05, 0.005, 8, 1),
                         _normal(0.0, 0.001, 8, 2), _normal(0.0, 0.05, 3, 3)]))
    assert [c.word for c in v.cells] == [F.HOLDS, F.REVERSED, F.ABSENT, F.INCONCLUSIVE]
    assert v.word == F.REVERSED  # intersection–union: one reversed cell reverses the claim
    last = v.cells[-1]
    assert np.isfinite(last.mde) and last.mde > 0.05 and last.n_needed > 3


def test_non_inferiority_holds_at_zero_and_fails_below_the_margin():
    zero, below = _normal(0.0, 0.001, 8, 4), _normal(-0.05, 0.005, 8, 5)
    v = F.decide(_claim([zero, below], test="non-inferiority"))
    assert [c.word for c in v.cells] == [F.HOLDS, F.REVERSED]


def test_threshold_claims_fail_and_existence_claims_take_the_union():
    high, low = _normal(0.95, 0.01, 6, 6), _normal(0.70, 0.01, 6, 7)
    every = F.decide(_claim([high, low], test="greater", null=0.85, kind="threshold"))
    assert [c.word for c in every.cells] == [F.HOLDS, F.FAILS] and every.word == F.FAILS
    some = F.decide(_claim([high, low], test="greater", null=0.85, kind="threshold",
                           combine="any"))
    assert some.word == F.HOLDS
    assert F.decide(_claim([low, low], test="greater", null=0.85, kind="threshold",
                           combine="any")).word == F.FAILS


def test_holm_is_within_the_claim_so_more_cells_raise_the_bar():
    """A cell at raw p ≈ 0.01 (t = −3, n = 8) holds alone (Holm over 3 p-values) but not
    among 10 null cells (over 33)."""
    z = np.random.default_rng(9).normal(size=8)
    x = -3 / np.sqrt(8) + (z - z.mean()) / z.std(ddof=1)
    alone = F.decide(_claim([x]))
    crowd = F.decide(_claim([x] + [_normal(0, 0.05, 8, 10 + i) for i in range(10)]))
    # tol: 0.0099 is the one-sided t₇ tail at t = −3 rounded to two figures (0.00998)
    assert alone.cells[0].result.p_claim == pytest.approx(0.0099, abs=5e-4)
    assert alone.cells[0].word == F.HOLDS and crowd.cells[0].word == F.INCONCLUSIVE


@pytest.mark.parametrize("scale, min_rate, max_rate", [(1.0, 0.7, 1.0), (0.25, 0.0, 0.35)])
def test_the_mde_is_what_the_design_detects(scale, min_rate, max_rate):
    """Power check: an effect at the stated MDE (n = 8, SD 1, one cell) is detected in
    ≈ 80% of 200 replicates; a quarter of it rarely."""
    from driftlab.reports import power

    mde = power.mde(8, 1.0, 0.05 / 3)
    hits = [F.decide(_claim([_normal(-scale * mde, 1.0, 8, 100 + r)], margin=0.01)
                     ).cells[0].word == F.HOLDS for r in range(200)]
    assert min_rate <= np.mean(hits) <= max_rate


def test_bootstrap_cells_decide_and_report_a_detectable_effect():
    claim = _claim([])
    reps = np.random.default_rng(0).normal(-1.0, 0.2, 2000)
    r = F.bootstrap_result(reps, -1.0, "less", 0.0, 0.5, 20)
    v = F.decide(F.Claim("5", "cliff", "c", "less", 0.5, 0.5, (F.Cell("all", result=r),)))
    assert v.cells[0].word == F.HOLDS
    assert_close(r.p_claim, 1 / 2001)
    wide = F.bootstrap_result(np.random.default_rng(1).normal(-0.3, 1.0, 2000), -0.3,
                              "less", 0.0, 0.5, 20)
    w = F.decide(F.Claim("5", "cliff", "c", "less", 0.5, 0.5, (F.Cell("all", result=wide),)))
    assert w.cells[0].word == F.INCONCLUSIVE and w.cells[0].mde > 1.0
    assert w.cells[0].n_needed > 20
    assert claim.cells == ()


def test_bad_claim_fields_are_named():
    with pytest.raises(ValueError, match="Claim.test='sideways' invalid; allowed"):
        F.Claim("x", "s", "q", "sideways", 0.1, 0.1, ())
    with pytest.raises(ValueError, match="combine"):
        F.Claim("x", "s", "q", "less", 0.1, 0.1, (), combine="most")
    with pytest.raises(ValueError, match="margin"):
        F.Claim("x", "s", "q", "less", 0.0, 0.1, ())


def test_predicted_signs_come_from_default_variants_only():
    def row(variant, arch, data, tap, pred, se=1e-3):
        return {"variant": variant, "arch": arch, "data": data, "tap": tap,
                "predicted": pred, "predicted_se": se}

    signs = predicted_signs([row("mlp", "mlp", "synthetic", "layer0", 0.01),
                             row("gpt default, synthetic", "gpt", "synthetic", "block0.mlp", 0.0),
                             row("gpt untied head", "gpt", "synthetic", "block1.mlp", 0.01),
                             row("resnet, norm=none (control)", "resnet", "synthetic",
                                 "stem.act", -0.01),
                             row("POWER: gpt default, curvature sign flipped", "gpt",
                                 "synthetic", "block0.mlp", -0.01)])
    assert predicted(signs, "mlp", "synthetic", "", "layer0") == "+ (tiny)"
    assert predicted(signs, "gpt", "synthetic", "", "block0.mlp") == "0 (tiny)"
    assert predicted(signs, "gpt", "synthetic", "", "block1.mlp") == ""
    assert predicted(signs, "resnet", "embedded", "none", "stem.act") == "− (tiny, synthetic)"
