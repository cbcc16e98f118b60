"""The confirmatory table: a frozen plan's tests (reports/plans/*.json) applied to the runs
made under it, with the plan's words.

Per claim of the plan, each cell that ran has one value per seed (the plan's statistic) and
one *primary* test: superiority (one-sided t of H1 μ beyond the null on the predicted side)
or, where the predicted sign is "0", equivalence (TOST ±δ). Holm's step-down over the
claim's primary p-values gives each cell a level a (α/(m − j) at its step j; cells not
rejected keep the level at which Holm stopped). The cell's word is read from its
(1 − 2a) two-sided t interval [L, U] around the mean, which decides all three one-sided
questions at level a at once (null c, margin δ, predicted side s = ±1):

* holds — s·(L, U) lies beyond c (s·L > s·c … for s = +1, L > c); "holds, below δ" when
  moreover [L, U] ⊂ (c − δ, c + δ): a real effect smaller than the margin;
* reversed (fails, for a threshold claim) — the same on the other side;
* absent — [L, U] ⊂ (c − δ, c + δ) and contains c;
* inconclusive — none of these, with the effect its n detects at power 0.8 (one-sided,
  level a) and the n that δ needs.

The claim's word follows the plan's rule (``tests.claim_words``): every/any, "not general"
when the decided cells disagree, and the deferred cells named with their planned n.
Assumptions: seeds are independent units; the t interval assumes a normal mean (n ≥ 4
per run cell in this plan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from driftlab.reports import init_grad, power
from driftlab.reports.confirm_plan import Plan, confirmatory_problems
from driftlab.reports.markdown import fmt as _f, table as _table

HOLDS, HOLDS_SMALL = "holds", "holds, below δ"
REVERSED, REVERSED_SMALL = "reversed", "reversed, below δ"
FAILS = "fails"
ABSENT, INCONCLUSIVE = "absent", "inconclusive"
MISSING = "missing"  # a run cell with fewer than 2 finished runs: no word at all
NOT_GENERAL = "not general"
SIDES = {"+": 1, "−": -1, "0": 0}


@dataclass(frozen=True)
class CellOutcome:
    """One run cell of a claim: its values, Holm level, interval and word."""

    label: str
    predicted: str
    test: str
    n_planned: int
    values: tuple
    p: float = float("nan")
    level: float = float("nan")
    mean: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    word: str = INCONCLUSIVE
    mde: float = float("nan")
    n_for_margin: int | None = None


def _finite(values) -> np.ndarray:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    return x[np.isfinite(x)]


def primary_p(x: np.ndarray, test: str, side: int, null: float, margin: float) -> float:
    """p of the cell's primary test: superiority on ``side`` of ``null``, or TOST ±margin."""
    n = x.size
    if n < 2:
        return 1.0
    m, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))
    if se == 0:
        if test == "equivalence":
            return 0.0 if abs(m - null) < margin else 1.0
        return 0.0 if side * (m - null) > 0 else 1.0
    df = n - 1
    if test == "equivalence":
        return float(max(stats.t.sf((m - null + margin) / se, df),
                         stats.t.cdf((m - null - margin) / se, df)))
    return float(stats.t.sf(side * (m - null) / se, df))


