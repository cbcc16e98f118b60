"""Adam's first steps at θ₀: the sign of the gradient, not its mean (THEORY.md).

Setting. One coordinate of Adam (optax.adam / adamw with decay 0: β₁, β₂, ε) fed batch
gradients g_r = μ + σ ξ_r drawn at θ₀ (ξ_r i.i.d., mean 0, variance 1; the frozen replay of
montecarlo/trajectory_replay.py, which ignores the parameters' movement):

    m_r = β₁ m_{r−1} + (1 − β₁) g_r,  v_r = β₂ v_{r−1} + (1 − β₂) g_r²,
    u_r = m̂_r / (√v̂_r + ε),  m̂_r = m_r/(1 − β₁^r),  v̂_r = v_r/(1 − β₂^r),  θ_{r+1} = θ_r − η u_r.

Step one: m̂₁ = g₁, v̂₁ = g₁², so u₁ = g₁/(|g₁| + ε) = sign g₁ for |g₁| ≫ ε and

    E[u₁] = P(g > 0) − P(g < 0) = 2Φ(μ/σ) − 1 ≈ √(2/π) μ/σ  (Gaussian ξ, |μ| ≪ σ).

So Adam moves a coordinate by η·E[sign g], which depends on the bias only through μ/σ, where
SGD moves it by η μ. For a weight matrix whose mean gradient is the theorem's small bias μ
and whose per-coordinate noise is σ, the mean drift per step is η·√(2/π)·μ/σ instead of η·μ:
an amplification by √(2/π)/σ, independent of the gradient's overall scale (Adam's
normalization). Later steps average: with β₂ → 1 and r ≪ 1/(1 − β₂), v̂_r ≈ mean of g² over
the r draws, m̂_r ≈ a β₁-weighted mean of the g's, and E[u_r] ≈ μ/√(μ² + σ²) ≈ μ/σ for
r ≫ 1/(1 − β₁) (the momentum averages the noise away, the second moment does not). The
replays compute E[u_r] for the real gradients (non-Gaussian, correlated coordinates) instead
of this one-coordinate law; :func:`sign_mean` and :func:`adam_mean_update` state it so tests
can check the replays against it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults (models/optim.py's adamw)


def sign_mean(mu, sigma):
    """E[sign g] = 2Φ(μ/σ) − 1 for g ~ N(μ, σ²): Adam's first update per unit η (ε → 0)."""
    return 2.0 * ndtr(np.asarray(mu, np.float64) / np.asarray(sigma, np.float64)) - 1.0


def small_bias_gain(sigma) -> float:
    """dE[sign g]/dμ at μ = 0: √(2/π)/σ, the factor by which Adam's first step amplifies a
    small mean gradient μ relative to SGD's (η μ)."""
    return math.sqrt(2.0 / math.pi) / float(sigma)


def adam_mean_update(mu: float, sigma: float, steps: int, draws: int = 20000, seed: int = 0,
                     b1: float = ADAM_B1, b2: float = ADAM_B2, eps: float = ADAM_EPS) -> np.ndarray:
    """E[u_r], r = 1 … steps, for one coordinate with g_r ~ N(μ, σ²) i.i.d. (frozen at θ₀),
    by simulating the recursion over ``draws`` independent coordinates (numpy, fixed seed)."""
    rng = np.random.default_rng(seed)
    m = np.zeros(draws)
    v = np.zeros(draws)
    out = np.zeros(steps)
    for r in range(1, steps + 1):
        g = mu + sigma * rng.standard_normal(draws)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1 ** r)) / (np.sqrt(v / (1 - b2 ** r)) + eps)
        out[r - 1] = u.mean()
    return out


__all__ = ["sign_mean", "small_bias_gain", "adam_mean_update", "ADAM_B1", "ADAM_B2", "ADAM_EPS"]
