"""Semi-analytic (Stein-reduced) estimators, for the quantities with no finite-width closed form.

Stein's lemma integrates the downstream weights and the targets out exactly; what is
left is an expectation over the pre-activations alone. Given r = ‖x‖, the
pre-activations of one layer are i.i.d. N(0, s1² r²) across units, so the sampler
draws (r, z) and never forms a weight matrix:

  cross-entropy  E[g_i | p_i > 0] = s2²·E[2·σσ'(p_i)·1{p_i>0}·S(s2‖h‖)],
                 S(t) = E[1 − ‖softmax(u)‖²], u ~ N(0, t² I_k)   (quadrature)
  drift, MSE     E[∂ℓ/∂W2_ij] = k·s3²·E[h̄¹·m(s2‖h¹‖)],  m(τ) = E[σσ'(τZ)]
  drift, CE      E[∂ℓ/∂W2_ij] = s3²·E[h̄¹·mean_i σσ'(p²_i)·S(s3‖h²‖)],
                 p² | h¹ ~ N(0, s2²‖h¹‖² I_n)

JAX draws the samples and reduces them to the per-sample scalars the formula needs;
the smooth one-dimensional functions S and m are applied on the host by Chebyshev
interpolation of their quadrature over the observed range (error < 1e-9, far below
the standard error). These estimators *use* the theorem's Stein step, so they are the
analytic side of a check, compared against the raw estimators of ``estimators``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import chebyshev

from driftlab.montecarlo import traced
from driftlab.montecarlo.estimators import Budget, compiled
from driftlab.montecarlo.stats import MCResult
from driftlab.theory import gaussian
from driftlab.theory.expected_grad import Analytic, softmax_trace_factor
from driftlab.theory.setting import BlockSetting

TIER = "semi-analytic (Stein-reduced MC)"


def chebyshev_interpolant(fn, lo: float, hi: float, degree: int = 32):
    """A vectorised interpolant of a smooth scalar function on [lo, hi]."""
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        val = fn(lo)
        return lambda t: np.full_like(np.asarray(t, dtype=float), val)
    nodes = chebyshev.chebpts2(degree + 1)
    xs = lo + (nodes + 1) * (hi - lo) / 2
    coef = chebyshev.chebfit(nodes, np.array([fn(x) for x in xs]), degree)
    return lambda t: chebyshev.chebval(2 * (np.asarray(t) - lo) / (hi - lo) - 1, coef)


def _preactivations(key, d_in: int, scale, shape, dtype):
    """s·r·Z with r = ‖x‖, x ~ N(0, I_d): the law of one layer's pre-activations given the input."""
    kx, kz = jax.random.split(key)
    r = jnp.linalg.norm(jax.random.normal(kx, shape[:-1] + (d_in,), dtype), axis=-1, keepdims=True)
    return scale * r * jax.random.normal(kz, shape, dtype)


# Kernels: (key, params, shape, inputs, dtype, draws) as in montecarlo.estimators, with
# the setting's numbers traced (montecarlo.traced) and shape = (d_in, width); ``inputs``
# is unused (every sample is independent here).

def _ce_positive_parts(key, params: dict, shape: tuple, inputs: int, dtype, draws: int):
    d_in, width = shape
    p = _preactivations(key, d_in, params["s1"], (draws, width), dtype)
    h, slope = traced.value_and_slope(params, p)
    a = 2.0 * jnp.mean(jnp.where(p > 0, h * slope, 0.0), axis=-1)
    return jnp.stack([a, params["s2"] * jnp.linalg.norm(h, axis=-1)], axis=-1)


def _drift_parts(key, params: dict, shape: tuple, inputs: int, dtype, draws: int):
    d_in, width = shape
    k1, k2 = jax.random.split(key)
    p1 = _preactivations(k1, d_in, params["s1"], (draws, width), dtype)
    h1 = traced.activation(params, p1)
    norm1 = jnp.linalg.norm(h1, axis=-1, keepdims=True)
    p2 = params["s2"] * norm1 * jax.random.normal(k2, p1.shape, dtype)
    h2, slope2 = traced.value_and_slope(params, p2)
    return jnp.stack([h1.mean(-1), params["s2"] * norm1[:, 0], jnp.mean(h2 * slope2, axis=-1),
                      params["s2"] * jnp.linalg.norm(h2, axis=-1)], axis=-1)


def _sample_parts(parts_fn, setting: BlockSetting, budget: Budget) -> np.ndarray:
    chunk = min(budget.chunk * budget.inputs_per_draw, budget.draws * budget.inputs_per_draw)
    total = budget.draws * budget.inputs_per_draw
    dtype = jnp.dtype(budget.dtype)
    fn = compiled(parts_fn, (setting.d_in, setting.width), 1, dtype, chunk)
    params = traced.setting_params(setting, dtype)
    base = jax.random.key(budget.seed + 7919)  # distinct stream from the raw estimators
    n_chunks = -(-total // chunk)
    parts = [fn(jax.random.fold_in(base, i), params) for i in range(n_chunks)]
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


def _interp_range(values: np.ndarray) -> tuple[float, float]:
    return float(values.min()), float(values.max())


def ce_grad_positive(setting: BlockSetting, budget: Budget = Budget()) -> Analytic:
    """Semi-analytic E[∂ℓ/∂p_i | p_i > 0] under cross-entropy (every sample independent)."""
    parts = _sample_parts(_ce_positive_parts, setting, budget)
    S = chebyshev_interpolant(lambda t: softmax_trace_factor(t, setting.d_out), *_interp_range(parts[:, 1]))
    res = MCResult.from_clusters(setting.s2**2 * parts[:, 0] * S(parts[:, 1]))
    return Analytic(res.mean, TIER, res.stderr)


def drift(setting: BlockSetting, budget: Budget = Budget()) -> Analytic:
    """Semi-analytic mean E[∂ℓ/∂W2_ij] of the 3-layer block (MSE "sum" or cross-entropy)."""
    parts = _sample_parts(_drift_parts, setting, budget)
    if setting.loss == "mse":
        m = chebyshev_interpolant(lambda tau: gaussian.m(setting.act, tau), *_interp_range(parts[:, 1]))
        per_output = 1.0 if setting.reduction == "mean" else float(setting.d_out)
        values = per_output * setting.s2**2 * parts[:, 0] * m(parts[:, 1])
    else:
        S = chebyshev_interpolant(lambda t: softmax_trace_factor(t, setting.d_out), *_interp_range(parts[:, 3]))
        values = setting.s2**2 * parts[:, 0] * parts[:, 2] * S(parts[:, 3])
    res = MCResult.from_clusters(values)
    return Analytic(res.mean, TIER, res.stderr)
