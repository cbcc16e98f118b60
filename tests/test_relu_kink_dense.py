"""When does the ReLU kink term of the weak Hessian matter for the per-layer prediction?

Stein's lemma on the reader W1 of h0 = σ(p0) needs the weak Hessian of ℓ in z = p1 = h0 W1,
which for h1 = relu(p1) contains diag(δ(p1) ⊙ ∂ℓ/∂h1); autodiff drops it (relu'' = 0 a.e.).
For a per-example loss read by a Gaussian W2 (the MLP's head), averaging over W2 removes
it: at p1_{t,k} = 0 the unit is off, so y_t does not depend on the row W2_{k·}, which is
zero-mean and independent of ∂ℓ/∂y_t, and E[(W2 ∂ℓ/∂y_t)_k | p1_{t,k} = 0] = 0. With W2
held fixed it does not vanish (montecarlo/relu_kink.py estimates it where it does not
average out, e.g. ResNet's identity shortcuts and batch statistics).

Check, for a 2-hidden-layer ReLU MLP at one fixed p0 (x and W0 fixed), in float64 over
N = 20000 draws: q = s1²·relu'(p0)·Σ_t' T_tt' h0_t' with T from autodiff's Hessian against
g = ∂ℓ/∂p0, both averaged over the positive units of p0; z = mean(q − g)/SE over draws.
(a) drawing (W1, W2): agree, |z| ≤ z* = 4 (MSE and cross-entropy);
(b) drawing W1 only: the missing kink term is detected, |z| > z*;
(c) power: a scale error planted in q is detected on the draws of (a): 5% for MSE, 10% for
    cross-entropy, whose draws are noisier (expected z ≈ 7 for both).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest


D, H1, H2, K, B, N = 8, 16, 16, 4, 4, 20000
Z_STAR = 4.0


def _draws(loss_kind: str, redraw_w2: bool):
    """Per draw: (mean over p0 > 0 of g, of q), at fixed x, W0, targets."""
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(0)
        x = jax.random.normal(jax.random.fold_in(key, 1), (B, D), jnp.float64)
        w0 = jax.random.normal(jax.random.fold_in(key, 2), (D, H1), jnp.float64) * np.sqrt(2 / D)
        target = jax.random.normal(jax.random.fold_in(key, 3), (B, K), jnp.float64)
        label = jax.random.randint(jax.random.fold_in(key, 4), (B,), 0, K)
        w2_fixed = jax.random.normal(jax.random.fold_in(key, 5), (H2, K), jnp.float64)
        p0 = x @ w0
        h0, pos = jax.nn.relu(p0), (p0 > 0)
        s1, s2 = np.sqrt(2 / H1), np.sqrt(1 / H2)

        def loss_of_p1(p1, w2):
            y = jax.nn.relu(p1) @ w2
            if loss_kind == "mse":
                return 0.5 * jnp.sum((y - target) ** 2) / B
            return -jnp.mean(jax.nn.log_softmax(y)[jnp.arange(B), label])

        def one(k):
            k1, k2 = jax.random.split(k)
            w1 = jax.random.normal(k1, (H1, H2), jnp.float64) * s1
            w2 = (jax.random.normal(k2, (H2, K), jnp.float64) if redraw_w2 else w2_fixed) * s2
            g = jax.grad(lambda p: loss_of_p1(jax.nn.relu(p) @ w1, w2))(p0)
            hess = jax.hessian(loss_of_p1)(h0 @ w1, w2)  # (B, H2, B, H2)
            t = jnp.einsum("tkuk->tu", hess)  # T_tt' = Σ_k ∂²ℓ/∂z_tk ∂z_t'k
            q = s1**2 * pos * (t @ h0)
            return jnp.sum(g * pos) / jnp.sum(pos), jnp.sum(q * pos) / jnp.sum(pos)

        keys = jax.random.split(jax.random.PRNGKey(7), N)
        g, q = jax.lax.map(one, keys, batch_size=500)
        return np.asarray(g), np.asarray(q)


def _z(q, g):
    d = q - g
    return d.mean() / (d.std(ddof=1) / np.sqrt(d.size))


@pytest.mark.slow
@pytest.mark.parametrize("loss_kind, planted", [("mse", 1.05), ("ce", 1.10)])
def test_kink_term_averages_out_over_the_downstream_weights(loss_kind, planted):
    g, q = _draws(loss_kind, redraw_w2=True)
    assert abs(_z(q, g)) <= Z_STAR
    assert abs(_z(planted * q, g)) > Z_STAR  # power: the planted scale error is caught


@pytest.mark.slow
def test_kink_term_matters_with_the_downstream_weights_fixed():
    g, q = _draws("mse", redraw_w2=False)
    assert abs(_z(q, g)) > Z_STAR
