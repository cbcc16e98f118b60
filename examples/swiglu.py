"""Two pre-norm residual SwiGLU MLP blocks (LLaMA's FFN) on Gaussian inputs, MSE readout.

    u = RMSNorm(x);  h = SiLU(u W_gate) ⊙ (u W_up);  x ← x + h W_down;  f = RMSNorm(x) W_head

"Positive pre-activation" of a gated unit h = σ(a)·b: W_down reads h, so Stein's step on
W_down gives E[∂ℓ/∂h | h] = s²·h·E[T], and by the chain rule
    gate a:  E[g_a | a, b] = s²·σ(a)σ′(a)·b²·E[T]   (≥ 0 where a > 0: SiLU has σσ′ > 0 there)
    up   b:  E[g_b | a, b] = s²·σ(a)²·b·E[T]          (> 0 where b > 0: a linear unit gated by σ² ≥ 0)
so the theorem covers both taps, each on its own positive part, as long as E[T] ≥ 0 (the
final RMSNorm's curvature can make it negative). σ is SiLU; GeGLU (σ = GELU) has the same
structure. Both taps are marked in the identity form: the per-layer Stein prediction needs
h = σ(p) alone, which a gated unit is not."""

import jax
import jax.numpy as jnp

import driftlab

LOSS = "mse"
D, H, K, BLOCKS = 64, 128, 10, 2


def init(key):
    ks = jax.random.split(key, 3 * BLOCKS + 1)
    blocks = [{"w_gate": jax.random.normal(ks[3 * i], (D, H)) / jnp.sqrt(D),
               "w_up": jax.random.normal(ks[3 * i + 1], (D, H)) / jnp.sqrt(D),
               "w_down": jax.random.normal(ks[3 * i + 2], (H, D)) / jnp.sqrt(H)}
              for i in range(BLOCKS)]
    return {"blocks": blocks, "head": jax.random.normal(ks[-1], (D, K)) / jnp.sqrt(D)}


def rms_norm(x):
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)


def apply(params, x):
    for i, b in enumerate(params["blocks"]):
        u = rms_norm(x)
        gate = jax.nn.silu(driftlab.tap(f"block{i}.gate", u @ b["w_gate"]))
        up = driftlab.tap(f"block{i}.up", u @ b["w_up"])
        x = x + (gate * up) @ b["w_down"]
    return rms_norm(x) @ params["head"]


def batch(key, n):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, D)), jax.random.normal(ky, (n, K))
