"""Analytic expected gradients in the canonical setting (docs/theory.md).

One dispatcher picks the right formula per setting and refuses the rest:
montecarlo/dispatch.py (``driftlab.expected_grad``).

Setting: x ~ N(0, I_d); W1 ~ N(0, s1²), s1² = G²/d; W2 ~ N(0, s2²), s2² = G²/n;
p = W1 x ∈ R^n, h = σ(p), f = W2 h ∈ R^k; targets independent of the weights.
MSE: ℓ = ½‖f − y‖² summed over the k outputs ("sum"; "mean" divides ℓ by k).
Cross-entropy: ℓ = −log softmax(f)_c. g = ∂ℓ/∂p, one example (no batch reduction).

Given ‖x‖ = r, p_i ~ N(0, s1² r²), so E[g_i | p_i > 0] = k·s2²·E_r[H(s1 r)] (MSE),
with r ~ χ_d and H(τ) = E[σσ'(τZ) | Z > 0].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import integrate, special

from driftlab.activations import parse_activation
from driftlab.theory import gaussian
from driftlab.theory.setting import BlockSetting


@dataclass(frozen=True)
class Analytic:
    """A predicted value, how it was obtained, and its standard error (0 unless Monte Carlo)."""

    value: float
    tier: str  # "closed form" | "quadrature" | "semi-analytic (Stein-reduced MC)"
    stderr: float = 0.0

    def scaled(self, factor: float) -> "Analytic":
        return Analytic(self.value * factor, self.tier, self.stderr * abs(factor))


# H(τ) = c_a τ^a on τ > 0 for the power-law activations (symbolic.closed_form_H).
_POWER_LAW = {"relu": (math.sqrt(2 / math.pi), 1), "identity": (math.sqrt(2 / math.pi), 1),
              "relu2": (4 * math.sqrt(2 / math.pi), 3)}


def _clipped_relu2_H(tau: float, clip: float) -> float:
    """Closed form of H for min(ReLU², c): (4√2/√π)·τ³·[1 − (1 + c/(2τ²))·e^{−c/(2τ²)}]."""
    u = clip / (2 * tau * tau)
    return 4 * math.sqrt(2 / math.pi) * tau**3 * (1 - (1 + u) * math.exp(-u))


@lru_cache(maxsize=None)
def positive_preactivation_moment(act: str, d_in: int, s1: float) -> Analytic:
    """E[σσ'(p) | p > 0] for p = s1·r·Z, r ~ χ_d: closed form where one exists."""
    a = parse_activation(act)
    if a.name in _POWER_LAW:
        coef, power = _POWER_LAW[a.name]
        return Analytic(coef * s1**power * gaussian.chi_moment(power, d_in), "closed form")
    if a.name == "clipped_relu2":
        val = gaussian.chi_expectation(lambda r: _clipped_relu2_H(s1 * r, a.clip), d_in)
        return Analytic(val, "closed form in τ, quadrature over ‖x‖")
    return Analytic(gaussian.chi_expectation(lambda r: gaussian.H(act, s1 * r), d_in), "quadrature")


def expected_grad_positive_mse(setting: BlockSetting) -> Analytic:
    """E[∂ℓ/∂p_i | p_i > 0] = k·s2²·E[σσ'(p_i) | p_i > 0] under MSE (÷k for "mean").

    Assumes zero-mean i.i.d. Gaussian W1, W2 (fan-in variances G²/d, G²/n), x ~ N(0, I),
    y ~ N(0, I) independent of the weights. Refuses (ValueError naming the field) a
    cross-entropy setting and the assumption-breaking variants (w2_mean, target_coupling),
    which have their own functions below; montecarlo/dispatch.py picks among them.
    """
    if setting.loss != "mse":
        raise ValueError(f"loss={setting.loss!r}: this is the MSE formula; the cross-entropy "
                         f"value is theory.dispatch.expected_grad_positive (Stein-reduced MC)")
    for field in ("w2_mean", "target_coupling"):
        if getattr(setting, field):
            raise ValueError(f"{field}={getattr(setting, field)!r}: the theorem assumes 0; "
                             f"use theory.dispatch.expected_grad_positive for this variant")
    per_output = 1.0 if setting.reduction == "mean" else float(setting.d_out)
    moment = positive_preactivation_moment(setting.act, setting.d_in, setting.s1)
    return moment.scaled(per_output * setting.s2**2)


def expected_grad_positive_mse_nonzero_mean(setting: BlockSetting) -> Analytic:
    """ReLU, MSE, W2 = μ + N(0, s2²) (assumption broken): E[g_i | p_i > 0] =
    k·[(s2² + μ²)·E[p | p>0] + μ²·(n − 1)·E[ReLU(p_j)]], E[ReLU(p_j)] = s1·E r/√(2π)
    (stein.expected_dl_dh_nonzero_mean gives the conditional form)."""
    if parse_activation(setting.act).name != "relu":
        raise ValueError("the non-zero-mean closed form is derived for ReLU only")
    er = gaussian.chi_moment(1, setting.d_in)
    pos = setting.s1 * er * math.sqrt(2 / math.pi)
    other = setting.s1 * er / math.sqrt(2 * math.pi)
    mu2 = setting.w2_mean**2
    return Analytic(setting.d_out * ((setting.s2**2 + mu2) * pos + mu2 * (setting.width - 1) * other),
                    "closed form")


def expected_grad_positive_mse_coupled_target(setting: BlockSetting) -> Analytic:
    """MSE with y = β·f + ξ (target correlated with W2): f − y = (1 − β)f − ξ, so the
    Stein argument gives (1 − β) times the independent-target value; β > 1 flips the sign."""
    base = expected_grad_positive_mse(replace(setting, target_coupling=0.0))
    return base.scaled(1.0 - setting.target_coupling)


SOFTMAX_T_MAX = 12.0  # verified against 2·10⁶-sample Monte Carlo up to here (theory/tests)


@lru_cache(maxsize=4)
def _hermite_rule(nodes: int):
    """Probabilists' Gauss–Hermite nodes and weights normalised to a N(0, 1) expectation."""
    x, w = special.roots_hermitenorm(nodes)
    return x, w / w.sum()


def _softmax_sq_mean(t: float, k: int) -> float:
    # Larger t spreads e^u over more decades: more nodes, and a grid in v = log s that
    # starts where s²·A(s) ~ e^{2v + 2t²} is negligible.
    nodes, grid = (300, 2001) if t <= 6.0 else (1000, 2001)
    x, w = _hermite_rule(nodes)
    v = np.linspace(-t * t - 40.0, 30.0, grid)
    s = np.exp(v)[:, None]
    eu = np.exp(np.minimum(t * x, 700.0))[None, :]
    with np.errstate(over="ignore"):  # s·e^u = inf only where e^{−s e^u} = 0 anyway
        a_s = (w * np.exp(np.minimum(2 * t * x - s * eu, 700.0))).sum(1)
        b_s = (w * np.exp(-s * eu)).sum(1)
    return integrate.simpson(s[:, 0] ** 2 * a_s * b_s ** (k - 1), x=v)


def softmax_trace_factor(t, k: int):
    """S(t) = E[1 − ‖softmax(u)‖²], u ~ N(0, t² I_k): the cross-entropy Hessian trace.

    Quadrature through 1/a² = ∫₀^∞ s·e^{−sa} ds, which factorises over the k logits:
    E[softmax_1²] = ∫₀^∞ s·A(s)·B(s)^{k−1} ds, A(s) = E[e^{2u − s e^u}], B(s) = E[e^{−s e^u}];
    A, B by Gauss–Hermite, the s-integral by Simpson's rule in v = log s.
    Vectorised over t (0 ≤ t ≤ SOFTMAX_T_MAX).
    """
    t_arr = np.atleast_1d(np.asarray(t, dtype=float))
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if np.any(t_arr < 0) or np.any(t_arr > SOFTMAX_T_MAX):
        raise ValueError(f"t must lie in [0, {SOFTMAX_T_MAX}] for the quadrature, "
                         f"got {t_arr.min()}..{t_arr.max()}")
    out = np.array([1.0 - k * _softmax_sq_mean(tt, k) for tt in t_arr])
    return out if np.ndim(t) else float(out[0])


def drift_large_width(setting: BlockSetting) -> Analytic:
    """Mean E[∂ℓ/∂W2_ij] of the 3-layer block (MSE, sum) in the n → ∞ limit.

    Block: x → W1 → p¹ → σ → h¹ → W2 (n×n) → p² → σ → h² → W3 (k×n) → f.
    Exact: E[∂ℓ/∂W2_ij] = k·s3²·E[h¹_j·m(s2‖h¹‖)]. As n → ∞ given ‖x‖ = r, h̄¹ → μ(r) and
    ‖h¹‖² → n·q(r), with μ, q the mean and second moment of σ(s1 r Z); the limit
    k·s3²·E_r[μ(r)·m(s2·√(n q(r)))] has O(1/n) relative error (quadrature over r).
    """
    act, s1, s2 = setting.act, setting.s1, setting.s2

    def given_r(r):
        mu, q = gaussian.mean_and_second_moment(act, s1 * r)
        return mu * gaussian.m(act, s2 * math.sqrt(setting.width * q))

    return Analytic(setting.d_out * s2**2 * gaussian.chi_expectation(given_r, setting.d_in),
                    "quadrature (n → ∞ limit)")


def gram_first_sgd_step_first_order(setting: BlockSetting, lr: float) -> float:
    """First-order change of E⟨v_i, v_j⟩ (i ≠ j) in one SGD step on MSE (batch mean):
    −2η·k·s2²·E[h_i h_j], with E[h_i h_j] = E_r[μ(s1 r)²] (units independent given ‖x‖)."""
    mu_sq = gaussian.chi_expectation(lambda r: gaussian.mean_and_second_moment(setting.act, setting.s1 * r)[0] ** 2,
                                     setting.d_in)
    return -2.0 * lr * setting.d_out * setting.s2**2 * mu_sq


def predicted_relu_sparsity(w_mean: float, w_std: float, h: np.ndarray) -> float:
    """Drift → sparsity law: mean over rows of h of Φ(−μ·Σ_j h_j / (s·‖h‖)).

    For a downstream matrix with i.i.d. N(μ, s²) entries reading h ≥ 0, the next
    pre-activation is exactly N(μ Σh, s²‖h‖²), so this is the expected fraction of
    exact ReLU zeros. ``h`` is (batch, n).
    """
    from scipy.special import ndtr

    h = np.atleast_2d(np.asarray(h, dtype=float))
    return float(np.mean(ndtr(-w_mean * h.sum(1) / (w_std * np.linalg.norm(h, axis=1)))))
