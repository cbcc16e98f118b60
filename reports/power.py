"""Equivalence, non-inferiority and power for the one-sample t test over seeds.

All for n independent units (seeds; a paired cell is the per-seed difference) with
sample mean m, sample SD s and SE = s/√n, df = n − 1, t quantiles t_{1−α, df}:

* :func:`tost` — two one-sided tests of H0: |μ| ≥ δ against H1: |μ| < δ ("absent"):
  p_low = P(T ≥ (m + δ)/SE), p_high = P(T ≤ (m − δ)/SE), p = max(p_low, p_high).
* :func:`non_inferiority` — H0: μ ≤ −δ against H1: μ > −δ ("≥ 0 up to δ"), the t test
  of m against −δ.
* :func:`power_one_sided` — P(reject) of the one-sided level-α t test when the true
  standardized effect is d = Δ/σ: 1 − F_nct(t_{1−α, n−1}; n − 1, d√n), the noncentral t
  (scipy.stats.nct), exact for normal data.
* :func:`power_tost` — TOST power at true μ = Δ (default 0): P(T_low > t) + P(T_high <
  −t) − 1 with T_low ~ nct(df, (Δ + δ)√n/σ), T_high ~ nct(df, (Δ − δ)√n/σ): a lower bound
  (Bonferroni on the two rejections), tight when the power is high.
* :func:`mde` — the smallest effect Δ (in the value's units, σ given) that the one-sided
  test detects with the stated power at n; :func:`n_for_power` — the smallest n ≥ 2 with
  that power at Δ (None above :data:`N_MAX`).

Assumptions: normal, independent units with a common σ; σ is the pilot's (or the run's)
sample SD, so the numbers are estimates and are stated as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

POWER = 0.8
N_MAX = 100_000


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


@dataclass(frozen=True)
class Equivalence:
    """A TOST or non-inferiority result: the margin δ, the p-value, and the pieces."""

    n: int
    mean: float
    se: float
    margin: float
    p: float  # TOST: max of the two one-sided p; non-inferiority: its one p
    p_low: float  # H0 μ ≤ −δ
    p_high: float  # H0 μ ≥ δ (1.0 for non-inferiority)
    method: str


def _stats(values):
    x = _finite(values)
    n = int(x.size)
    if n < 2:
        return n, (float(x.mean()) if n else float("nan")), float("nan")
    return n, float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))


def check_margin(margin: float) -> None:
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin={margin!r} invalid; allowed: a positive finite number")


def p_above(n: int, mean: float, se: float, value: float) -> float:
    """One-sided p of H1: μ > value (t test); 1 when nothing can be concluded."""
    if n < 2 or not math.isfinite(se):
        return 1.0
    if se == 0:
        return 0.0 if mean > value else 1.0
    return float(stats.t.sf((mean - value) / se, n - 1))


def p_below(n: int, mean: float, se: float, value: float) -> float:
    """One-sided p of H1: μ < value (t test); 1 when nothing can be concluded."""
    if n < 2 or not math.isfinite(se):
        return 1.0
    if se == 0:
        return 0.0 if mean < value else 1.0
    return float(stats.t.cdf((mean - value) / se, n - 1))


def tost(values, margin: float) -> Equivalence:
    """TOST of |μ| < ``margin`` over independent values (non-finite dropped)."""
    check_margin(margin)
    n, m, se = _stats(values)
    lo, hi = p_above(n, m, se, -margin), p_below(n, m, se, margin)
    return Equivalence(n, m, se, float(margin), max(lo, hi), lo, hi, f"TOST ±{margin:g}")


def non_inferiority(values, margin: float) -> Equivalence:
    """H1: μ > −``margin`` (the claim "≥ 0", non-inferior up to δ)."""
    check_margin(margin)
    n, m, se = _stats(values)
    lo = p_above(n, m, se, -margin)
    return Equivalence(n, m, se, float(margin), lo, lo, 1.0, f"non-inferiority (μ > −{margin:g})")


def power_one_sided(n: int, effect: float, sd: float, alpha: float) -> float:
    """Power of the one-sided level-``alpha`` one-sample t test at true effect ``effect``
    (in the direction tested, units of the values) and SD ``sd``; noncentral t."""
    if n < 2 or not sd > 0:
        return float("nan")
    df = n - 1
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, effect / sd * math.sqrt(n)))


def power_tost(n: int, margin: float, sd: float, alpha: float, true: float = 0.0) -> float:
    """Lower bound on the TOST power at true mean ``true`` (see the module doc)."""
    if n < 2 or not sd > 0:
        return float("nan")
    df = n - 1
    t = stats.t.ppf(1 - alpha, df)
    s = math.sqrt(n) / sd
    p = stats.nct.sf(t, df, (true + margin) * s) + stats.nct.cdf(-t, df, (true - margin) * s) - 1
    return float(max(0.0, p))


def mde(n: int, sd: float, alpha: float, power: float = POWER) -> float:
    """Smallest effect (units of the values) the one-sided level-``alpha`` t test detects
    with probability ``power`` at ``n`` units of SD ``sd``; NaN when n < 2 or sd ≤ 0."""
    if n < 2 or not (sd > 0 and math.isfinite(sd)):
        return float("nan")
    f = lambda d: power_one_sided(n, d * sd, sd, alpha) - power  # noqa: E731
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-10) * sd)


def n_for_power(effect: float, sd: float, alpha: float, power: float = POWER,
                test: str = "one-sided") -> int | None:
    """Smallest n ≥ 2 reaching ``power`` for the one-sided test at ``effect`` (``test``
    "one-sided") or the TOST with margin ``effect`` at true mean 0 (``test`` "tost");
    None above :data:`N_MAX` or when the effect or SD is not positive."""
    if test not in ("one-sided", "tost"):
        raise ValueError(f"test={test!r} invalid; allowed: one-sided, tost")
    if not (effect > 0 and sd > 0 and math.isfinite(effect) and math.isfinite(sd)):
        return None
    fn = power_one_sided if test == "one-sided" else (
        lambda n, e, s, a: power_tost(n, e, s, a))
    n = 2
    while n <= N_MAX:  # doubling, then bisection: power is increasing in n
        if fn(n, effect, sd, alpha) >= power:
            break
        n *= 2
    if n > N_MAX:
        return None if fn(N_MAX, effect, sd, alpha) < power else N_MAX
    lo = max(2, n // 2)
    while lo < n:
        mid = (lo + n) // 2
        if fn(mid, effect, sd, alpha) >= power:
            n = mid
        else:
            lo = mid + 1
    return n
