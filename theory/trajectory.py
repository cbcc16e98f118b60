"""The drift trajectory past step one, to second order in the learning rate (THEORY.md).

Setting. Heavy-ball SGD from θ₀ with constant lr η and momentum β (β = 0: plain SGD; optax's
``sgd(momentum=β)``, the engine's ``momentum`` optimizer, has β = ``models.optim.MOMENTUM``):

    m_r = g_r + β m_{r−1},  θ_{r+1} = θ_r − η m_r,  g_r = g(θ_r; x_r),

with batches x_r independent of θ₀. Unrolled, θ_t − θ₀ = −η Σ_{r<t} w_r(t) g_r with

    w_r(t) = Σ_{s=r}^{t−1} β^{s−r} = (1 − β^{t−r}) / (1 − β).

Expanding g_r = g(θ₀; x_r) + H(θ₀; x_r)(θ_r − θ₀) + O(‖θ_r − θ₀‖²) and θ_r − θ₀ = −η Σ_{q<r}
w_q(r) g(θ₀; x_q) + O(η²):

    δ_t := θ_t − θ₀ = −η Σ_r w_r(t) g_r⁰ + η² Σ_r w_r(t) Σ_{q<r} w_q(r) H_r⁰ g_q⁰ + O(η³t³).

For a smooth scalar Q(θ; x) read at step t on a batch x independent of the x_r (a weight
matrix's mean: Q linear, no x; a tap's E[g | p > 0]: Q = grad_pos_mean on the step's own batch),

    E Q(θ_t) = c₀ − η W₁(t) c₁ + η² [W₂(t) c₂ + ½ (W₁(t)² − S₂(t)) d₂ + ½ S₂(t) e₂] + O(η³t³),

    c₀ = E Q,  c₁ = E[∇Q·g],  c₂ = E[∇Q·H′g],  d₂ = E[gᵀ∇²Q g′],  e₂ = E[gᵀ∇²Q g],

(g, g′ gradients on independent batches, H′ the Hessian on the batch of g′) and the weights

    W₁(t) = Σ_{r<t} w_r(t),  W₂(t) = Σ_{r<t} w_r(t) Σ_{q<r} w_q(r),  S₂(t) = Σ_{r<t} w_r(t)².

For SGD W₁ = t, W₂ = t(t−1)/2, S₂ = t, so the mean of a downstream matrix follows
μ(t) − μ₀ = −η t a + η² t(t−1)/2 b (a = c₁, b = c₂ of Q = mean W; d₂ = e₂ = 0) and its increment
turns at t ≈ a/(η b), the drift returning to zero at t ≈ 2a/(η b) + 1 when a·b > 0.
:func:`symbolic_weights` derives the closed forms for any β with SymPy; :func:`weights` gives
them numerically (float64, exact sums).

The neglected remainder is O(η³ W₃(t) ‖H̄‖² ‖ḡ‖). The second-order term over the first is
η (W₂(t)/W₁(t)) (b/a) exactly, and the remainder over the second grows the same way, so the
expansion's clock is T(t) = 2W₂(t)/W₁(t) (:func:`effective_time`) and a claim made with it
holds for η T(t) U ≤ κ, κ = ``HORIZON_FRACTION`` (:func:`horizon_beta`: the second order is
at most κ/2 of the first). For SGD T = t − 1, the former t ≤ κ/(η|b/a|) to within a step.
For heavy ball, W₁(t) = [t − β(1 − β^t)/(1 − β)]/(1 − β) ≈ t/(1 − β) and W₂ ≈ t²/(2(1 − β)²)
after the transient, so T ≈ t/(1 − β): the effective step is η/(1 − β), and at β = 0.9 the
horizon is about 3× shorter in steps than η t would say (16 instead of 46 on MLP digits at
η = 0.002, from point estimates). U is an upper confidence bound on |b/a|
(:func:`ratio_upper_bound`), not its point estimate: a b that is zero within noise cannot
set a long horizon, and an a that is zero within noise sets none (U = ∞, horizon 0).

Finite training sets. The engine draws batches as epoch permutations of n examples, so two
batches of different epochs share on average (B² − Σ_e c_q(e) c_r(e))/n examples
(c_q(e): positions of batch q in epoch e) and batches of one epoch none. For a pair term
E[A(x_r) B(x_q)], with A, B batch means of per-example terms, this adds
(shared/B)·(E[A(x) B(x)] − E[A(x) B(x′)]) (same batch minus independent batches);
:func:`overlap_weights` gives the weighted sums V₁ (pairs (r, t)) and V₂ (pairs (q, r)) of
shared/B, and V₃ = Σ_{q≠r<t} w_q(t) w_r(t) O[q, r] for the d₂ term: ½ δᵀ∇²Q δ sums
w_q w_r E[g_qᵀ∇²Q g_r] over q ≠ r, whose same-batch version is e₂, so the cross-epoch
correction is ½ η² V₃ (e₂ − d₂). Overlaps of the read batch x_t with the pair (q, r) of the
η² terms are neglected.

AdamW. Its update −η m̂_t/(√v̂_t + ε) is not linear in the gradients: the first step is
−η·g/(|g| + ε) elementwise, a sign, so the first order of E[Δθ] is −η E[sign g] (not −η ā),
and the moments (v̂ divides every later step) couple all orders of g. The expansion above
does not apply; montecarlo/trajectory_replay.py predicts AdamW (and Muon) by replaying the
optimizer itself on gradient draws at θ₀ (frozen), then on gradients linearized at θ₀ (its
next order), and theory/trajectory_adam.py gives the one-coordinate law of the first step.
"""

