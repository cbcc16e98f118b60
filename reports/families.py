"""Claim families: cells with their own tests, Holm within a claim, four verdict words.

A *claim* (one of the paper's, or one of driftlab's own, marked exploratory) is tested on a
family of *cells* (architecture × data × optimizer × … as they apply). Cells are never
pooled: each has its own values, one per independent unit (a seed), and its own predicted
sign where a theorem gives one. For a cell with n units, mean m and SD s, three one-sided
hypotheses are tested (reports/power.py):

* the claim: H1 μ > null (or < null) — for a non-inferiority claim ("≥ 0") H1 μ > −δ;
* the opposite: H1 μ < null (or > null) — for non-inferiority H1 μ < −δ;
* equivalence (TOST): H1 |μ − null| < δ,

with the margin δ fixed by the plan (:class:`Claim`). Holm's step-down adjusts the 3·m
p-values of a claim's m cells together, so within a claim the chance of any false word
is at most α whatever the dependence between cells (cells of one seed share its
initialization and batches). The cell's word, in this order:

* **holds** — the claim's adjusted p < α;
* **reversed** (a sign claim) / **fails** (a threshold claim) — the opposite's is;
* **absent** — the TOST's is: the effect is within ±δ;
* **inconclusive** — none is; it is reported with the minimum detectable effect (MDE) at
  its n (one-sided t, power 0.8, at Holm's strictest level α/(3m), σ = the cell's SD) and
  the n that 80% power would need at the claim's stated effect.

The claim's word over its cells is intersection–union for a claim about every cell
(``combine="every"``): *holds* only if every cell holds, *reversed*/*fails* if any cell is,
*absent* only if every cell is absent, else *inconclusive*. For an existence claim
("sparsity reaches 90%", ``combine="any"``) it is the union: *holds* if any cell holds,
*fails* only if every cell fails. The counts of the cells' words are printed beside it.

A bootstrap cell's MDE is the normal approximation (z_{1−α/(3m)} + z_{0.8})·SD* with SD* the
bootstrap SD, and its n for the stated effect scales n by (MDE/effect)².
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from driftlab.reports import power
from driftlab.reports.verdicts import ALPHA, FAILS, HOLDS, INCONCLUSIVE, REVERSED, holm

ABSENT = "absent"
TESTS = ("greater", "less", "non-inferiority")
KINDS = ("sign", "threshold")
FAMILIES = ("paper", "driftlab", "control")
COMBINES = ("every", "any")


@dataclass(frozen=True)
class Cell:
    """One cell of a claim: its label, one value per unit, and the predicted sign
    ("+", "−", "0", or "" where no theorem predicts one) with where it comes from.
    ``test`` overrides the claim's where the predicted direction differs by cell;
    ``result`` replaces the t tests when given (e.g. a bootstrap over configurations)."""

    label: str
    values: tuple = ()
    predicted: str = ""
    unit: str = "seed"
    test: str = ""
    result: "CellResult | None" = None


@dataclass(frozen=True)
class CellResult:
    """The three raw one-sided p-values of a cell and the summary behind them."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    sd: float
    p_claim: float
    p_opposite: float
    p_equiv: float
    p_greater: float  # raw one-sided p of μ > null and μ < null: both directions printed
    p_less: float
    method: str


@dataclass(frozen=True)
class Claim:
    """A claim and its cells. ``test`` "greater"/"less" (H1 μ ≷ ``null``) or
    "non-inferiority" (H1 μ > null − ``margin``); ``kind`` "threshold" words the opposite
    outcome *fails*; ``margin`` δ is the equivalence (and non-inferiority) margin and
    ``effect`` the effect size the design should detect (both in the value's units)."""

    key: str
    statement: str
    quantity: str
    test: str
    margin: float
    effect: float
    cells: tuple
    null: float = 0.0
    kind: str = "sign"
    family: str = "paper"
    combine: str = "every"
    note: str = ""

    def __post_init__(self):
        for name, value, allowed in (("test", self.test, TESTS), ("kind", self.kind, KINDS),
                                     ("family", self.family, FAMILIES),
                                     ("combine", self.combine, COMBINES)):
            if value not in allowed:
                raise ValueError(f"Claim.{name}={value!r} invalid; allowed: {', '.join(allowed)}")
        power.check_margin(self.margin)


