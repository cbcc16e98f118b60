"""reports/verdicts.py: the tests behind every verdict word have the stated size and power."""

import numpy as np
import pytest

from driftlab.reports import verdicts as V


def test_holm_matches_hand_computation():
    # p sorted: 0.01 (×4 = .04), 0.02 (×3 = .06), 0.03 (×2 = .06 by monotonicity), 0.5 (×1)
    assert V.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert V.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_one_sided_t_has_its_size_under_the_null():
    rng = np.random.default_rng(0)
    p = np.array([V.one_sided(rng.normal(size=5), "greater").p for _ in range(4000)])
    rate = np.mean(p < 0.05)  # binomial SE ≈ 0.0034
    assert abs(rate - 0.05) < 0.015


def test_one_sided_catches_a_planted_effect_and_its_reversal():
    rng = np.random.default_rng(1)
    x = 1.0 + rng.normal(size=8)  # d ≈ 1 with n = 8: power ≈ 0.9 at α = 0.05
    r = V.one_sided(x, "greater")
    assert r.p < 0.05 and r.p_opposite > 0.9 and r.ci_low < r.mean < r.ci_high
    assert r.effect == pytest.approx((x.mean()) / x.std(ddof=1))
    rows = V.judge([V.ClaimTest("up", "x", tuple(x), "greater"),
                    V.ClaimTest("down", "x", tuple(x), "less"),
                    V.ClaimTest("≥ 5", "x", tuple(x), "greater", null=5.0, kind="threshold"),
                    V.ClaimTest("noise", "x", tuple(rng.normal(size=8)), "greater")])
    assert [r.verdict for r in rows] == [V.HOLDS, V.REVERSED, V.FAILS, V.INCONCLUSIVE]
    assert "**reversed**" in V.claims_markdown(rows)


def test_sign_test_and_two_sample():
    assert V.one_sided([1, 2, 3, 4, 5, 6], "greater", method="sign").p == pytest.approx(1 / 64)
    a, b = np.arange(6.0), np.arange(6.0) - 2.0
    assert V.two_sample(a, b, "greater", paired=True).p == 0.0  # constant difference
    w = V.two_sample(a + 3, b, "greater")
    assert w.p < 0.01 and w.p_opposite > 0.99 and w.mean == pytest.approx(5.0)


def test_too_little_data_is_inconclusive_and_bad_input_is_named():
    assert V.one_sided([1.0], "greater").p == 1.0
    assert V.judge([V.ClaimTest("c", "q", (float("nan"), 2.0))])[0].verdict == V.INCONCLUSIVE
    with pytest.raises(ValueError, match="direction"):
        V.one_sided([1, 2], "up")
    with pytest.raises(ValueError, match="kind"):
        V.ClaimTest("c", "q", (1.0,), kind="maybe")


def test_from_summary_matches_the_t_test_on_the_values():
    from driftlab.reports.verdicts import from_summary

    x = np.array([0.3, 0.1, 0.5, 0.2, 0.4, 0.25])
    direct = V.one_sided(x, "greater")
    summ = from_summary(x.mean(), x.std(ddof=1) / np.sqrt(x.size), x.size, "greater")
    assert summ.p == pytest.approx(direct.p) and summ.p_opposite == pytest.approx(
        direct.p_opposite)
    assert (summ.ci_low, summ.ci_high) == pytest.approx((direct.ci_low, direct.ci_high))


def test_every_unit_needs_every_member_and_flags_any_reversal():
    from driftlab.reports.verdicts import ClaimTest, every_unit, from_summary, judge

    strong = from_summary(1.0, 0.1, 64)
    null = from_summary(0.0, 0.1, 64)
    negative = from_summary(-1.0, 0.1, 64)
    claims = [ClaimTest("all strong", "g", (), result=every_unit([strong, strong])),
              ClaimTest("one null", "g", (), result=every_unit([strong, null])),
              ClaimTest("one reversed", "g", (), result=every_unit([strong, negative]))]
    words = [c.verdict for c in judge(claims)]
    assert words == ["holds", "inconclusive at this scale", "reversed"]
