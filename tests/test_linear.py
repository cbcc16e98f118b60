"""models/arch/linear.py: x @ W with the same values and gradients as plain autodiff, and a weight
gradient that XLA:CPU compiles as a row-major dot (its reason to exist)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.arch.linear import linear


def _operands(dtype):
    kx, kw, kd = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (3, 5, 8), jnp.float32).astype(dtype)
    w = jax.random.normal(kw, (8, 6), jnp.float32).astype(dtype)
    dy = jax.random.normal(kd, (3, 5, 6), jnp.float32).astype(dtype)
    return x, w, dy


# tol (below): the same dots contracted in another layout: float32 ≈ 84 ε, bfloat16 ≈ 2.6 ε (its
# rounded inputs and output); the helper's "ops" atol of 64 ε·max|b| would be looser on small entries
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_value_and_gradients_match_plain_matmul(dtype, tol):
    x, w, dy = _operands(dtype)
    y, vjp = jax.vjp(linear, x, w)
    y_ref, vjp_ref = jax.vjp(lambda a, b: a @ b, x, w)
    # tol: the parametrized tol (another contraction layout, above)
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), rtol=tol)
    for got, ref in zip(vjp(dy), vjp_ref(dy)):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        # tol: the parametrized tol (another contraction layout, above)
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(ref, np.float32),
                                   rtol=tol, atol=tol)
    # and the check can fail: a wrong weight gradient is caught
    with pytest.raises(AssertionError):
        # tol: the same tol must catch a gradient off by a factor 2
        np.testing.assert_allclose(np.asarray(vjp(dy)[1], np.float32),
                                   np.asarray(vjp_ref(2 * dy)[1], np.float32), rtol=tol, atol=tol)


def _lhs_contracting_dims(f, *args) -> list[str]:
    hlo = jax.jit(f).lower(*args).compile().as_text()
    return re.findall(r" dot\(.*?lhs_contracting_dims=\{(\d+)\}", hlo)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU dot placement")
@pytest.mark.parametrize("d_in,d_out", [(32, 16), (16, 32)])  # dY or X transposed
def test_weight_gradient_is_a_row_major_dot_on_cpu(d_in, d_out):
    x = jnp.ones((64, d_in), jnp.float32)
    w = jnp.ones((d_in, d_out), jnp.float32)

    def weight_grad(fn):
        return lambda a, b: jax.grad(lambda b_: jnp.sum(fn(a, b_) ** 2))(b)

    # plain autodiff contracts x on axis 0 (the dot XLA:CPU leaves to Eigen) ...
    assert "0" in _lhs_contracting_dims(weight_grad(lambda a, b: a @ b), x, w)
    # ... linear's every dot contracts its left operand on the last axis
    dims = _lhs_contracting_dims(weight_grad(linear), x, w)
    assert dims and set(dims) == {"1"}


def test_forward_mode_and_hessian_vector_products_match_plain_matmul():
    """Forward over reverse (the per-layer estimator's HVPs) works through ``linear``."""
    x, w, _ = _operands(jnp.float32)
    v = jax.random.normal(jax.random.PRNGKey(3), w.shape)

    def hvp(fn):
        loss = lambda b: jnp.sum(jnp.tanh(fn(x, b)) ** 2)
        return jax.jvp(jax.grad(loss), (w,), (v,))[1]

    # tol: float32 forward-over-reverse through tanh² with dots in another layout (~84 ε)
    np.testing.assert_allclose(hvp(linear), hvp(lambda a, b: a @ b), rtol=1e-5, atol=1e-6)
    # tol: float32: the JVP's two dots summed in another order than x @ v + x @ w (~84 ε)
    np.testing.assert_allclose(jax.jvp(linear, (x, w), (x, v))[1], x @ v + x @ w, rtol=1e-5)
