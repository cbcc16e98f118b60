"""Tests of the shared building blocks in models/arch/layers.py against direct NumPy formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.arch import layers as L
from driftlab.models.arch.init import get_init
from driftlab.testing import assert_close, assert_mc_agrees

INIT = get_init("fan_in_normal")


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_dense_matches_matmul_and_bias_is_optional():
    p = L.dense_init(jax.random.PRNGKey(0), 5, 3, INIT)
    assert p["w"].shape == (5, 3) and p["b"].shape == (3,)
    p = {"w": p["w"], "b": jnp.arange(3.0)}
    x = _rng().standard_normal((4, 5)).astype(np.float32)
    assert_close(L.dense(p, x), x @ np.asarray(p["w"]) + np.arange(3.0), kind="ops")
    nob = L.dense_init(jax.random.PRNGKey(0), 5, 3, INIT, bias=False)
    assert "b" not in nob
    assert_close(L.dense(nob, x), x @ np.asarray(nob["w"]), kind="ops")


def test_dense_init_uses_fan_in_scale():
    p = L.dense_init(jax.random.PRNGKey(1), 400, 300, get_init("fan_in_normal", 2.0))
    expected = 2.0 / math.sqrt(400)  # the sample SD of n normals has SE ≈ σ/√(2n)
    assert_mc_agrees(float(jnp.std(p["w"])), expected / math.sqrt(2 * p["w"].size), expected)


def _conv_ref(x, w, stride, pad):
    """Direct loops: y[b,i,j,o] = Σ x_pad[b, i·s+u, j·s+v, c] w[u,v,c,o]."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    B, H, W, C = x.shape
    kh, kw, _, O = w.shape
    Ho, Wo = (H - kh) // stride + 1, (W - kw) // stride + 1
    y = np.zeros((B, Ho, Wo, O))
    for i in range(Ho):
        for j in range(Wo):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            y[:, i, j, :] = np.einsum("buvc,uvco->bo", patch, w)
    return y


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_matches_direct_loops_with_symmetric_padding(stride):
    p = L.conv2d_init(jax.random.PRNGKey(2), 3, 2, 4, INIT)
    assert p["w"].shape == (3, 3, 2, 4) and "b" not in p
    x = _rng(1).standard_normal((2, 6, 6, 2)).astype(np.float32)
    y = L.conv2d(p, x, stride=stride)
    ref = _conv_ref(x, np.asarray(p["w"]), stride, 1)
    assert y.shape == ref.shape == (2, 6 // stride, 6 // stride, 4)
    assert_close(y, ref, kind="reduction")


def test_conv2d_fan_in_counts_kernel_area():
    p = L.conv2d_init(jax.random.PRNGKey(3), 3, 16, 64, get_init("fan_in_normal"))
    expected = 1 / math.sqrt(3 * 3 * 16)
    assert_mc_agrees(float(jnp.std(p["w"])), expected / math.sqrt(2 * p["w"].size), expected)


def test_layer_and_rms_norm():
    x = (3.0 + 2.0 * _rng(2).standard_normal((4, 7, 16))).astype(np.float32)
    y = np.asarray(L.layer_norm(L.norm_init(16), x))
    assert_close(y.mean(-1), np.zeros((4, 7)), kind="reduction", scale=1.0)
    # layer norm's ε = 1e-6..1e-5 against a variance ≈ 4 moves the SD by ≈ 1e-6 < 1.2e-4
    assert_close(y.std(-1), np.ones((4, 7)), kind="reduction")
    p = {"scale": jnp.full((16,), 2.0), "bias": jnp.full((16,), 0.5)}
    assert_close(L.layer_norm(p, x), 2 * y + 0.5, kind="ops")
    r = np.asarray(L.rms_norm(L.norm_init(16, bias=False), x))
    ref = x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-6)
    assert_close(r, ref, kind="ops")


def test_group_norm_normalizes_each_group_of_each_example():
    x = (_rng(3).standard_normal((3, 4, 4, 8)) * 5 + np.arange(8)).astype(np.float32)
    y = np.asarray(L.group_norm(L.norm_init(8), x, groups=2))
    g = y.reshape(3, 4, 4, 2, 4)
    assert_close(g.mean(axis=(1, 2, 4)), np.zeros((3, 2)), kind="reduction", scale=1.0)
    assert_close(g.std(axis=(1, 2, 4)), np.ones((3, 2)), kind="reduction")
    # Batch-independent: normalizing one example alone gives the same result.
    assert_close(L.group_norm(L.norm_init(8), x[:1], groups=2), y[:1], kind="ops")
    with pytest.raises(ValueError, match="groups"):
        L.group_norm(L.norm_init(8), x, groups=3)


