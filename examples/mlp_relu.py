"""A 3-layer ReLU MLP on Gaussian inputs with Gaussian targets (the canonical drift stack):
x → W1 → p1 → ReLU → W2 → p2 → ReLU → W3 → f, ℓ = ½‖f − y‖². The paper's setting; the
control every other example is read against."""

import jax
import jax.numpy as jnp

import driftlab

LOSS = "mse"
D, H, K = 32, 64, 10


def init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"w1": jax.random.normal(k1, (D, H)) / jnp.sqrt(D),
            "w2": jax.random.normal(k2, (H, H)) * jnp.sqrt(2.0 / H),
            "w3": jax.random.normal(k3, (H, K)) / jnp.sqrt(H)}


def apply(params, x):
    h1 = jax.nn.relu(driftlab.tap("layer0", x @ params["w1"]))
    h2 = driftlab.tap("layer1", h1 @ params["w2"], jax.nn.relu)
    return h2 @ params["w3"]


def batch(key, n):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, D)), jax.random.normal(ky, (n, K))
