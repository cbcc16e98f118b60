"""One-sided tests over independent units, Holm's adjustment, and the verdict words.

The primitives of the claims table (reports/families.py decides the claims with them):

    r = one_sided(values, direction="less")            # H1: mean < 0 over seeds
    d = two_sample(a, b, "greater", paired=True)       # H1: mean(a − b) > 0, same seeds
    adjusted = holm([r.p, ...])

Each result carries the p-value of the stated direction and of the opposite one, the
mean with a t-based (1 − α) CI, and the effect size Cohen's d = (mean − null)/SD. The
words: **holds** (the claimed direction is significant), **reversed** (a sign claim) or
**fails** (a threshold claim) when the opposite direction is, **inconclusive at this
scale** when neither is (reports/families.py adds **absent**, by an equivalence test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

DIRECTIONS = ("greater", "less")
METHODS = ("t", "sign")
ALPHA = 0.05
HOLDS, REVERSED, FAILS, INCONCLUSIVE = "holds", "reversed", "fails", "inconclusive at this scale"


@dataclass(frozen=True)
class TestResult:
    """One one-sided test of H1: mean (or median, sign test) is ``direction`` of ``null``."""

    n: int
    mean: float
    ci_low: float  # two-sided (1 − alpha) t interval of the mean
    ci_high: float
    effect: float  # Cohen's d = (mean − null) / SD; ±inf when SD = 0
    p: float  # one-sided p-value of the stated direction
    p_opposite: float  # one-sided p-value of the opposite direction
    method: str
    direction: str
    null: float


def _check(direction: str, method: str = "t") -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} invalid; allowed: {', '.join(DIRECTIONS)}")
    if method not in METHODS:
        raise ValueError(f"method={method!r} invalid; allowed: {', '.join(METHODS)}")


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def one_sided(values, direction: str = "greater", null: float = 0.0, method: str = "t",
              alpha: float = ALPHA) -> TestResult:
    """One-sided one-sample test over independent values (non-finite ones are dropped).

    ``method="t"``: Student t on the mean (scipy ``ttest_1samp``); ``"sign"``: exact
    binomial sign test on #(x > null) among x ≠ null (robust to heavy tails). With n < 2
    (t) or no non-tied value (sign) both p-values are 1: nothing can be concluded.
    """
    _check(direction, method)
    x = _finite(values)
    n = int(x.size)
    mean = float(np.mean(x)) if n else float("nan")
    sd = float(np.std(x, ddof=1)) if n >= 2 else float("nan")
    if n >= 2 and sd > 0:
        half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
        ci = (mean - half, mean + half)
        effect = (mean - null) / sd
    else:
        ci = (mean, mean)
        effect = (math.copysign(math.inf, mean - null) if n >= 2 and mean != null
                  else float("nan"))
    opposite = "less" if direction == "greater" else "greater"
    if method == "t":
        if n < 2:
            p = p_opp = 1.0
        elif sd == 0:  # degenerate: every value identical
            p = 0.0 if (mean - null) * (1 if direction == "greater" else -1) > 0 else 1.0
            p_opp = 0.0 if (mean - null) * (1 if opposite == "greater" else -1) > 0 else 1.0
        else:
            p = float(stats.ttest_1samp(x, null, alternative=direction).pvalue)
            p_opp = float(stats.ttest_1samp(x, null, alternative=opposite).pvalue)
    else:
        above, below = int(np.sum(x > null)), int(np.sum(x < null))
        m = above + below
        if m == 0:
            p = p_opp = 1.0
        else:
            k = above if direction == "greater" else below
            p = float(stats.binomtest(k, m, 0.5, alternative="greater").pvalue)
            p_opp = float(stats.binomtest(m - k, m, 0.5, alternative="greater").pvalue)
    return TestResult(n, mean, float(ci[0]), float(ci[1]), float(effect), p, p_opp,
                      f"one-sided {'t' if method == 't' else 'sign'} test", direction, null)


def two_sample(a, b, direction: str = "greater", paired: bool = False,
               alpha: float = ALPHA) -> TestResult:
    """One-sided test of H1: mean(a) − mean(b) is ``direction`` of 0.

    ``paired=True``: one-sample t on a_i − b_i (same seeds); otherwise Welch's t, whose
    CI uses the Welch–Satterthwaite degrees of freedom and whose effect is Cohen's d with
    the pooled SD.
    """
    _check(direction)
    if paired:
        a, b = np.asarray(a, float), np.asarray(b, float)
        if a.shape != b.shape:
            raise ValueError(f"paired test needs equal shapes, got {a.shape} and {b.shape}")
        r = one_sided(a - b, direction, 0.0, alpha=alpha)
        return replace(r, method="one-sided paired t test")
    x, y = _finite(a), _finite(b)
    if x.size < 2 or y.size < 2:
        return TestResult(int(x.size + y.size), float("nan"), float("nan"), float("nan"),
                          float("nan"), 1.0, 1.0, "one-sided Welch t test", direction, 0.0)
    diff = float(x.mean() - y.mean())
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    pooled = math.sqrt(((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1))
                       / (x.size + y.size - 2))
    if se == 0:
        sign = 1 if direction == "greater" else -1
        p = 0.0 if diff * sign > 0 else 1.0
        p_opp = 0.0 if diff * -sign > 0 else 1.0
        return TestResult(int(x.size + y.size), diff, diff, diff,
                          math.copysign(math.inf, diff) if diff else float("nan"), p, p_opp,
                          "one-sided Welch t test", direction, 0.0)
    dof = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    half = stats.t.ppf(1 - alpha / 2, dof) * se
    opposite = "less" if direction == "greater" else "greater"
    p = float(stats.ttest_ind(x, y, equal_var=False, alternative=direction).pvalue)
    p_opp = float(stats.ttest_ind(x, y, equal_var=False, alternative=opposite).pvalue)
    return TestResult(int(x.size + y.size), diff, diff - half, diff + half,
                      diff / pooled if pooled > 0 else float("nan"), p, p_opp,
                      "one-sided Welch t test", direction, 0.0)


def holm(pvalues) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1), input order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def verdict_word(p_claim_adj: float, p_opposite_adj: float, alpha: float = ALPHA,
                 opposite_word: str = REVERSED) -> str:
    """holds / reversed (or fails) / inconclusive at this scale, from adjusted p-values."""
    if p_claim_adj < alpha:
        return HOLDS
    if p_opposite_adj < alpha:
        return opposite_word
    return INCONCLUSIVE
