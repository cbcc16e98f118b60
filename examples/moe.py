"""A top-1 mixture-of-experts MLP layer (Switch-Transformer routing) in a residual block:

    u = RMSNorm(x);  r = softmax(u W_router);  e* = argmax r
    x ← x + r_{e*} · ReLU(u W_in^{e*}) W_out^{e*};   f = RMSNorm(x) W_head   (MSE)

Every expert is computed densely and multiplied by its gate (r_e on the chosen expert, 0 on
the others), which is the same function. An example not routed to expert e gives
g = ∂ℓ/∂p^e = 0 exactly there, yet its p^e > 0 units count in E[g|p>0]'s denominator: the
expert sees the theorem's bias diluted by its load (~1/E). The taps are in the activation
form. W_out^e reads ReLU(p^e) and its product is then scaled by the gate, which does not
depend on W_out^e, so ℓ depends on W_out^e only through z = ReLU(p^e) W_out^e: Stein's step
holds and the per-layer prediction applies (the reader check ∇_h ℓ = ∇_z ℓ Wᵀ passes, the
per-example gate scaling both sides)."""

import jax
import jax.numpy as jnp

import driftlab

LOSS = "mse"
D, H, E, K = 32, 64, 4, 10


def init(key):
    ks = jax.random.split(key, 2 * E + 2)
    experts = [{"w_in": jax.random.normal(ks[2 * e], (D, H)) / jnp.sqrt(D),
                "w_out": jax.random.normal(ks[2 * e + 1], (H, D)) / jnp.sqrt(H)} for e in range(E)]
    return {"router": jax.random.normal(ks[-2], (D, E)) / jnp.sqrt(D), "experts": experts,
            "head": jax.random.normal(ks[-1], (D, K)) / jnp.sqrt(D)}


def rms_norm(x):
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)


def apply(params, x):
    u = rms_norm(x)
    r = jax.nn.softmax(u @ params["router"], axis=-1)
    gate = r * jax.nn.one_hot(jnp.argmax(r, axis=-1), E)
    for e, ex in enumerate(params["experts"]):
        h = driftlab.tap(f"expert{e}", u @ ex["w_in"], jax.nn.relu)
        x = x + gate[:, e:e + 1] * h @ ex["w_out"]
    return rms_norm(x) @ params["head"]


def batch(key, n):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, D)), jax.random.normal(ky, (n, K))
