"""Muon (MomentUm Orthogonalized by Newton–Schulz) as an optax transformation.

For a weight matrix W with gradient G_t (W stored (fan_in, fan_out), applied as x @ W):

    M_t = β·M_{t−1} + (1 − β)·G_t                      (momentum, an EMA; M_0 = 0)
    U_t = β·M_t + (1 − β)·G_t   (Nesterov)  or  M_t
    O_t = NS₅(U_t),  X₀ = U_t / (‖U_t‖_F + ε),  X ← aX + (bA + cA²)X,  A = XXᵀ
    Δ_t = s·O_t,  W ← W − η_t·Δ_t

with the quintic coefficients (a, b, c) = (3.4445, −4.7750, 2.0315) and 5 iterations.
NS₅ maps every singular value of U into roughly [0.7, 1.2] (it does not converge to the
exact polar factor UVᵀ; the coefficients trade that for speed), so every singular
direction of the update, the rank-one "mean" direction included, gets about the same size.

This is the reference algorithm of Keller Jordan's ``Muon`` (github.com/KellerJordan/Muon,
``muon_update``/``zeropower_via_newtonschulz5``), which modded-nanogpt's speedrun and
derived GPT-nano codes use. The older modded-nanogpt form B ← βB + G, U = G + βB is the
same up to the factor 1/(1 − β), which NS₅'s normalization removes.

Scaling ``s`` (the choice, documented): ``"jordan"`` (default) is the reference's
s = √max(1, fan_out/fan_in) (PyTorch's ``p.size(-2)/p.size(-1)`` for an (out, in)
weight), which keeps the update's spectral norm ≈ √(fan_out/fan_in)-proportional for wide
outputs; ``"moonlight"`` is s = 0.2·√max(fan_in, fan_out) (Liu et al. 2025,
arXiv 2502.16982), which makes the update's RMS ≈ 0.2 like AdamW's.

Why not ``optax.contrib.muon`` (optax 0.2.8): its momentum is bias-corrected (U is a
combination of M_t/(1 − β^{t+1}) and G_t/(1 − β^t)), so the *direction* of U, and hence the
step, differs from the reference for the first ~100 steps; and it routes parameters by
rank alone (the (V, D) embedding would get Muon), while the recipe routes by path and rank
(models/optim.py). NS₅ here runs in float32 (the reference runs it in bfloat16 on GPU);
ε = 1e-7 as in the reference.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

NS_COEFFS = (3.4445, -4.7750, 2.0315)
SCALINGS = ("jordan", "moonlight")
EPS = 1e-7


def newton_schulz5(u, steps: int = 5, eps: float = EPS):
    """NS₅(U) for a 2-D array U (m, n): Frobenius-normalize, then ``steps`` quintic
    iterations X ← aX + (bA + cA²)X, A = XXᵀ, on the wide orientation (rows ≤ cols)."""
    if u.ndim != 2:
        raise ValueError(f"newton_schulz5 needs a 2-D array, got shape {u.shape}")
    a, b, c = NS_COEFFS
    x = u.astype(jnp.float32)
    tall = x.shape[0] > x.shape[1]
    if tall:  # A = XXᵀ is then the smaller Gram matrix; NS(Xᵀ) = NS(X)ᵀ
        x = x.T
    x = x / (jnp.linalg.norm(x) + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).astype(u.dtype)


def update_scale(shape, scaling: str = "jordan") -> float:
    """The factor s of Δ = s·NS₅(U) for a (fan_in, fan_out) matrix (see the module doc)."""
    if scaling not in SCALINGS:
        raise ValueError(f"muon scaling={scaling!r} invalid; allowed: {', '.join(SCALINGS)}")
    fan_in, fan_out = shape
    if scaling == "jordan":
        return math.sqrt(max(1.0, fan_out / fan_in))
    return 0.2 * math.sqrt(max(fan_in, fan_out))


class MuonState(NamedTuple):
    """Muon's state: the momentum M (same tree as the parameters)."""

    momentum: optax.Updates


def scale_by_muon(beta: float = 0.95, ns_steps: int = 5, nesterov: bool = True,
                  scaling: str = "jordan", eps: float = EPS) -> optax.GradientTransformation:
    """G ↦ s·NS₅(U) per the module doc (no learning rate: chain a schedule after it).

    Every leaf it sees must be 2-D; routing (models/optim.py) sends only 2-D matrices here.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"muon scaling={scaling!r} invalid; allowed: {', '.join(SCALINGS)}")

    def init_fn(params):
        return MuonState(momentum=jax.tree_util.tree_map(
            lambda p: jnp.zeros(p.shape, jnp.float32), params))

    def update_fn(updates, state, params=None):
        del params
        momentum = jax.tree_util.tree_map(lambda m, g: beta * m + (1 - beta) * g,
                                          state.momentum, updates)
        if nesterov:
            blended = jax.tree_util.tree_map(lambda m, g: beta * m + (1 - beta) * g,
                                             momentum, updates)
        else:
            blended = momentum
        out = jax.tree_util.tree_map(
            lambda u: update_scale(u.shape, scaling) * newton_schulz5(u, ns_steps, eps),
            blended)
        return out, MuonState(momentum=momentum)

    return optax.GradientTransformation(init_fn, update_fn)


def muon(learning_rate, beta: float = 0.95, ns_steps: int = 5, nesterov: bool = True,
         scaling: str = "jordan", weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Muon with learning rate (or schedule) η and decoupled decay λ:
    W ← W − η_t·(s·NS₅(U_t) + λ·W)."""
    parts = [scale_by_muon(beta, ns_steps, nesterov, scaling)]
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))
