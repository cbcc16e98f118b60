"""The trajectory check's statistics: paired differences, a max-|t| test, an equivalence bound.

Per seed s (the unit: init, data, training stream and coefficient draws all belong to it),
quantity Q and step t, the check's difference is

    D_s(t) = P_s(t) − F⁰_s(t) + F_s(t) − M_s(t),

with M the measured value, P the prediction (theory/trajectory.py's polynomial, or the
replay of models/measure/trajectory_replay.py for AdamW/Muon), F⁰ its first-order part (−η W₁ c₁
plus c₀ and the overlap term; the frozen replay on independent draws for AdamW/Muon) and F
the same first-order part evaluated on the seed's own training stream (the frozen replay on
the training batches). E F = E F⁰, so E D = E(P − M): F − F⁰ is a control variate with
coefficient 1, which removes the batch noise that the first order and the measured run
share (3–10× smaller SEs on the MLP). What D tests is the rest of P: b, d₂, e₂ and their
weights (or the replay's next order).

**Difference test** (is there any error?). T(t) = mean_s D_s(t) / SE, SE = sd/√S with S − 1
degrees of freedom, over the in-horizon rows of every quantity of the cell. The reference
is the sign-flip distribution of max_t |T(t)|: under H₀ (E D_s(t) = 0 for all t, each seed's
path D_s(·) symmetric about 0) flipping the sign of whole seed paths leaves the joint law of
the rows unchanged, so the rows' correlation (neighbouring steps share most of their
batches) is kept, unlike Bonferroni, which treats 100 nearly equal rows as 100 chances.
p = #{flips with max|T| ≥ observed} / #flips, every one of the 2^S flips when 2^S ≤
:data:`FLIPS`, else :data:`FLIPS` random ones plus the identity (fixed seed). At level
α = SUITE_FALSE_ALARM the test cannot reject with fewer than log₂(2/α) ≈ 11 seeds (the
smallest attainable p is 2/2^S): below that the verdict is at best "inconclusive", never a
false "DISAGREES". The Bonferroni t critical value (Student t, S − 1 df) is reported too.

**Equivalence** (is the error small?). The margin is ε = :data:`EQUIVALENCE_MARGIN` = 10% of
the quantity's measured drift, fixed here before any run: ε·|E ΔM(t*)|, ΔM the measured
change (a mean's change from θ₀; a tap's M(t) − Q(θ₀; x_t), on the same read batch) and t* the in-horizon step of largest |mean ΔM| (the drift the claim is
about; a per-row margin at t = 1 would demand the impossible). Row t is equivalent when
both one-sided t tests (TOST, α_eq = :data:`EQUIVALENCE_ALPHA`, S − 1 df) reject, on the
paired seeds' linear combinations D_s(t) ∓ ε σ ΔM_s(t*) (σ = sign of the drift). The
quantity is equivalent when every in-horizon row is: an intersection–union test, level
α_eq with no multiplicity correction. Seeds needed: S such that t_{1−α_eq} + t_{0.9} SEs of
D fit in ε|ΔM(t*)| at every row (80% power when the true error is 0; normal-theory
approximation, with the observed SD).

**Verdict.** "agrees" when every quantity is equivalent; "DISAGREES" when the difference
test rejects and some quantity is not equivalent; "agrees within ±10% (difference detected)"
when both; "inconclusive" otherwise (with the seeds needed).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from driftlab.montecarlo.stats import SUITE_FALSE_ALARM

EQUIVALENCE_MARGIN = 0.10  # ε: fixed before the runs (issue 30); relative to the measured drift
EQUIVALENCE_ALPHA = 0.05  # TOST level of each one-sided test
FLIPS = 1 << 15  # sign flips for the max-|t| reference when 2^S is larger
FLIP_SEED = 0


def t_stats(D: np.ndarray) -> np.ndarray:
    """mean/(sd/√S) over axis 0 of ``D`` (S, R); 0 where sd = 0 and mean = 0."""
    S = D.shape[0]
    m = D.mean(0)
    sd = D.std(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = m / (sd / math.sqrt(S))
    return np.where(sd > 0, t, np.where(m == 0, 0.0, np.inf * np.sign(m)))


def sign_flip_max_t(D: np.ndarray, alpha: float = SUITE_FALSE_ALARM, flips: int = FLIPS,
                    seed: int = FLIP_SEED) -> dict:
    """Max-|t| over the columns of ``D`` (S seeds × R rows) against its sign-flip reference
    (module docstring): {"max_abs_t", "p", "critical" (the smallest max|t| with p ≤ α, ∞ when
    none is attainable), "flips", "exact", "rejects", "bonferroni_t"}."""
    D = np.asarray(D, np.float64)
    keep = D.std(0, ddof=1) > 0
    D = D[:, keep]
    S, R = D.shape
    bonf = float(sps.t.ppf(1 - alpha / (2 * max(R, 1)), S - 1))
    if R == 0:
        return {"max_abs_t": 0.0, "p": 1.0, "critical": math.inf, "flips": 0, "exact": True,
                "rejects": False, "bonferroni_t": bonf, "rows": 0}
    obs = float(np.abs(t_stats(D)).max())
    exact = S <= int(math.log2(flips))
    if exact:
        codes = np.arange(1 << S)
        E = 1.0 - 2.0 * ((codes[:, None] >> np.arange(S)[None, :]) & 1)
    else:
        rng = np.random.default_rng(seed)
        E = rng.choice([-1.0, 1.0], size=(flips, S))
        E[0] = 1.0
    ss = (D * D).sum(0)  # Σ D² is flip-invariant: only the mean changes
    out = []
    for i in range(0, E.shape[0], 4096):
        m = E[i:i + 4096] @ D / S
        var = np.maximum((ss - S * m * m) / (S - 1), 1e-300)
        out.append(np.abs(m / np.sqrt(var / S)).max(1))
    ref = np.concatenate(out)
    p = float(np.mean(ref >= obs * (1 - 1e-12)))
    srt = np.sort(ref)
    k = int(math.ceil((1 - alpha) * len(srt)))  # p ≤ α needs obs > the k-th order statistic
    critical = float(srt[k]) if k < len(srt) else math.inf
    return {"max_abs_t": obs, "p": p, "critical": critical, "flips": int(len(ref)),
            "exact": bool(exact), "rejects": bool(p <= alpha), "bonferroni_t": bonf, "rows": R}


def equivalence(D: np.ndarray, drift_ref: np.ndarray, margin: float = EQUIVALENCE_MARGIN,
                alpha: float = EQUIVALENCE_ALPHA) -> dict:
    """TOST at every column of ``D`` (S × R) with the bound ε·|E drift_ref| (``drift_ref``:
    the per-seed measured drift at t*, length S), intersection–union over the columns
    (module docstring): {"equivalent", "bound", "max_rel_error", "max_rel_upper",
    "seeds_needed"}; max_rel_upper is the largest one-sided (1 − α) bound on |E D|/|E drift|."""
    D = np.asarray(D, np.float64)
    ref = np.asarray(drift_ref, np.float64)
    S, R = D.shape
    scale = float(ref.mean())
    sigma = 1.0 if scale >= 0 else -1.0
    if R == 0 or scale == 0:
        return {"equivalent": False, "bound": 0.0, "max_rel_error": None, "max_rel_upper": None,
                "seeds_needed": None, "rows": R}
    tq = float(sps.t.ppf(1 - alpha, S - 1))
    lo = D - margin * sigma * ref[:, None]  # H₀⁺: E D ≥ ε|E ref| rejected when mean + tq·se < 0
    hi = D + margin * sigma * ref[:, None]  # H₀⁻: E D ≤ −ε|E ref| rejected when mean − tq·se > 0
    se = lambda x: x.std(0, ddof=1) / math.sqrt(S)
    ok = (lo.mean(0) + tq * se(lo) < 0) & (hi.mean(0) - tq * se(hi) > 0)
    upper = (np.abs(D.mean(0)) + tq * se(D)) / abs(scale)
    z = float(sps.norm.ppf(1 - alpha) + sps.norm.ppf(0.9))
    sd = D.std(0, ddof=1)
    need = int(math.ceil(float(np.max((z * sd / (margin * abs(scale))) ** 2)))) if sd.any() else 2
    return {"equivalent": bool(ok.all()), "bound": margin * abs(scale),
            "max_rel_error": float(np.abs(D.mean(0)).max() / abs(scale)),
            "max_rel_upper": float(upper.max()), "seeds_needed": max(need, 2), "rows": R}


def verdict(diff: dict, equiv: dict[str, dict]) -> str:
    """"agrees", "agrees within ±10% (difference detected)", "DISAGREES" or "inconclusive"
    (module docstring)."""
    if not equiv:
        return "inconclusive"
    all_eq = all(e["equivalent"] for e in equiv.values())
    if all_eq:
        return "agrees within ±10% (difference detected)" if diff["rejects"] else "agrees"
    return "DISAGREES" if diff["rejects"] else "inconclusive"


def check_paths(quantities: list[str], paths: dict, measured: dict, frozen: dict,
                horizons: dict, scale_second: float = 1.0, base: dict | None = None) -> dict:
    """The cell's check: D (module docstring) on every in-horizon row t ≥ 1 of every quantity,
    {Q: (first F⁰, prediction P)} per-seed (S, T+1) ``paths``, ``measured`` M and ``frozen``
    F (S, T+1), ``horizons`` {Q: last step}, ``base`` {Q: Q(θ₀; x_t) on the training stream}
    (the drift of a tap is M − base: its change on the same read batch). ``scale_second`` plants an error: P − F⁰ is
    multiplied by it (1.15: b 15% too large). Returns {"seeds", "difference" (the max-|t|
    test), "equivalence" {Q: TOST result + "t_star", "horizon"}, "verdict", "margin",
    "alpha", "alpha_equivalence"}."""
    Ds, eq = [], {}
    S = None
    for q in quantities:
        F0, P = paths[q]
        M, F = measured[q], frozen[q]
        S = M.shape[0]
        ts = [t for t in range(1, M.shape[1])
              if t <= horizons[q] and not np.isnan(M[:, t]).any()]
        if not ts:
            continue
        D = (scale_second * (P - F0) + F - M)[:, ts]
        drift = M - (0.0 if base is None or q.startswith("mean:") else base[q])
        t_star = ts[int(np.argmax(np.abs(drift[:, ts].mean(0))))]
        eq[q] = {**equivalence(D, drift[:, t_star]), "t_star": int(t_star),
                 "horizon": float(horizons[q])}
        Ds.append(D)
    if not Ds:
        diff = sign_flip_max_t(np.zeros((S or 2, 0)))
    else:
        diff = sign_flip_max_t(np.concatenate(Ds, axis=1))
    return {"seeds": int(S or 0), "difference": diff, "equivalence": eq,
            "verdict": verdict(diff, eq), "margin": EQUIVALENCE_MARGIN,
            "alpha": SUITE_FALSE_ALARM, "alpha_equivalence": EQUIVALENCE_ALPHA}


__all__ = ["check_paths", "EQUIVALENCE_MARGIN", "EQUIVALENCE_ALPHA", "FLIPS", "t_stats", "sign_flip_max_t",
           "equivalence", "verdict"]
