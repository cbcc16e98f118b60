"""Shared pure-JAX building blocks: dense, conv2d, norms, attention, patch embedding.

Conventions, so that any model can mix these blocks:

* Parameters are plain dicts of arrays. Each block has an ``*_init`` function that
  builds its dict and an apply function ``block(p, x, ...)`` that reads it. Optional
  entries (a bias, a norm scale) are *absent* rather than zero when switched off, so
  apply functions test ``"b" in p`` — a static check under ``jax.jit``.
* Weight initializers have the signature of :mod:`driftlab.models.arch.init`:
  ``init(key, shape, fan_in, fan_out) -> array`` (use ``get_init(name, gain)``).
* Dense weights are ``(fan_in, fan_out)`` and applied as ``x @ w``; convolution
  weights are ``HWIO`` and images ``NHWC`` (channels last), matching the layout the
  image loaders produce.
* Nothing here keeps mutable state: batch norm always uses the statistics of the
  batch it is given (see :func:`batch_norm`).
* Norm statistics are computed in float32 even when ``x`` is bfloat16, because a
  bf16 mean of many values loses the small per-channel shifts the drift produces.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Init = Callable[..., jax.Array]  # init(key, shape, fan_in, fan_out) -> array


# --------------------------------------------------------------------------- dense


def dense_init(key, fan_in: int, fan_out: int, init: Init, *, bias: bool = True) -> dict:
    """Parameters of an affine map R^fan_in → R^fan_out: ``w`` from ``init``, ``b`` zeros."""
    p = {"w": init(key, (fan_in, fan_out), fan_in, fan_out)}
    if bias:
        p["b"] = jnp.zeros((fan_out,), jnp.float32)
    return p


def dense(p: dict, x):
    """x @ w (+ b), over the last axis of x; weights are cast to x's dtype."""
    y = x @ p["w"].astype(x.dtype)
    if "b" in p:
        y = y + p["b"].astype(x.dtype)
    return y


# --------------------------------------------------------------------------- conv


def conv2d_init(key, kernel: int | tuple[int, int], in_ch: int, out_ch: int, init: Init,
                *, bias: bool = False) -> dict:
    """Parameters of a 2-D convolution: ``w`` (kh, kw, in_ch, out_ch) and optional ``b``.

    fan_in = kh·kw·in_ch and fan_out = kh·kw·out_ch, the convention of PyTorch and
    of He et al., so ``fan_in_normal`` with gain √2 is Kaiming-normal.
    """
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    p = {"w": init(key, (kh, kw, in_ch, out_ch), kh * kw * in_ch, kh * kw * out_ch)}
    if bias:
        p["b"] = jnp.zeros((out_ch,), jnp.float32)
    return p


