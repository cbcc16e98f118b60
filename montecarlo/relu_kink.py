"""ReLU with its Dirac second derivative made estimable: σ'' = δ(p) replaced by a narrow kernel.

Stein's lemma E[W F(W)] = s² E[∂F/∂W] needs the weak derivative of F = ∂ℓ/∂z. When a ReLU
σ(p_u) = max(p_u, 0) lies downstream of z, F contains σ'(p_u) = 1[p_u > 0], whose weak
derivative is δ(p_u)·∂p_u/∂W: ∇²_z ℓ has a singular part Σ_u (∂ℓ/∂σ_u) δ(p_u) ∇_z p_u ∇_z p_uᵀ
that autodiff (σ'' = 0 almost everywhere) drops. Its expectation is finite (the density of p_u
at 0 times a conditional mean) and is estimated here by replacing δ with the N(0, τ²) density
φ_τ in σ'' only: the forward value and σ' stay exact, so measured gradients are unchanged,
and the Hessian-vector products gain Σ_u (∂ℓ/∂σ_u) φ_τ(p_u) (∇p_u·v) ∇p_u. Bias: O(τ²)
when the density of p_u and E[· | p_u = u] are smooth at 0 (a symmetric kernel), but not
negligible for a wide kernel (MLP, README: τ = 0.2 left over half of the error); variance ∝ 1/τ.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

KINK_WIDTH = 0.1  # τ in units of p (O(1) at init); its bias is below the ResNet rows' SE (README)


def smoothed_step(width: float, mass: float = 1.0):
    """1[p > 0] whose derivative is mass·φ_width(p), the Gaussian density of SD ``width``
    (mass 1: a kernel for δ(p)); width 0 gives autodiff's derivative 0."""
    norm = mass / (width * math.sqrt(2 * math.pi)) if width > 0 else 0.0

    @jax.custom_jvp
    def step(p):
        return (p > 0).astype(p.dtype)

    @step.defjvp
    def _step_jvp(primals, tangents):
        (p,), (t,) = primals, tangents
        if width == 0:
            return step(p), jnp.zeros_like(t)
        return step(p), norm * jnp.exp(-0.5 * (p / width) ** 2) * t

    return step


def relu_with_kink_kernel(width: float = KINK_WIDTH, mass: float = 1.0):
    """max(p, 0) with exact value and first derivative, and second derivative
    mass·φ_width(p) (``mass`` ≠ 1 only to plant an error in a power check)."""
    if not width > 0:
        raise ValueError(f"width={width!r} invalid; allowed: a positive number")
    step = smoothed_step(width, mass)

    @jax.custom_jvp
    def relu(p):
        return jnp.maximum(p, 0)

    @relu.defjvp
    def _relu_jvp(primals, tangents):
        (p,), (t,) = primals, tangents
        return relu(p), step(p) * t

    return relu


__all__ = ["relu_with_kink_kernel", "KINK_WIDTH"]