def holm_levels(pvalues: list[float], alpha: float) -> list[float]:
    """Each test's Holm level: α/(m − j) at its step j for the rejected ones, and for the
    rest the level at which the step-down stopped."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    levels = [float("nan")] * m
    for j, i in enumerate(order):
        level = alpha / (m - j)
        if pvalues[i] > level:
            for k in order[j:]:
                levels[k] = level
            break
        levels[i] = level
    return levels


def cell_word(low: float, high: float, side: int, null: float, margin: float,
              threshold: bool = False) -> str:
    """The plan's word for a (1 − 2a) interval [low, high] (see the module doc); ``side``
    0 (an equivalence cell) words a one-sided interval by its sign."""
    inside = null - margin < low and high < null + margin
    above, below = low > null, high < null
    if side == 0:
        if inside:
            return ABSENT if not (above or below) else (
                "+, below δ" if above else "−, below δ")
        return "+" if above else "−" if below else INCONCLUSIVE
    beyond = above if side > 0 else below
    other = below if side > 0 else above
    if beyond:
        return HOLDS_SMALL if inside else HOLDS
    if other:
        if threshold:
            return FAILS
        return REVERSED_SMALL if inside else REVERSED
    return ABSENT if inside else INCONCLUSIVE


def decide_cells(cells: list[dict], values: dict, claim: dict, alpha: float) -> list[CellOutcome]:
    """Holm over the run cells' primary tests, then each cell's interval and word."""
    null, margin = float(claim.get("null", 0.0)), float(claim["margin"])
    threshold = claim.get("kind") == "threshold"
    xs = [_finite(values.get(c["label"], ())) for c in cells]
    ps = [primary_p(x, c["test"], SIDES[c["predicted"]], null, margin) for x, c in zip(xs, cells)]
    levels = holm_levels(ps, alpha)
    out = []
    for c, x, p, a in zip(cells, xs, ps, levels):
        base = dict(label=c["label"], predicted=c["predicted"], test=c["test"],
                    n_planned=c["n"], values=tuple(float(v) for v in x), p=p, level=a)
        if x.size < 2:
            out.append(CellOutcome(**base, word=MISSING))
            continue
        m, sd = float(x.mean()), float(x.std(ddof=1))
        half = stats.t.ppf(1 - a, x.size - 1) * sd / math.sqrt(x.size)
        word = cell_word(m - half, m + half, SIDES[c["predicted"]], null, margin, threshold)
        extra = {}
        if word == INCONCLUSIVE:
            extra = dict(mde=power.mde(x.size, sd, a), n_for_margin=power.n_for_power(
                margin, sd, a, test="tost" if c["test"] == "equivalence" else "one-sided"))
        out.append(CellOutcome(**base, mean=m, low=m - half, high=m + half, word=word, **extra))
    return out


def claim_word(outcomes: list[CellOutcome], combine: str, n_deferred: int) -> str:
    """The plan's rule from the run cells' words to the claim's word (module doc)."""
    words = [o.word for o in outcomes]
    base = {HOLDS_SMALL: HOLDS, REVERSED_SMALL: REVERSED}
    kinds = [base.get(w, w) for w in words]
    counts = ", ".join(f"{w} {words.count(w)}" for w in dict.fromkeys(words))
    if not outcomes:
        word = "not run"
    elif MISSING in words:
        word = "incomplete"
    elif combine == "any":
        word = HOLDS if HOLDS in kinds else FAILS if all(k == FAILS for k in kinds) else INCONCLUSIVE
    elif all(k == HOLDS for k in kinds):
        word = HOLDS
    elif all(k == REVERSED for k in kinds):
        word = REVERSED
    elif all(k == ABSENT for k in kinds):
        word = ABSENT
    elif len({k for k in kinds if k in (HOLDS, REVERSED, ABSENT)}) >= 2:
        word = NOT_GENERAL
    else:
        word = INCONCLUSIVE
    if outcomes and (len(set(words)) > 1 or HOLDS_SMALL in words):
        word += f" ({counts})"
    if n_deferred:
        word += f" ({n_deferred} cell{'s' if n_deferred > 1 else ''} deferred)"
    return word


# --------------------------------------------------------------------------- values


def _drift_label(key: tuple) -> str:
    arch, act, data, opt = key
    return " ".join(k for k in (arch, act if act != "relu" else "", data, opt) if k)


def collect_values(plan: Plan, cells: dict, pin_rows: list, trade: dict,
                   ok: dict) -> dict[str, dict[str, list[float]]]:
    """{claim key: {cell label: [value per seed]}}, each claim's statistic as the plan
    states it, from what the report's sections already collected: ``cells`` (drift.section),
    ``pin_rows`` (causal.section), ``trade`` (cliff.section) and the finished runs ``ok``
    ({preset: [Run]}) for the init and optimizers presets."""
    early = {_drift_label(k): [d.w_rel_early for d in ds] for k, ds in cells.items()}
    final = {_drift_label(k): [d.w_rel for d in ds] for k, ds in cells.items()}
    init = {f"{arch} {data}{' norm=' + norm if norm else ''} {tap}": v
            for (arch, data, norm), taps in init_grad.collect(ok.get("init", [])).items()
            for tap, v in taps.items()}
    sparsity4: dict[str, list] = {}
    for r in ok.get("optimizers", []):
        last = [t["sparsity_last"] for t in r.summary.get("taps", {}).values()
                if "sparsity_last" in t]
        label = f"{r.tags['arch']} {r.tags.get('data', '')} {r.tags['optimizer']} (optimizers preset)"
        sparsity4.setdefault(label, []).append(max(last) if last else float("nan"))
    pins: dict[str, dict] = {}
    for r in pin_rows:
        pins.setdefault(r["pin"], {})[f"{r['arch']} {r['data']} {r['optimizer']}"] = [
            b - p for b, p in zip(r["sparsity_unpinned"], r["sparsity_pinned"])]
    by_key = {"1": init, "2": early, "3": early, "2′": final, "4": sparsity4,
              "5": {"mlp embedded adamw, per-seed fits":
                    list((trade or {}).get("slope_change_at_knee", []))}}
    out = {}
    for claim in plan.data["claims"]:
        pin = next((c.get("pin") for c in claim["cells"] if c.get("pin")), None)
        out[claim["key"]] = by_key.get(claim["key"], pins.get(pin, {}) if pin else {})
    return out


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class ClaimOutcome:
    claim: dict
    cells: tuple
    deferred: tuple
    word: str


