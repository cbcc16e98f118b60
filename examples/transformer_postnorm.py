"""Two post-norm transformer blocks (the original transformer's placement) on Gaussian token
vectors, a cross-entropy readout per token on uniform labels:

    x ← LN(x + Attn(x));  x ← LN(x + ReLU(x W_in) W_out);  f = x W_head

The same file as transformer_prenorm.py with NORM = "post" (kept whole so that each example
is one self-contained model file). Taps: each block's MLP pre-activation, activation form."""

import jax
import jax.numpy as jnp

import driftlab

LOSS = "ce"
T, D, HEADS, K, BLOCKS = 8, 32, 4, 16, 2
NORM = "post"


def init(key):
    ks = iter(jax.random.split(key, 6 * BLOCKS + 1))
    dense = lambda a, b: jax.random.normal(next(ks), (a, b)) / jnp.sqrt(a)
    blocks = [{"w_q": dense(D, D), "w_k": dense(D, D), "w_v": dense(D, D), "w_o": dense(D, D),
               "w_in": dense(D, 4 * D), "w_out": dense(4 * D, D)} for _ in range(BLOCKS)]
    return {"blocks": blocks, "head": dense(D, K)}


def layer_norm(x):
    x = x - jnp.mean(x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-5)


def attention(b, x):
    n, t, _ = x.shape
    split = lambda z: z.reshape(n, t, HEADS, D // HEADS)
    q, k, v = split(x @ b["w_q"]), split(x @ b["w_k"]), split(x @ b["w_v"])
    s = jnp.einsum("nthd,nshd->nhts", q, k) / jnp.sqrt(D // HEADS)
    mask = jnp.tril(jnp.ones((t, t), bool))
    a = jax.nn.softmax(jnp.where(mask, s, -1e9), axis=-1)
    return jnp.einsum("nhts,nshd->nthd", a, v).reshape(n, t, D) @ b["w_o"]


def mlp(i, b, x):
    return driftlab.tap(f"block{i}.mlp", x @ b["w_in"], jax.nn.relu) @ b["w_out"]


def apply(params, x):
    for i, b in enumerate(params["blocks"]):
        if NORM == "pre":
            x = x + attention(b, layer_norm(x))
            x = x + mlp(i, b, layer_norm(x))
        else:
            x = layer_norm(x + attention(b, x))
            x = layer_norm(x + mlp(i, b, x))
    return (layer_norm(x) if NORM == "pre" else x) @ params["head"]


def batch(key, n):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, T, D)), jax.random.randint(ky, (n, T), 0, K)
