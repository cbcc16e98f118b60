"""Two pre-norm residual ReLU² MLP blocks as in modded-nanogpt's ``MLP``:

    x ← x + ReLU(RMSNorm(x) W_fc)² W_proj        (hidden width 4D),  f = RMSNorm(x) W_head

with Gaussian inputs and a cross-entropy readout on uniform labels. modded-nanogpt
zero-initializes W_proj; then ∂ℓ/∂h = 0 and g ≡ 0 exactly at init (E[g|p>0] = 0 with no
Monte Carlo needed), so this example draws W_proj ~ N(0, 1/4D) to ask the theorem's question.
The tap uses the activation form, so the per-layer Stein prediction applies (σσ′ = 2·ReLU(p)³)."""

import jax
import jax.numpy as jnp

import driftlab

LOSS = "ce"
D, K, BLOCKS = 64, 16, 2
H = 4 * D


def relu2(z):
    return jnp.square(jax.nn.relu(z))


def init(key):
    ks = jax.random.split(key, 2 * BLOCKS + 1)
    blocks = [{"w_fc": jax.random.normal(ks[2 * i], (D, H)) / jnp.sqrt(D),
               "w_proj": jax.random.normal(ks[2 * i + 1], (H, D)) / jnp.sqrt(H)}
              for i in range(BLOCKS)]
    return {"blocks": blocks, "head": jax.random.normal(ks[-1], (D, K)) / jnp.sqrt(D)}


def rms_norm(x):
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)


def apply(params, x):
    for i, b in enumerate(params["blocks"]):
        h = driftlab.tap(f"block{i}.mlp", rms_norm(x) @ b["w_fc"], relu2)
        x = x + h @ b["w_proj"]
    return rms_norm(x) @ params["head"]


def batch(key, n):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, D)), jax.random.randint(ky, (n,), 0, K)
