"""Large-batch JAX Monte Carlo estimators at random initialization.

Every estimator draws independent weights per *cluster* and ``inputs_per_draw`` fresh
inputs that share them (targets are integrated out
exactly, see ``_output_grad``); the cluster value is the within-cluster average and
the standard error is taken over clusters (montecarlo.stats). Clusters are processed
``chunk`` at a time by one jitted program, so memory is bounded by chunk·inputs·width
whatever the total sample count, and the same code runs on CPU, GPU or TPU.
Gradients are formed by the chain rule written out (σ' by forward-mode autodiff of
the registry activation), not by the formulas under test.

Kernels take the setting's numbers (scales, μ, β, activation) as traced arguments and
only its shape class as static (montecarlo.traced), so one compiled program serves every
setting of a shape class; compiled programs are kept per process and, with the
persistent cache enabled (driftlab.compilation_cache), across processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.activations import parse_activation
from driftlab.montecarlo import traced
from driftlab.montecarlo.stats import MCResult
from driftlab.montecarlo.traced import ShapeClass
from driftlab.theory.setting import BlockSetting


@dataclass(frozen=True)
class Budget:
    """How many independent weight draws, inputs per draw and draws per compiled chunk."""

    draws: int = 4096
    inputs_per_draw: int = 32
    chunk: int = 256
    seed: int = 0
    dtype: str = "float32"  # "float64" needs jax_enable_x64
    progress: bool = False

    def __post_init__(self):
        for field in ("draws", "inputs_per_draw", "chunk"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.draws < 2:
            raise ValueError("draws must be at least 2 for a standard error")


def chunk_for(setting: BlockSetting, inputs: int, max_floats: int = 1 << 26) -> int:
    """Draws per compiled chunk keeping one chunk's arrays under ``max_floats`` floats (256 MiB)."""
    n, d, k = setting.width, setting.d_in, setting.d_out
    per_draw = n * d + n * n + k * n + inputs * (d + 3 * n + k)  # weights + activations (drift block)
    return max(1, min(4096, max_floats // per_draw))


def _output_grad(shape: ShapeClass, params: dict, f):
    """E[∂ℓ/∂f | f] over the target, for a batch of outputs f (B, k).

    Targets enter ∂ℓ/∂f linearly — MSE: f − y with y = β·f + ξ, ξ ~ N(0, I);
    cross-entropy: softmax(f) − e_c with c uniform on {1..k} — so averaging them out
    exactly (Rao–Blackwellization) keeps every estimator unbiased and removes the
    target's variance, the largest part of the raw gradient noise.
    """
    if shape.loss == "mse":
        grad = (1.0 - params["beta"]) * f
        return grad / shape.d_out if shape.reduction == "mean" else grad
    return jax.nn.softmax(f, axis=-1) - 1.0 / shape.d_out


def _normal(key, shape, dtype, scale, mean=0.0):
    return mean + scale * jax.random.normal(key, shape, dtype)


# Each *_cluster function draws ``draws`` independent clusters at once (leading axis) —
# one RNG call per array is several times faster than vmapping over per-draw keys —
# and returns one value (or a vector of values) per cluster. Signature:
# (key, params, shape, inputs, dtype, draws), params traced, the rest static.

def first_layer_preactivations(key, x, n: int, s1: float):
    """p = x W1ᵀ for W1 ~ N(0, s1²) (n×d) shared by the B inputs of each draw, sampled exactly.

    Each unit's column p[:, i] = X w_i is N(0, s1²·X Xᵀ) given the inputs, independently
    across units. When 2B ≤ d it is cheaper to draw it as s1·L z_i with L Lᵀ = X Xᵀ
    (Cholesky of the B×B Gram matrix, z_i ~ N(0, I_B)): n·B normals instead of n·d —
    the same distribution, a sampling identity, not the theorem under test.
    """
    draws, inputs, d = x.shape
    if 2 * inputs > d:
        w1 = _normal(key, (draws, n, d), x.dtype, s1)
        return jnp.einsum("cbd,cnd->cbn", x, w1)
    chol = jnp.linalg.cholesky(jnp.einsum("cbd,ced->cbe", x, x))
    z = jax.random.normal(key, (draws, n, inputs), x.dtype)
    return s1 * jnp.einsum("cbe,cne->cbn", chol, z)


def preactivation_grads(key, params: dict, shape: ShapeClass, inputs: int, dtype, draws: int):
    """(p, g) of shape (draws, inputs, width): pre-activations and E_target[∂ℓ/∂p | weights, x]
    for ``draws`` independent weight draws, each shared by ``inputs`` inputs."""
    k1, k2, k3 = jax.random.split(key, 3)
    n, d, k = shape.width, shape.d_in, shape.d_out
    w2 = _normal(k2, (draws, k, n), dtype, params["s2"], params["w2_mean"])
    x = jax.random.normal(k3, (draws, inputs, d), dtype)
    p = first_layer_preactivations(k1, x, n, params["s1"])
    h, slope = traced.value_and_slope(params, p)
    dl_df = _output_grad(shape, params, jnp.einsum("cbn,ckn->cbk", h, w2))
    return p, slope * jnp.einsum("cbk,ckn->cbn", dl_df, w2)


def grad_positive_cluster(key, params: dict, shape: ShapeClass, inputs: int, dtype, draws: int):
    """Per weight draw, the estimate of E[g_i | p_i > 0] = 2·E[g_i·1{p_i > 0}].

    P(p_i > 0) = ½ exactly (p = W1 x is symmetric), so no ratio estimator is needed.
    """
    p, g = preactivation_grads(key, params, shape, inputs, dtype, draws)
    return 2.0 * jnp.mean(jnp.where(p > 0, g, 0.0), axis=(1, 2))


def drift_cluster(key, params: dict, shape: ShapeClass, inputs: int, dtype, draws: int):
    """Per weight draw of the 3-layer block x → W1 → σ → W2 (n×n) → σ → W3 → f:
    the mean over entries of ∂ℓ/∂W1, ∂ℓ/∂W2, ∂ℓ/∂W3, averaged over the inputs.

    The mean of an outer-product gradient g hᵀ over its entries is mean(g)·mean(h).
    """
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n, d, k = shape.width, shape.d_in, shape.d_out
    w1 = _normal(k1, (draws, n, d), dtype, params["s1"])
    w2 = _normal(k2, (draws, n, n), dtype, params["s2"], params["w2_mean"])
    w3 = _normal(k3, (draws, k, n), dtype, params["s2"])
    x = jax.random.normal(k4, (draws, inputs, d), dtype)
    p1 = jnp.einsum("cbd,cnd->cbn", x, w1)
    h1, slope1 = traced.value_and_slope(params, p1)
    p2 = jnp.einsum("cbm,cnm->cbn", h1, w2)
    h2, slope2 = traced.value_and_slope(params, p2)
    dl_df = _output_grad(shape, params, jnp.einsum("cbn,ckn->cbk", h2, w3))
    g2 = slope2 * jnp.einsum("cbk,ckn->cbn", dl_df, w3)
    g1 = slope1 * jnp.einsum("cbn,cnm->cbm", g2, w2)
    outer_mean = lambda g, a: jnp.mean(g.mean(-1) * a.mean(-1), axis=1)
    return jnp.stack([outer_mean(g1, x), outer_mean(g2, h1), outer_mean(dl_df, h2)], axis=-1)


def outgoing_gram_cluster(key, params: dict, shape: ShapeClass, inputs: int, dtype, draws: int):
    """Per draw of W2's columns v_i: (mean_i ‖v_i‖², mean_{i≠j} ⟨v_i, v_j⟩) — the lemma."""
    n, k = shape.width, shape.d_out
    w2 = _normal(key, (draws, k, n), dtype, params["s2"], params["w2_mean"])
    col_sum = w2.sum(-1)
    diag = jnp.sum(w2**2, axis=(1, 2))
    off = jnp.sum(col_sum**2, axis=-1) - diag
    return jnp.stack([diag / n, off / (n * (n - 1))], axis=-1)


@lru_cache(maxsize=256)
def compiled(cluster_fn, shape, inputs: int, dtype, draws: int):
    """One jitted program per (kernel, shape class, sizes), called as fn(key, params):
    every setting of the shape class, and every repeated estimate, reuses it."""
    return jax.jit(partial(cluster_fn, shape=shape, inputs=inputs, dtype=dtype, draws=draws))


def _dtype(budget: Budget):
    if budget.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax.config.update('jax_enable_x64', True)")
    return jnp.dtype(budget.dtype)


def run_clusters(cluster_fn, setting: BlockSetting, budget: Budget, samples_per_draw: int | None = None):
    """Evaluate ``cluster_fn(key, params, shape, inputs, dtype, draws)`` for ``budget.draws``
    clusters of ``setting`` (split into traced params and its static shape class)."""
    dtype = _dtype(budget)
    return run_kernel(cluster_fn, ShapeClass.of(setting), traced.setting_params(setting, dtype), budget,
                      samples_per_draw, label=setting.describe())


def run_kernel(cluster_fn, shape, params, budget: Budget, samples_per_draw: int | None = None,
               label: str = ""):
    """Evaluate ``cluster_fn(key, params, shape, inputs, dtype, draws)`` for ``budget.draws``
    clusters; ``shape`` is static (hashable), ``params`` a pytree of traced arrays.

    Returns an MCResult, or a list of them when the cluster value is a vector. The draw
    count is rounded up to a whole number of chunks so one compiled program serves all.
    """
    dtype = _dtype(budget)
    chunk = min(budget.chunk, budget.draws)
    n_chunks = math.ceil(budget.draws / chunk)
    fn = compiled(cluster_fn, shape, budget.inputs_per_draw, dtype, chunk)
    base = jax.random.key(budget.seed)
    chunks = range(n_chunks)
    if budget.progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=f"MC {label}", unit="chunk", leave=False)
    # dispatch every chunk before reading any back: the host never waits between chunks
    values = [fn(jax.random.fold_in(base, i), params) for i in chunks]
    values = [np.asarray(v) for v in values]
    values = np.concatenate(values, axis=0).astype(np.float64)
    per_draw = budget.inputs_per_draw if samples_per_draw is None else samples_per_draw
    if values.ndim == 1:
        return MCResult.from_clusters(values, per_draw)
    return [MCResult.from_clusters(values[:, j], per_draw) for j in range(values.shape[1])]


def estimate_grad_positive(setting: BlockSetting, budget: Budget = Budget()) -> MCResult:
    """Monte Carlo E[∂ℓ/∂p_i | p_i > 0] in the canonical block (per example)."""
    return run_clusters(grad_positive_cluster, setting, budget)


def estimate_drift(setting: BlockSetting, budget: Budget = Budget()) -> dict[str, MCResult]:
    """Monte Carlo mean gradient on W1 (input), W2 (hidden-to-hidden) and W3 (output)."""
    return dict(zip(("W1", "W2", "W3"), run_clusters(drift_cluster, setting, budget)))


def estimate_outgoing_gram(setting: BlockSetting, budget: Budget = Budget()) -> dict[str, MCResult]:
    """Monte Carlo E‖v_i‖² and E⟨v_i, v_j⟩ (i ≠ j) for the columns of W2 at initialization."""
    res = run_clusters(outgoing_gram_cluster, setting, budget, samples_per_draw=1)
    return {"diag": res[0], "offdiag": res[1]}


def softmax_factor_cluster(key, params: dict, shape: int, inputs: int, dtype, draws: int):
    """Per cluster, the mean over ``inputs`` draws of 1 − ‖softmax(u)‖², u ~ N(0, t² I_k);
    ``shape`` is k, ``params["t"]`` is t."""
    u = params["t"] * jax.random.normal(key, (draws, inputs, shape), dtype)
    return jnp.mean(1.0 - jnp.sum(jax.nn.softmax(u, axis=-1) ** 2, axis=-1), axis=-1)


def estimate_softmax_factor(t: float, k: int, budget: Budget = Budget()) -> MCResult:
    """Monte Carlo S(t) = E[1 − ‖softmax(u)‖²], u ~ N(0, t² I_k) (checks the quadrature)."""
    params = {"t": jnp.asarray(t, _dtype(budget))}
    return run_kernel(softmax_factor_cluster, k, params, budget, label=f"S({t:g}), k={k}")


def relu_sparsity_cluster(key, params: dict, shape, inputs: int, dtype, draws: int):
    """Per cluster, the fraction of ReLU(W h) ≤ 0 over ``inputs`` output units and the rows
    of ``params["h"]`` (batch, n), for W ~ N(μ, s²) with μ = params["mu"], s = params["s"]."""
    h = params["h"]
    w = params["mu"] + params["s"] * jax.random.normal(key, (draws, inputs, h.shape[1]), dtype)
    return jnp.mean(jnp.einsum("cun,bn->cub", w, h) <= 0, axis=(1, 2)).astype(dtype)


def estimate_relu_sparsity(w_mean: float, w_std: float, h: np.ndarray, budget: Budget = Budget()) -> MCResult:
    """Monte Carlo fraction of exact zeros of ReLU(W h) for W ~ N(μ, s²) i.i.d., given rows h ≥ 0.

    ``h`` is (batch, n); each cluster draws ``inputs_per_draw`` output units.
    """
    dtype = _dtype(budget)
    params = {"h": jnp.asarray(h, jnp.float32), "mu": jnp.asarray(w_mean, dtype), "s": jnp.asarray(w_std, dtype)}
    return run_kernel(relu_sparsity_cluster, np.shape(h), params, budget,
                      samples_per_draw=budget.inputs_per_draw * np.shape(h)[0], label="ReLU sparsity")


def sample_preactivation_grads(setting: BlockSetting, budget: Budget = Budget()):
    """(p, g) pairs — pre-activations and E_target[∂ℓ/∂p | weights, x] — for binned plots.

    Returns two float64 arrays of draws × inputs × width values; a bin's mean of g
    estimates E[g | p ∈ bin].
    """
    dtype = _dtype(budget)
    fn = compiled(preactivation_grads, ShapeClass.of(setting), budget.inputs_per_draw, dtype, budget.chunk)
    params = traced.setting_params(setting, dtype)
    base = jax.random.key(budget.seed)
    out = [fn(jax.random.fold_in(base, i), params) for i in range(math.ceil(budget.draws / budget.chunk))]
    return (np.concatenate([np.asarray(o[0], np.float64).ravel() for o in out]),
            np.concatenate([np.asarray(o[1], np.float64).ravel() for o in out]))


def outgoing_gram_after_sgd_cluster(key, params: dict, shape: tuple, inputs: int, dtype, draws: int):
    """Per draw: train the block (W1 and W2) for ``steps`` full-batch SGD steps on ``inputs``
    random examples (MSE, batch mean), then the mean of ⟨v_i, v_j⟩ over unit pairs i ≠ j
    that are co-active on fresh inputs — the paper's lemma, after training.

    At initialization this is 0 (the v_i are independent); to first order one step adds
    −2η·k·s2²·E[h_i h_j] < 0, as co-active units learn to share the output error.
    ``shape`` is (ShapeClass, steps, activation name); η is params["lr"]. The activation
    is static here: differentiating through the traced switch would compile every branch's
    gradient (several seconds) for a kernel that serves one check.
    """
    shape, steps, act_name = shape
    act = parse_activation(act_name)
    lr = params["lr"]
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    n, d, k = shape.width, shape.d_in, shape.d_out
    w1 = _normal(k1, (draws, n, d), dtype, params["s1"])
    w2 = _normal(k2, (draws, k, n), dtype, params["s2"])
    x = jax.random.normal(k3, (draws, inputs, d), dtype)
    y = jax.random.normal(k4, (draws, inputs, k), dtype)

    def loss(w1, w2, x, y):
        return 0.5 * jnp.mean(jnp.sum((act(x @ w1.T) @ w2.T - y) ** 2, axis=-1))

    def sgd(_, ws):
        g1, g2 = jax.vmap(jax.grad(loss, argnums=(0, 1)))(*ws, x, y)
        return ws[0] - lr * g1, ws[1] - lr * g2

    w1, w2 = jax.lax.fori_loop(0, steps, sgd, (w1, w2))
    fresh = act(jnp.einsum("cbd,cnd->cbn", jax.random.normal(k5, x.shape, dtype), w1)) > 0
    gram = jnp.einsum("ckn,ckm->cnm", w2, w2)
    pairs = fresh[..., :, None] & fresh[..., None, :] & ~jnp.eye(n, dtype=bool)
    weight = pairs.sum(axis=(1, 2, 3))
    return jnp.einsum("cbnm,cnm->c", pairs.astype(dtype), gram) / jnp.maximum(weight, 1)


def estimate_outgoing_gram_after_sgd(setting: BlockSetting, budget: Budget = Budget(), steps: int = 5,
                                     lr: float = 0.1) -> MCResult:
    """Monte Carlo E⟨v_i, v_j⟩ over co-active pairs after ``steps`` SGD steps (see the cluster)."""
    dtype = _dtype(budget)
    params = {**traced.setting_params(setting, dtype), "lr": jnp.asarray(lr, dtype)}
    return run_kernel(outgoing_gram_after_sgd_cluster, (ShapeClass.of(setting), steps, setting.act), params, budget,
                      label=f"{setting.describe()} after {steps} SGD steps")