@dataclass(frozen=True)
class CellVerdict:
    cell: Cell
    result: CellResult
    p_claim_adj: float
    p_opposite_adj: float
    p_equiv_adj: float
    word: str
    mde: float = float("nan")
    n_needed: int | None = None


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    cells: tuple = field(default_factory=tuple)
    word: str = INCONCLUSIVE


def _oriented(test: str, null: float, margin: float, above, below, n: int, mean: float,
              lo: float, hi: float, sd: float, method: str) -> CellResult:
    """A :class:`CellResult` from ``above(v)`` = p of H1 μ > v and ``below(v)`` = p of
    H1 μ < v, oriented by the cell's ``test``."""
    c, d = null, margin
    if test == "non-inferiority":
        p_claim, p_opp = above(c - d), below(c - d)
    elif test == "greater":
        p_claim, p_opp = above(c), below(c)
    else:
        p_claim, p_opp = below(c), above(c)
    return CellResult(n, mean, lo, hi, sd, p_claim, p_opp, max(above(c - d), below(c + d)),
                      above(c), below(c), method)


def t_result(values, test: str, null: float, margin: float,
             alpha: float = ALPHA) -> CellResult:
    """The one-sample t tests of one cell's values (non-finite dropped)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    n = int(x.size)
    m = float(x.mean()) if n else float("nan")
    sd = float(x.std(ddof=1)) if n >= 2 else float("nan")
    se = sd / math.sqrt(n) if n >= 2 else float("nan")
    half = (stats.t.ppf(1 - alpha / 2, n - 1) * se) if n >= 2 else float("nan")
    return _oriented(test, null, margin, lambda v: power.p_above(n, m, se, v),
                     lambda v: power.p_below(n, m, se, v), n, m, m - half, m + half, sd, "t")


def bootstrap_result(replicates, point: float, test: str, null: float, margin: float,
                     n_units: int, alpha: float = ALPHA) -> CellResult:
    """The same tests from bootstrap replicates of an estimate (percentile method: the
    one-sided p of H1 μ > v is the share of replicates ≤ v, floored at 1/(B + 1))."""
    b = np.asarray([e for e in replicates if np.isfinite(e)], float)
    if b.size < 100:
        nan = float("nan")
        return CellResult(n_units, point, nan, nan, nan, 1.0, 1.0, 1.0, 1.0, 1.0, "bootstrap")
    floor = 1.0 / (b.size + 1)
    lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2])
    return _oriented(test, null, margin, lambda v: max(floor, float(np.mean(b <= v))),
                     lambda v: max(floor, float(np.mean(b >= v))), n_units, float(point),
                     float(lo), float(hi), float(b.std(ddof=1)), f"bootstrap ({b.size})")


def decide(claim: Claim, alpha: float = ALPHA) -> ClaimVerdict:
    """Test every cell, Holm over the claim's 3·m p-values, words per cell and claim."""
    results = [c.result if c.result is not None else
               t_result(c.values, c.test or claim.test, claim.null, claim.margin, alpha)
               for c in claim.cells]
    m = len(results)
    if not m:
        return ClaimVerdict(claim)
    adj = holm([r.p_claim for r in results] + [r.p_opposite for r in results]
               + [r.p_equiv for r in results])
    opposite = REVERSED if claim.kind == "sign" else FAILS
    level = alpha / (3 * m)
    verdicts = []
    for i, (cell, r) in enumerate(zip(claim.cells, results)):
        pc, po, pe = adj[i], adj[m + i], adj[2 * m + i]
        word = (HOLDS if pc < alpha else opposite if po < alpha else
                ABSENT if pe < alpha else INCONCLUSIVE)
        mde, n_needed = (_detectable(r, claim.effect, level) if word == INCONCLUSIVE
                         else (float("nan"), None))
        verdicts.append(CellVerdict(cell, r, pc, po, pe, word, mde, n_needed))
    return ClaimVerdict(claim, tuple(verdicts), _combine([v.word for v in verdicts],
                                                         claim.combine, opposite))