from __future__ import annotations

import functools
import math

import numpy as np

HORIZON_FRACTION = 0.5  # κ: rows with η t |b/a| ≤ κ are inside the stated horizon
LINEAR_OPTIMIZERS = ("sgd", "momentum")  # the optimizers whose trajectory is expanded here


def optimizer_beta(optimizer: str) -> float:
    """β of the heavy-ball recursion for the engine's optimizer name (models/engine/optim.py)."""
    from driftlab.names import MOMENTUM

    if optimizer == "sgd":
        return 0.0
    if optimizer == "momentum":
        return float(MOMENTUM)
    raise ValueError(f"optimizer={optimizer!r}: the expansion covers {', '.join(LINEAR_OPTIMIZERS)} "
                     f"only (AdamW's update is not linear in the gradients; see the module docstring)")


def step_weights(t: int, beta: float) -> np.ndarray:
    """w_r(t) for r = 0 … t−1: the total weight of g_r in θ_t − θ₀ = −η Σ_r w_r(t) g_r."""
    k = t - np.arange(t, dtype=np.float64)  # t − r
    return np.ones_like(k) if beta == 0 else (1.0 - beta ** k) / (1.0 - beta)


def weights(steps: int, beta: float) -> dict[str, np.ndarray]:
    """W₁, W₂, S₂ at t = 0 … steps (float64 arrays of length steps + 1), by the exact sums."""
    W1 = np.zeros(steps + 1)
    W2 = np.zeros(steps + 1)
    S2 = np.zeros(steps + 1)
    for t in range(1, steps + 1):
        w = step_weights(t, beta)
        W1[t], S2[t] = w.sum(), (w * w).sum()
        W2[t] = float(np.dot(w, W1[:t]))  # Σ_r w_r(t) W₁(r)
    return {"W1": W1, "W2": W2, "S2": S2}


def batch_positions(step: int, batch_size: int, n: int) -> dict[int, int]:
    """{epoch: number of positions of batch ``step``} (positions step·B … step·B + B − 1,
    epoch = position // n, as models/data/images.py's ``position_indices``)."""
    start = step * batch_size
    out: dict[int, int] = {}
    e0, e1 = start // n, (start + batch_size - 1) // n
    for e in range(e0, e1 + 1):
        lo, hi = max(start, e * n), min(start + batch_size, (e + 1) * n)
        out[e] = hi - lo
    return out


def shared_fraction(steps: int, batch_size: int, n: int | None) -> np.ndarray:
    """O[q, r] = E[#examples shared by batches q and r] / B for q ≠ r (0 on the diagonal):
    (B² − Σ_e c_q(e) c_r(e)) / (n B). ``n`` None (random windows, text): all 0."""
    O = np.zeros((steps, steps))
    if n is None:
        return O
    counts = [batch_positions(s, batch_size, n) for s in range(steps)]
    for q in range(steps):
        for r in range(q + 1, steps):
            same = sum(c * counts[r].get(e, 0) for e, c in counts[q].items())
            O[q, r] = O[r, q] = (batch_size * batch_size - same) / (n * batch_size)
    return O