def test_batch_norm_uses_batch_statistics_per_channel():
    x = (_rng(4).standard_normal((5, 3, 3, 4)) * 3 + np.array([1, -2, 0, 7])).astype(np.float32)
    y = np.asarray(L.batch_norm(L.norm_init(4), x))
    assert_close(y.mean(axis=(0, 1, 2)), np.zeros(4), kind="reduction", scale=1.0)
    assert_close(y.std(axis=(0, 1, 2)), np.ones(4), kind="reduction")
    # It couples examples: the first example's output depends on the others.
    with pytest.raises(AssertionError, match="not close"):
        assert_close(L.batch_norm(L.norm_init(4), x[:2])[0], y[0], kind="reduction")


def _attention_ref(p, x, heads, causal):
    B, T, D = x.shape
    hd = D // heads
    def proj(name):
        return (x @ np.asarray(p[name]["w"]) + np.asarray(p[name]["b"])).reshape(B, T, heads, hd)
    q, k, v = proj("q"), proj("k"), proj("v")
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
    if causal:
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = np.einsum("bhqk,bkhd->bqhd", a, v).reshape(B, T, D)
    return o @ np.asarray(p["o"]["w"]) + np.asarray(p["o"]["b"])


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_softmax_formula(causal):
    p = L.attention_init(jax.random.PRNGKey(5), 8, INIT)
    p = jax.tree.map(lambda a: a + 0.1 if a.ndim == 1 else a, p)  # non-zero biases
    x = _rng(5).standard_normal((2, 5, 8)).astype(np.float32)
    y = L.multi_head_attention(p, x, 2, is_causal=causal)
    assert_close(y, _attention_ref(p, x, 2, causal), kind="reduction")


def test_attention_qk_transform_hook_is_applied():
    p = L.attention_init(jax.random.PRNGKey(6), 8, INIT)
    x = _rng(6).standard_normal((1, 4, 8)).astype(np.float32)
    # Zeroing q makes attention uniform: every output row is the mean of v, then o.
    y = L.multi_head_attention(p, x, 2, qk_transform=lambda q, k: (0 * q, k))
    v = x @ np.asarray(p["v"]["w"]) + np.asarray(p["v"]["b"])
    ref = v.mean(axis=1, keepdims=True) @ np.asarray(p["o"]["w"]) + np.asarray(p["o"]["b"])
    assert_close(y, np.broadcast_to(ref, y.shape), kind="reduction")
    with pytest.raises(ValueError, match="num_heads"):
        L.multi_head_attention(p, x, 3)


def test_patch_embed_is_a_linear_map_of_flattened_patches():
    p = L.patch_embed_init(jax.random.PRNGKey(7), 2, 3, 5, INIT)
    x = _rng(7).standard_normal((2, 4, 6, 3)).astype(np.float32)
    tok = np.asarray(L.patch_embed(p, x, 2))
    assert tok.shape == (2, 6, 5)
    # Token 4 is patch row 1, column 1 (row-major): pixels [2:4, 2:4].
    ref = np.einsum("buvc,uvco->bo", x[:, 2:4, 2:4, :], np.asarray(p["w"])) + np.asarray(p["b"])
    assert_close(tok[:, 4], ref, kind="reduction")
    with pytest.raises(ValueError, match="patch"):
        L.patch_embed(p, x[:, :3], 2)


def test_softmax_cross_entropy_and_pool():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = jnp.array([0, 2])
    loss, acc = L.softmax_cross_entropy(logits, labels)
    lp = np.asarray(jax.nn.log_softmax(logits))
    assert_close(np.float32(loss), -(lp[0, 0] + lp[1, 2]) / 2, kind="ops")
    assert float(acc) == 0.5
    x = _rng(8).standard_normal((2, 3, 3, 4))
    assert_close(L.global_avg_pool(x), x.mean(axis=(1, 2)), kind="ops")


def test_norms_keep_bfloat16_dtype():
    x = jnp.ones((2, 4, 4, 8), jnp.bfloat16) * jnp.arange(8, dtype=jnp.bfloat16)
    for y in (L.layer_norm(L.norm_init(8), x), L.rms_norm(L.norm_init(8), x),
              L.group_norm(L.norm_init(8), x, 4), L.batch_norm(L.norm_init(8), x)):
        assert y.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(y)))