def _detectable(r: CellResult, effect: float, level: float) -> tuple[float, int | None]:
    """(MDE at the cell's n, n for 80% power at ``effect``) at one-sided level ``level``."""
    if r.method == "t":
        return power.mde(r.n, r.sd, level), power.n_for_power(effect, r.sd, level)
    if not (r.sd > 0 and r.n >= 2):
        return float("nan"), None
    mde = (stats.norm.ppf(1 - level) + stats.norm.ppf(power.POWER)) * r.sd
    return float(mde), max(2, math.ceil(r.n * (mde / effect) ** 2))


def _combine(words: list[str], combine: str, opposite: str) -> str:
    if combine == "any":
        return (HOLDS if HOLDS in words else opposite if all(w == opposite for w in words)
                else INCONCLUSIVE)
    return (HOLDS if all(w == HOLDS for w in words) else opposite if opposite in words else
            ABSENT if all(w == ABSENT for w in words) else INCONCLUSIVE)


def _g(x, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _h1(c: Claim) -> str:
    if c.test == "non-inferiority":
        return f"> {_g(c.null - c.margin)} (≥ {_g(c.null)} up to δ)"
    return f"{'>' if c.test == 'greater' else '<'} {_g(c.null)}"


def _detail(c: Claim, v: CellVerdict) -> str:
    if v.word == ABSENT:
        return f"within ±{_g(c.margin)} (TOST p {_g(v.p_equiv_adj, 2)})"
    if v.word == INCONCLUSIVE:
        if not math.isfinite(v.mde):
            return "no test (n < 2 or no spread)"
        need = f"n ≈ {v.n_needed}" if v.n_needed else f"n > {power.N_MAX}"
        return f"detectable {_g(v.mde, 2)} at n = {v.result.n}; {need} for {_g(c.effect)}"
    p = v.p_claim_adj if v.word == HOLDS else v.p_opposite_adj
    return f"p {_g(p, 2)}"


def _claim_word(cv: ClaimVerdict) -> str:
    counts: dict = {}
    for v in cv.cells:
        counts[v.word] = counts.get(v.word, 0) + 1
    rule = "any cell" if cv.claim.combine == "any" else "every cell"
    return (f"**{cv.word}** ({rule}; " + ", ".join(f"{w} {k}" for w, k in counts.items())
            + ")")


def plan_markdown(verdicts: list[ClaimVerdict], alpha: float = ALPHA) -> str:
    """The plan as a table: per claim its test, δ, stated effect, cells, n per cell, and the
    n per cell that 80% power at the stated effect needs given the cells' SDs (every cell,
    decided or not: what the next design would need)."""
    head = ["claim", "family", "H1; δ", "stated effect", "cells", "n per cell",
            "n for 80% power (range over cells)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cv in verdicts:
        c, m = cv.claim, len(cv.cells)
        ns = [v.result.n for v in cv.cells]
        need = [_detectable(v.result, c.effect, alpha / (3 * m))[1] for v in cv.cells]
        known = [k for k in need if k]
        need_s = (f"{min(known)}–{max(known)}" if known else "–") + (
            f" ({len(need) - len(known)} cells: no estimate)" if len(known) < len(need) else "")
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in [
            f"{c.key}. {c.statement}", c.family, f"{_h1(c)}; {_g(c.margin)}", _g(c.effect),
            str(m), f"{min(ns)}–{max(ns)}" if ns else "–", need_s]) + " |")
    return "\n".join(lines) + "\n"


def markdown(verdicts: list[ClaimVerdict]) -> str:
    """One table over the claims: a row per cell, its claim's word in the claim's first
    row; raw one-sided p-values of both directions and the Holm-adjusted deciding one."""
    head = ["claim (family)", "H1; margin δ", "cell", "pred.", "n", "mean [95% CI]",
            "p(>)", "p(<)", "cell word (Holm in claim)", "claim word"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cv in verdicts:
        c = cv.claim
        for i, v in enumerate(cv.cells):
            r = v.result
            first = i == 0
            cells = [f"{c.key}. {c.statement} ({c.family}); {c.quantity}" if first else "",
                     f"{_h1(c)}; δ = {_g(c.margin)}" if first else "",
                     f"{v.cell.label} ({v.cell.unit})", v.cell.predicted or "–", str(r.n),
                     f"{_g(r.mean)} [{_g(r.ci_low)}, {_g(r.ci_high)}]",
                     _g(r.p_greater, 2), _g(r.p_less, 2),
                     f"{v.word}: {_detail(c, v)}", _claim_word(cv) if first else ""]
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"