def overlap_weights(steps: int, beta: float, batch_size: int, n: int | None) -> dict[str, np.ndarray]:
    """V₁(t) = Σ_{r<t} w_r(t) O[r, t], V₂(t) = Σ_{r<t} w_r(t) Σ_{q<r} w_q(r) O[q, r] and
    V₃(t) = Σ_{q≠r<t} w_q(t) w_r(t) O[q, r], t = 0 … steps: the finite-data corrections'
    weights (module docstring)."""
    O = shared_fraction(steps + 1, batch_size, n)
    V1 = np.zeros(steps + 1)
    V2 = np.zeros(steps + 1)
    inner = np.zeros(steps + 1)  # Σ_{q<r} w_q(r) O[q, r]
    for r in range(1, steps + 1):
        inner[r] = float(np.dot(step_weights(r, beta), O[:r, r]))
    V3 = np.zeros(steps + 1)
    for t in range(1, steps + 1):
        w = step_weights(t, beta)
        V1[t] = float(np.dot(w, O[:t, t]))
        V2[t] = float(np.dot(w, inner[:t]))
        V3[t] = float(w @ O[:t, :t] @ w)  # O's diagonal is 0: pairs q ≠ r only
    return {"V1": V1, "V2": V2, "V3": V3}


@functools.lru_cache(maxsize=1)  # SymPy's sums take seconds; the forms do not change
def symbolic_weights():
    """SymPy closed forms (W₁, W₂, S₂) as functions of the symbols (t, β), β ≠ 1.

    Derived from w_r(t) = (1 − β^{t−r})/(1 − β) by summing geometric series; the β → 0 limits
    are t, t(t−1)/2, t (tests/…/test_trajectory.py checks both against :func:`weights`).
    """
    import sympy as sp

    t, r, q, beta = sp.symbols("t r q beta", positive=True)
    k = sp.symbols("k", integer=True, nonnegative=True)
    w = lambda r_, t_: (1 - beta ** (t_ - r_)) / (1 - beta)
    W1 = sp.simplify(sp.summation((1 - beta ** k) / (1 - beta), (k, 1, t)))
    S2 = sp.simplify(sp.summation(((1 - beta ** k) / (1 - beta)) ** 2, (k, 1, t)))
    W1_of = sp.Lambda(r, W1.subs(t, r))
    n = sp.symbols("n", integer=True, nonnegative=True)
    # W₂(t) = Σ_{r=0}^{t−1} w_r(t) W₁(r); with n = t − r the summand is w(n) W₁(t − n)
    W2 = sp.simplify(sp.summation(sp.expand(w(0, n) * W1_of(t - n)), (n, 1, t)))
    return {"t": t, "beta": beta, "W1": W1, "W2": W2, "S2": S2}


def polynomial(coef: dict, lr: float, wts: dict, over: dict | None = None,
               second_scale: float = 1.0) -> dict[str, np.ndarray]:
    """First- and second-order predictions of E Q(θ_t), t = 0 … len(W1) − 1.

    ``coef``: c0, c1, c2, d2, e2 (floats or arrays over clusters, broadcast against t) and,
    for the finite-data corrections, c1_same, c2_same (same-batch versions); ``over``: V1,
    V2, V3 from :func:`overlap_weights` (None: independent batches; V₃ multiplies e₂ − d₂). ``second_scale`` multiplies
    every η² term (a planted error: −1 flips b's sign, 1.1 inflates it by 10%).
    """
    W1, W2, S2 = (np.asarray(wts[k])[:, None] for k in ("W1", "W2", "S2"))
    get = lambda k: np.asarray(coef.get(k, 0.0), dtype=np.float64)[None, ...]
    c0, c1, c2, d2, e2 = (get(k) for k in ("c0", "c1", "c2", "d2", "e2"))
    lin = W1 * c1
    quad = W2 * c2 + 0.5 * (W1 * W1 - S2) * d2 + 0.5 * S2 * e2
    if over is not None:
        V1, V2 = (np.asarray(over[k])[:, None] for k in ("V1", "V2"))
        if "c1_same" in coef:
            lin = lin + V1 * (get("c1_same") - c1)
        if "c2_same" in coef:
            quad = quad + V2 * (get("c2_same") - c2)
        if "V3" in over and "e2" in coef and "d2" in coef:  # d₂'s cross-epoch pairs
            quad = quad + 0.5 * np.asarray(over["V3"])[:, None] * (e2 - d2)
    first = c0 - lr * lin
    second = first + second_scale * lr * lr * quad
    return {"first_order": first, "second_order": second}