def conv2d(p: dict, x, *, stride: int = 1, padding: int | str | None = None):
    """2-D cross-correlation of NHWC ``x`` with the HWIO kernel ``p["w"]`` (+ bias).

    ``padding=None`` pads kernel//2 on *each* side (PyTorch's ``padding=k//2``); XLA's
    "SAME" would pad asymmetrically for even inputs at stride 2, shifting the grid
    relative to the reference ResNets. An int pads that much on each side; a string
    ("SAME"/"VALID") is passed to XLA unchanged.
    """
    w = p["w"].astype(x.dtype)
    kh, kw = w.shape[0], w.shape[1]
    if padding is None:
        pad = [(kh // 2, kh // 2), (kw // 2, kw // 2)]
    elif isinstance(padding, int):
        pad = [(padding, padding), (padding, padding)]
    else:
        pad = padding
    y = jax.lax.conv_general_dilated(
        x, w, window_strides=(stride, stride), padding=pad,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if "b" in p:
        y = y + p["b"].astype(x.dtype)
    return y


# --------------------------------------------------------------------------- norms


def norm_init(dim: int, *, bias: bool = True) -> dict:
    """Affine parameters of a norm over ``dim`` channels: ``scale`` ones, ``bias`` zeros."""
    p = {"scale": jnp.ones((dim,), jnp.float32)}
    if bias:
        p["bias"] = jnp.zeros((dim,), jnp.float32)
    return p


def _affine(p: dict, y):
    if "scale" in p:
        y = y * p["scale"]
    if "bias" in p:
        y = y + p["bias"]
    return y


def _normalize(x, axes: Sequence[int], eps: float):
    """(x − mean) / sqrt(var + eps) with mean and (biased) variance over ``axes``, in float32."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=tuple(axes), keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=tuple(axes), keepdims=True)
    return (x32 - mean) * jax.lax.rsqrt(var + eps)


def layer_norm(p: dict, x, eps: float = 1e-5):
    """LayerNorm over the last axis: (x − mean)/std · scale + bias (entries optional)."""
    return _affine(p, _normalize(x, (-1,), eps)).astype(x.dtype)


def rms_norm(p: dict, x, eps: float = 1e-6):
    """RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · scale (no mean subtraction)."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    return _affine(p, y).astype(x.dtype)


def group_norm(p: dict, x, groups: int, eps: float = 1e-5):
    """GroupNorm (Wu & He 2018) of channels-last ``x`` (B, ..., C).

    Channels are split into ``groups`` contiguous groups; each example's group is
    normalized over its spatial positions and channels. ``groups=1`` is LayerNorm
    over (H, W, C); ``groups=C`` is InstanceNorm. Independent of the batch.
    """
    C = x.shape[-1]
    if C % groups:
        raise ValueError(f"group_norm: channels {C} not divisible by groups={groups}")
    xg = x.reshape(x.shape[:-1] + (groups, C // groups))
    axes = tuple(range(1, xg.ndim - 2)) + (xg.ndim - 1,)
    y = _normalize(xg, axes, eps).reshape(x.shape)
    return _affine(p, y).astype(x.dtype)


def batch_norm(p: dict, x, eps: float = 1e-5):
    """BatchNorm with the *current batch's* statistics, per channel (last axis).

    There are no running averages: parameters stay a pure pytree and evaluation also
    normalizes with the statistics of the batch being evaluated (so evaluate on
    batches of reasonable size). Under data-parallel ``jit`` with the batch sharded on
    its leading axis, the mean is over the *global* batch (XLA inserts the
    all-reduce), i.e. synchronized BatchNorm.
    """
    return _affine(p, _normalize(x, tuple(range(x.ndim - 1)), eps)).astype(x.dtype)


# --------------------------------------------------------------------------- attention


def attention_init(key, dim: int, init: Init, *, bias: bool = True) -> dict:
    """Parameters of multi-head self-attention: dense maps ``q``, ``k``, ``v``, ``o`` (dim → dim).

    The head count is an argument of :func:`multi_head_attention`, not a parameter
    shape, so one dict serves any head split of ``dim``.
    """
    ks = jax.random.split(key, 4)
    return {name: dense_init(k, dim, dim, init, bias=bias)
            for name, k in zip(("q", "k", "v", "o"), ks)}


def multi_head_attention(p: dict, x, num_heads: int, *, is_causal: bool = False,
                         qk_transform: Callable | None = None, implementation: str | None = None):
    """Multi-head scaled-dot-product self-attention of ``x`` (B, T, D) → (B, T, D).

    softmax(q kᵀ/√head_dim [+ causal mask]) v per head, through
    ``jax.nn.dot_product_attention`` (XLA on CPU; cuDNN flash attention where the
    caller asks for it). ``qk_transform(q, k) -> (q, k)`` acts on (B, T, N, head_dim)
    tensors before the product, e.g. rotary position embeddings.
    """
    B, T, D = x.shape
    if D % num_heads:
        raise ValueError(f"multi_head_attention: width {D} not divisible by num_heads={num_heads}")
    split = lambda t: t.reshape(B, T, num_heads, D // num_heads)  # noqa: E731
    q, k, v = split(dense(p["q"], x)), split(dense(p["k"], x)), split(dense(p["v"], x))
    if qk_transform is not None:
        q, k = qk_transform(q, k)
    y = jax.nn.dot_product_attention(q, k, v, is_causal=is_causal, implementation=implementation)
    return dense(p["o"], y.reshape(B, T, D))


# --------------------------------------------------------------------------- images


def patch_embed_init(key, patch: int, in_ch: int, dim: int, init: Init, *, bias: bool = True) -> dict:
    """Parameters of a ViT patch embedding: a patch×patch conv (in_ch → dim) with stride patch."""
    return conv2d_init(key, patch, in_ch, dim, init, bias=bias)


def patch_embed(p: dict, x, patch: int):
    """Split NHWC ``x`` into non-overlapping patch×patch tiles and project each linearly.

    Returns tokens (B, (H/patch)·(W/patch), dim) in row-major patch order. H and W
    must be multiples of ``patch``.
    """
    B, H, W, _ = x.shape
    if H % patch or W % patch:
        raise ValueError(f"patch_embed: image {H}x{W} not divisible by patch={patch}")
    y = conv2d(p, x, stride=patch, padding="VALID")
    return y.reshape(B, (H // patch) * (W // patch), y.shape[-1])


def global_avg_pool(x):
    """Mean over the spatial axes of NHWC ``x``: (B, H, W, C) → (B, C)."""
    return jnp.mean(x, axis=(1, 2))


# --------------------------------------------------------------------------- losses


def softmax_cross_entropy(logits, labels):
    """Mean over the batch of −log softmax(logits)[label], and the accuracy.

    Computed in float32 (log-sum-exp) whatever the logits' dtype. Returns
    ``(loss, accuracy)``, both scalars.
    """
    logits = logits.astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    acc = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return jnp.mean(nll), acc
