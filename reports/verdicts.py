"""Pre-registered statistical tests that turn measurements over seeds into verdict words.

Every claim of the paper is judged by a one-sided test of a pre-declared direction on one
value per independent unit (a seed, or a (seed, layer) pair when stated), never by prose:

    r = one_sided(values, direction="less")            # H1: mean < 0
    rows = judge([ClaimTest("2. drift", "Δmean(W_down)/SE", values, "less"), ...])

:func:`judge` computes, for each claim, the p-value of the claimed direction and of the
opposite direction, Holm-adjusts the whole family of 2m one-sided p-values at once
(family-wise error ≤ α over the table), and derives the word:

* **holds**: the claimed direction is significant;
* **reversed** (a sign claim) or **fails** (a threshold claim, e.g. "sparsity ≥ 0.85"):
  the opposite direction is significant;
* **inconclusive at this scale**: neither is.

The effect size is Cohen's d = (mean − null)/SD with a t-based CI on the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

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


def from_summary(mean: float, se: float, n: int, direction: str = "greater",
                 null: float = 0.0, alpha: float = ALPHA) -> TestResult:
    """One-sided t test from a mean, its standard error over n independent clusters (e.g.
    init seeds) and n − 1 degrees of freedom, for estimates whose per-unit values are not
    kept (montecarlo/per_layer.py reports mean ± clustered SE)."""
    _check(direction)
    if n < 2 or not (se > 0) or not math.isfinite(mean):
        return TestResult(int(n), float(mean), float("nan"), float("nan"), float("nan"), 1.0,
                          1.0, "one-sided t test (summary)", direction, null)
    t = (mean - null) / se
    p_greater, p_less = float(stats.t.sf(t, n - 1)), float(stats.t.cdf(t, n - 1))
    half = stats.t.ppf(1 - alpha / 2, n - 1) * se
    p, p_opp = (p_greater, p_less) if direction == "greater" else (p_less, p_greater)
    return TestResult(int(n), float(mean), mean - half, mean + half,
                      float((mean - null) / (se * math.sqrt(n))), p, p_opp,
                      "one-sided t test (summary)", direction, null)


def every_unit(results: list[TestResult]) -> TestResult:
    """"The claim holds for every member" (e.g. every layer) from per-member tests.

    Intersection–union: the claim's p-value is the largest member p (valid without any
    correction); the opposite ("some member goes the other way") is a union, so its
    p-value is Bonferroni's min(1, m · smallest opposite p). The reported mean and CI are
    the weakest member's (the one with the largest claim p).
    """
    if not results:
        raise ValueError("every_unit needs at least one result")
    weakest = max(results, key=lambda r: r.p)
    p_opp = min(1.0, len(results) * min(r.p_opposite for r in results))
    return replace(weakest, p=weakest.p, p_opposite=p_opp,
                   method=f"intersection–union over {len(results)}")


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


@dataclass(frozen=True)
class ClaimTest:
    """A pre-registered test of one claim: H1 is "mean of ``values`` is ``direction`` of
    ``null``". ``kind`` "sign" (opposite outcome: reversed) or "threshold" (fails).
    ``unit`` names what one value is (e.g. "seed", "(seed, layer)")."""

    claim: str
    quantity: str
    values: tuple
    direction: str = "greater"
    null: float = 0.0
    kind: str = "sign"
    unit: str = "seed"
    method: str = "t"
    note: str = ""
    # A pre-computed test (from_summary / every_unit) used when ``values`` is empty.
    result: TestResult | None = field(default=None, compare=False)
    p_adj: float = float("nan")
    p_opposite_adj: float = float("nan")
    verdict: str = ""

    def __post_init__(self):
        _check(self.direction, self.method)
        if self.kind not in ("sign", "threshold"):
            raise ValueError(f"kind={self.kind!r} invalid; allowed: sign, threshold")


def judge(claims: list[ClaimTest], alpha: float = ALPHA) -> list[ClaimTest]:
    """Run every claim's test, Holm-adjust the 2m one-sided p-values together, set verdicts."""
    results = [c.result if (not c.values and c.result is not None)
               else one_sided(c.values, c.direction, c.null, c.method, alpha) for c in claims]
    adj = holm([r.p for r in results] + [r.p_opposite for r in results])
    m = len(claims)
    out = []
    for i, (c, r) in enumerate(zip(claims, results)):
        word = verdict_word(adj[i], adj[m + i], alpha,
                            REVERSED if c.kind == "sign" else FAILS)
        out.append(replace(c, result=r, p_adj=adj[i], p_opposite_adj=adj[m + i], verdict=word))
    return out


def _g(x: float, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def claims_markdown(rows: list[ClaimTest]) -> str:
    """A Markdown table: claim, quantity, H1, n, mean [CI], effect, p (Holm), verdict."""
    head = ["claim", "quantity (one value per unit)", "H1", "n", "mean [95% CI]",
            "effect d", "p (Holm)", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in rows:
        r = c.result
        h1 = f"{'>' if c.direction == 'greater' else '<'} {_g(c.null)}"
        p = c.p_adj if c.verdict != (REVERSED if c.kind == "sign" else FAILS) else c.p_opposite_adj
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in [
            c.claim, f"{c.quantity} ({c.unit}){'; ' + c.note if c.note else ''}", h1,
            str(r.n), f"{_g(r.mean)} [{_g(r.ci_low)}, {_g(r.ci_high)}]", _g(r.effect, 2),
            f"{_g(p, 2)} ({r.method})", f"**{c.verdict}**"]) + " |")
    return "\n".join(lines) + "\n"