def horizon_steps(c1: float, c2: float, d2: float, lr: float,
                  fraction: float = HORIZON_FRACTION) -> float:
    """κ / (η |b/a|) with a = c₁ and b = c₂ + d₂ (the t² coefficient ×2 over the t one), from
    point estimates and for SGD (β = 0) only; the checks use :func:`horizon_beta` with
    :func:`ratio_upper_bound`. inf when b = 0."""
    b = abs(c2 + d2)
    if b == 0:
        return float("inf")
    return fraction * abs(c1) / (lr * b) if c1 != 0 else 0.0


def effective_time(steps: int, beta: float) -> np.ndarray:
    """T(t) = 2 W₂(t) / W₁(t), t = 0 … steps (0 at t = 0): the second-order term over the first
    is η T(t) (b/a) / 2 exactly, so T is the expansion's clock. SGD: T = t − 1. Heavy ball:
    W₁ ≈ t/(1 − β) and W₂ ≈ t²/(2(1 − β)²) after the transient, so T ≈ t/(1 − β) − O(β/(1 − β)²):
    the effective step is η/(1 − β)."""
    w = weights(steps, beta)
    out = np.zeros(steps + 1)
    out[1:] = 2.0 * w["W2"][1:] / w["W1"][1:]
    return out


def ratio_upper_bound(a: float, a_se: float, b: float, b_se: float, q: float) -> float:
    """U = (|b| + q·se_b) / (|a| − q·se_a): an upper confidence bound on |b/a| from the two
    one-sided bounds |b| ≤ |b̂| + q·se_b and |a| ≥ |â| − q·se_a (each at the level q sets; the
    pair holds jointly at ≥ 1 − 2·(that level), Bonferroni). ∞ when |â| ≤ q·se_a (a is zero
    within noise: no ratio, no horizon)."""
    lo = abs(a) - q * a_se
    if not lo > 0:
        return math.inf
    return (abs(b) + q * b_se) / lo


def horizon_beta(ratio: float, lr: float, beta: float, fraction: float = HORIZON_FRACTION,
                 limit: int = 100_000) -> float:
    """The last step t with η T(t) · ``ratio`` ≤ κ, T of :func:`effective_time` (the second
    order at most κ/2 of the first, with |b/a| ≤ ``ratio``). SGD: 1 + κ/(η·ratio), the
    former κ/(η|b/a|) to within one step. ∞ when ratio = 0; 0 when ratio = ∞ (a is zero
    within noise: no claim at any t ≥ 1)."""
    if ratio == 0:
        return math.inf
    if not math.isfinite(ratio):
        return 0.0
    target = fraction / (lr * ratio)
    if beta == 0:
        return float(1.0 + target)
    n = 64
    while True:
        T = effective_time(n, beta)
        inside = np.nonzero(T <= target)[0]
        if inside[-1] < n or n >= limit:
            return float(inside[-1])
        n *= 4


def sign_change(curve: np.ndarray, start: int) -> int | None:
    """The first step t > ``start`` at which ``curve[t]`` has the sign opposite to
    ``curve[start]`` (None: none within the curve, or curve[start] == 0)."""
    s0 = np.sign(curve[start])
    if s0 == 0:
        return None
    flipped = np.nonzero(np.sign(curve[start + 1:]) == -s0)[0]
    return int(flipped[0] + start + 1) if flipped.size else None


__all__ = ["HORIZON_FRACTION", "LINEAR_OPTIMIZERS", "optimizer_beta", "step_weights", "weights",
           "batch_positions", "shared_fraction", "overlap_weights", "symbolic_weights",
           "polynomial", "horizon_steps", "effective_time", "ratio_upper_bound", "horizon_beta",
           "sign_change"]
