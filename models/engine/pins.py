"""Causal interventions ("pins") applied after every optimizer update, and the per-layer
decomposition of the mean pre-activation shift.

A pin is named in ``TrainConfig.pins`` (CLI ``--pin NAME``, repeatable); allowed names are
:data:`PINS`. With parameters W after optax's update (the update itself is untouched:
gradients, optimizer moments, weight decay and clipping are as without the pin):

``downstream-mean``
    For every downstream matrix (``arch.downstream(cfg)`` values, the matrix reading a
    tap's activation h): W ← W − mean(W) + mean(W₀), W₀ the matrix at initialization.
    Only the global mean of W is held at its init value; every other component of the
    update is kept. Logged per matrix as the mean removed this step, mean(W) − mean(W₀).

``reader-stream-mean``
    For every reading matrix R (the one producing a tap's pre-activation, p = u R [+ b];
    :func:`readers`): R ← R − û ûᵀ (R − R₀), with û = ū/|ū| and ū the mean of the
    reader's input u over the current batch (and tokens). This removes the component of
    the cumulative change R − R₀ along the mean-input direction in R's input space, so
    that after the pin ū (R − R₀) = 0: on the current batch every unit's mean
    pre-activation is the one the init reader would give, ū R₀ (+ b). Changes along
    input directions orthogonal to ū, and biases, are kept. Since ū is re-measured every
    step, the pin follows the stream's current mean direction. Logged per matrix as
    removed_fro = ‖û ûᵀ(R − R₀)‖_F and removed_p_mean = mean_k ū·(R − R₀)_{:,k} (the
    mean pre-activation shift removed). Implemented for :data:`READER_ARCHS`.

``sham``
    The reader pin's sham control (same code path, nothing removed): every step it runs
    exactly the computation of ``reader-stream-mean`` (ū recorded, û, the projection
    ûᵀ(R − R₀) against the stored R₀) but subtracts 0·û ûᵀ(R − R₀), so R is unchanged.
    A pinned-vs-sham difference is then the removal itself, not the machinery (the
    extra reference copy R₀, the traced projection). Logged like the reader pin (the
    amounts it *would* remove). Implemented for :data:`READER_ARCHS`.

When both are set, the reader pin runs first and ``downstream-mean`` last (in the MLP a
hidden matrix is both a reader and a downstream matrix; the mean pin then holds exactly).

Models report a reader's input through :func:`record_reader_input` (a no-op for taps
without a ``reader_input`` method); :class:`ReaderInputs` wraps a tap to collect ū.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from driftlab.models.arch.params import flatten_dict
from driftlab.names import (DOWNSTREAM_MEAN, PINS, READER_STREAM_MEAN, SHAM,  # noqa: F401
                            SHAM_DIRECTION)
from driftlab.models.arch.params import Reader
from driftlab.models.arch.params import readers as table_readers

SHAM_DIRECTION_SEED = 20261207  # the key of D̂: fixed, so every seed's sham removes the same direction
# Pins that run the reader-projection code path, with the factor applied to the removal.
_READER_PATH = {READER_STREAM_MEAN: 1.0, SHAM: 0.0}
READER_ARCHS = ("gpt", "mlp")
_TINY = 1e-30


def validate_pins(pins, arch: str) -> None:
    """Raise ValueError naming ``TrainConfig.pins`` and the allowed values."""
    allowed = f"a tuple of distinct names from {', '.join(PINS)}"
    if not isinstance(pins, tuple) or not all(isinstance(p, str) for p in pins):
        raise ValueError(f"TrainConfig.pins={pins!r} invalid; allowed: {allowed}")
    for p in pins:
        if p not in PINS:
            raise ValueError(f"TrainConfig.pins: unknown pin {p!r}; allowed: {', '.join(PINS)}")
    if len(set(pins)) != len(pins):
        raise ValueError(f"TrainConfig.pins={pins!r} invalid; allowed: {allowed}")
    for name in _READER_PATH:
        if name in pins and arch not in READER_ARCHS:
            raise ValueError(f"TrainConfig.pins: {name!r} is not implemented for "
                             f"arch={arch!r}; allowed archs: {', '.join(READER_ARCHS)}")
    if DOWNSTREAM_MEAN in pins and SHAM_DIRECTION in pins:
        raise ValueError(f"TrainConfig.pins={pins!r} invalid; allowed: {DOWNSTREAM_MEAN!r} "
                         f"or its sham {SHAM_DIRECTION!r}, not both")
    if READER_STREAM_MEAN in pins and SHAM in pins:
        raise ValueError(f"TrainConfig.pins={pins!r} invalid; allowed: {READER_STREAM_MEAN!r} "
                         f"or its sham {SHAM!r}, not both")


def readers(arch: str, mcfg) -> dict[str, Reader]:
    """{tap: Reader} for the archs of :data:`READER_ARCHS`, {} for the others, from the
    architecture's parameter table (models/params.readers: each weight's ``makes`` tap, its
    bias and the tap it reads).

    GPT: ``block{i}.mlp`` is read from u = norm₂(x) (the normalized residual stream) by
    ``block{i}/mlp/w_in`` (no bias). MLP: ``layer{i}`` is read from u = h_{i-1} (the input
    image for i = 0) by ``layer{i}/w`` with bias ``layer{i}/b``; for i >= 1 that matrix is
    also the downstream matrix of tap ``layer{i-1}``.
    """
    if arch not in READER_ARCHS:
        return {}
    from driftlab.models.arch.base import get_arch

    return table_readers(get_arch(arch).params(mcfg))


class ReaderInputs:
    """A tap wrapper that forwards every call and records ū, the mean of each reader's
    input over all leading (batch, token) axes, in float32 and without gradient."""

    def __init__(self, tap):
        self.tap = tap
        self.means: dict[str, jax.Array] = {}

    def __call__(self, name: str, p, act):
        return self.tap(name, p, act)

    def reader_input(self, name: str, u) -> None:
        u = jax.lax.stop_gradient(u).astype(jnp.float32)
        self.means[name] = jnp.mean(jnp.reshape(u, (-1, u.shape[-1])), axis=0)


def reference(init_params, pins: tuple, arch: str, mcfg, downstream: dict) -> dict:
    """What the pins and the shift decomposition need from the init parameters W₀:
    ``down_mean0`` {path: mean(W₀)} (downstream-mean), ``reader_w0`` {path: R₀} (reader
    pin), ``row_mean0`` {tap: c₀ = R₀ row means} and ``mean0`` {tap: μ(R₀)} (decomposition).
    Recomputed from the seed on resume, so pinned runs resume bit-exactly."""
    flat = flatten_dict(init_params)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    ref = {"down_mean0": {}, "reader_w0": {}, "row_mean0": {}, "mean0": {}}
    if DOWNSTREAM_MEAN in pins:
        ref["down_mean0"] = {path: jnp.mean(f32(flat[path])) for path in downstream.values()}
    if SHAM_DIRECTION in pins:
        ref["sham_w0"] = {path: f32(flat[path]) for path in downstream.values()}
        ref["sham_dir"] = {path: sham_direction(path, flat[path].shape)
                           for path in downstream.values()}
    for tap, r in readers(arch, mcfg).items():
        w0 = f32(flat[r.weight])
        ref["row_mean0"][tap] = jnp.mean(w0, axis=1)
        ref["mean0"][tap] = jnp.mean(w0)
        if any(name in pins for name in _READER_PATH):
            ref["reader_w0"][r.weight] = w0
    return ref


def sham_direction(path: str, shape) -> jax.Array:
    """D̂ of matrix ``path``: N(0, 1) entries from a key that depends only on
    :data:`SHAM_DIRECTION_SEED` and the path's bytes, minus their mean, scaled to unit
    Frobenius norm (so ⟨D̂, 1⟩ = 0 and ‖D̂‖ = 1)."""
    key = jax.random.PRNGKey(SHAM_DIRECTION_SEED)
    for byte in path.encode():
        key = jax.random.fold_in(key, byte)
    d = jax.random.normal(key, shape, jnp.float32)
    d = d - jnp.mean(d)
    return d / jnp.sqrt(jnp.sum(d * d))


def _replace_leaf(tree: dict, path: str, value) -> dict:
    """A copy of nested dict ``tree`` with the leaf at "/"-joined ``path`` replaced (the
    tree structure, empty sub-dicts included, is kept for the optimizer state)."""
    head, _, rest = path.partition("/")
    return {**tree, head: _replace_leaf(tree[head], rest, value) if rest else value}


def apply_pins(params, pins: tuple, ref: dict, input_means: dict, reader_map: dict):
    """(pinned params, logs) after an update; see the module docstring for the maths.

    logs: {"downstream-mean": {path: mean(W) − mean(W₀) removed}, "reader-stream-mean"
    (and "sham", what it would remove): {path: {"removed_fro", "removed_p_mean"}}}, only
    for the pins that are set.
    """
    if not pins:
        return params, {}
    flat = flatten_dict(params)
    logs = {}
    for name, factor in _READER_PATH.items():
        if name not in pins:
            continue
        logs[name] = {}
        for tap, r in reader_map.items():
            w, w0 = flat[r.weight], ref["reader_w0"][r.weight]
            u_bar = input_means[tap]
            norm = jnp.sqrt(jnp.sum(u_bar * u_bar))
            u_hat = u_bar / jnp.maximum(norm, _TINY)
            proj = u_hat @ (w.astype(jnp.float32) - w0)  # ûᵀ(R − R₀), one entry per unit
            # The sham multiplies the removal by 0: identical trace, R unchanged.
            flat[r.weight] = (w - factor * jnp.outer(u_hat, proj)).astype(w.dtype)
            params = _replace_leaf(params, r.weight, flat[r.weight])
            logs[name][r.weight] = {
                "removed_fro": jnp.sqrt(jnp.sum(proj * proj)),
                "removed_p_mean": norm * jnp.mean(proj)}
    if DOWNSTREAM_MEAN in pins:
        logs[DOWNSTREAM_MEAN] = {}
        for path, m0 in ref["down_mean0"].items():
            w = flat[path]
            shift = jnp.mean(w.astype(jnp.float32)) - m0
            params = _replace_leaf(params, path, (w - shift).astype(w.dtype))
            logs[DOWNSTREAM_MEAN][path] = shift
    if SHAM_DIRECTION in pins:
        logs[SHAM_DIRECTION] = {}
        for path, d in ref["sham_dir"].items():
            w = flat[path]
            coef = jnp.sum((w.astype(jnp.float32) - ref["sham_w0"][path]) * d)
            params = _replace_leaf(params, path, (w - coef * d).astype(w.dtype))
            logs[SHAM_DIRECTION][path] = coef / jnp.sqrt(jnp.float32(d.size))
    return params, logs


def shift_decomposition(params, ps: dict, input_means: dict, ref: dict,
                        reader_map: dict) -> dict:
    """Per tap, the mean pre-activation P̄ = mean over batch, tokens and units of p = u R + b.

    With ū_j the input mean, c_j = mean_k R_jk the row means of R (fan_in × units),
    μ = mean(R) and b̄ = mean(b) (0 without bias):

        P̄ = μ Σ_j ū_j  +  Σ_j ū_j (c_j − μ)  +  b̄
             drift        align                bias

    ``drift`` is the term of R's global mean (for MLP hidden layers R is the downstream
    matrix of the previous tap ``feeds``, so this is that layer's drift term μ·Σh);
    ``align`` is the alignment of R's row means with the stream. Relative to init
    (R₀, c₀, μ₀), exactly:

        P̄ = p_mean_init_reader + drift_change + align_change,
        p_mean_init_reader = Σ_j ū_j c₀_j + b̄   (the init reader on the current stream),
        drift_change = (μ − μ₀) Σ_j ū_j,  align_change = Σ_j ū_j ((c_j − c₀_j) − (μ − μ₀)).

    ``p_mean`` is P̄ measured on the recorded p (equal to drift + align + bias up to
    rounding, and up to bfloat16 rounding of p under mixed precision); ``u_sum`` = Σ_j ū_j.
    Parameters are those before the step's update, as for every record of that step.
    """
    flat = flatten_dict(params)
    out = {}
    for tap, r in reader_map.items():
        w = flat[r.weight].astype(jnp.float32)
        u_bar = input_means[tap]
        row, mu = jnp.mean(w, axis=1), jnp.mean(w)
        row0, mu0 = ref["row_mean0"][tap], ref["mean0"][tap]
        u_sum = jnp.sum(u_bar)
        bias = jnp.mean(flat[r.bias].astype(jnp.float32)) if r.bias else jnp.float32(0.0)
        out[tap] = {
            "p_mean": jnp.mean(ps[tap].astype(jnp.float32)),
            "u_sum": u_sum,
            "drift": mu * u_sum,
            "align": jnp.sum(u_bar * (row - mu)),
            "bias": bias,
            "p_mean_init_reader": jnp.sum(u_bar * row0) + bias,
            "drift_change": (mu - mu0) * u_sum,
            "align_change": jnp.sum(u_bar * ((row - row0) - (mu - mu0))),
        }
    return out