def decide(plan: Plan, values: dict) -> list[ClaimOutcome]:
    """Every claim of the plan decided on ``values`` (:func:`collect_values`)."""
    alpha = float(plan.data["alpha"])
    out = []
    for claim in plan.data["claims"]:
        run = [c for c in claim["cells"] if c["run"]]
        deferred = tuple(c for c in claim["cells"] if not c["run"])
        cells = decide_cells(run, values.get(claim["key"], {}), claim, alpha) if run else []
        out.append(ClaimOutcome(claim, tuple(cells), deferred,
                                claim_word(cells, claim["combine"], len(deferred))))
    return out


def words(outcomes: list[ClaimOutcome], plan: Plan, confirmatory: bool) -> dict:
    """The table as data (``confirm.json``)."""
    return {"plan": f"reports/plans/{Path(plan.path).name}", "digest": plan.digest,
            "version": plan.version, "confirmatory": confirmatory,
            "claims": [{"key": o.claim["key"], "statement": o.claim["statement"],
                        "family": o.claim["family"], "word": o.word,
                        "cells": [{"label": c.label, "n": len(c.values), "n_planned": c.n_planned,
                                   "mean": _round(c.mean), "low": _round(c.low),
                                   "high": _round(c.high), "level": _round(c.level),
                                   "word": c.word} for c in o.cells],
                        "deferred": [{"label": c["label"], "n": c["n"]} for c in o.deferred]}
                       for o in outcomes]}


def _round(x: float):
    return float(f"{x:.6g}") if isinstance(x, float) and math.isfinite(x) else None


def section(plan: Plan, runs: list, values: dict, title: str) -> tuple[str, dict]:
    """The confirmatory section and its data (``values``: :func:`collect_values`);
    "confirmatory" only when every record carries the plan's digest and a reserved seed and
    no planned run is missing."""
    problems = confirmatory_problems(plan, [{"run_id": r.spec.get("run_id"), "tags": r.tags}
                                            for r in runs])
    outcomes = decide(plan, values)
    data = words(outcomes, plan, not problems)
    kind = "Confirmatory" if not problems else "Exploratory (not confirmatory)"
    s = f"## {title}: {kind}, plan v{plan.version} (`{plan.digest}`)\n\n"
    if problems:
        s += ("**Not confirmatory**: " + "; ".join(problems[:5])
              + (f"; … {len(problems) - 5} more" if len(problems) > 5 else "") + ".\n\n")
    s += (f"The plan (`{data['plan']}`, committed before its runs) fixes "
          f"every cell, its predicted direction, test, margin δ and n; seeds "
          f"{plan.first_seed}+ from the reserved range, disjoint from every earlier run. "
          f"Primary test per cell (superiority on the predicted side, or TOST where the "
          f"prediction is 0), Holm over a claim's run cells at α = {plan.data['alpha']}; each "
          f"cell's word from its (1 − 2a) t interval, a = its Holm level. Within a claim the "
          f"chance of a false *holds* is ≤ α; over the {len(outcomes)} claims ≤ "
          f"{len(outcomes) * plan.data['alpha']:.2g} (union bound).\n\n")
    rows = []
    for o in outcomes:
        c0 = o.claim
        head = [f"{c0['key']}. {c0['statement']} ({c0['family']})",
                (f"> {c0['null']:g}; " if "null" in c0 else "") + f"δ = {c0['margin']:.3g}"]
        for i, c in enumerate(o.cells):
            detail = c.word
            if c.word == INCONCLUSIVE and math.isfinite(c.mde):
                detail += (f": detectable {_f(c.mde)} at n = {len(c.values)}; n ≈ "
                           f"{c.n_for_margin or '> 10⁵'} for δ")
            rows.append((head if i == 0 else ["", ""]) + [
                c.label, c.predicted, c.test, f"{len(c.values)} ({c.n_planned})",
                f"{_f(c.mean)} [{_f(c.low)}, {_f(c.high)}]", _f(c.level), _f(c.p), detail,
                f"**{o.word}**" if i == 0 else ""])
        if not o.cells:
            rows.append(head + ["–", "", "", "", "", "", "", "not run at this stage",
                                f"**{o.word}**"])
    s += _table(["claim (family)", "H1; δ", "cell", "pred.", "test", "n (planned)",
                 "mean [(1−2a) CI]", "level a", "p (primary)", "cell word", "claim word"], rows)
    deferred = [f"{o.claim['key']}: " + ", ".join(f"{c['label']} (n = {c['n']})" for c in o.deferred)
                for o in outcomes if o.deferred]
    if deferred:
        s += ("\n\n**Deferred cells** (planned, not run at this stage; the plan states why and "
              "their n): " + "; ".join(deferred) + ".\n")
    return s, data
