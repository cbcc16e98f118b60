"""Muon (MomentUm Orthogonalized by Newton–Schulz) as an optax transformation.

For a weight matrix W with gradient G_t (W stored (fan_in, fan_out), applied as x @ W), with
the momentum form ``momentum`` ("ema" or "sum"):

    ema:  M_t = β·M_{t−1} + (1 − β)·G_t,   U_t = β·M_t + (1 − β)·G_t   (Nesterov) or M_t
    sum:  M_t = β·M_{t−1} + G_t,           U_t = G_t + β·M_t           (Nesterov) or M_t
    O_t = NS₅(U_t),  X₀ = U_t / (‖U_t‖_F + ε),  X ← aX + (bA + cA²)X,  A = XXᵀ
    Δ_t = s·O_t,  W ← W − η_t·Δ_t

(M_0 = 0), with the quintic coefficients (a, b, c) = (3.4445, −4.7750, 2.0315) and 5
iterations. NS₅ maps every singular value of U into roughly [0.7, 1.2] (it does not converge
to the exact polar factor UVᵀ; the coefficients trade that for speed), so every singular
direction of the update, the rank-one "mean" direction included, gets about the same size.

Two codes define it. ``"ema"`` is Keller Jordan's reference ``Muon``
(github.com/KellerJordan/Muon, ``muon_update``: ``momentum.lerp_(grad, 1 − β)``,
``grad.lerp_(momentum, β)``). ``"sum"`` is the older modded-nanogpt form that the paper's
code runs (On-Point-RND/BugOrFeature, models/muon_optim.py: ``buf.mul_(β).add_(g)``,
``g.add(buf, alpha=β)``). The two differ by the factor 1/(1 − β) = 20 on U, which NS₅'s
normalization removes up to ε: relative to ‖U‖ the ε of "ema" is 20× larger.

Scaling ``s`` (``scaling``, by name):

* ``"jordan"``: the reference's s = √max(1, fan_out/fan_in) (PyTorch's
  ``p.size(-2)/p.size(-1)`` for an (out, in) weight);
* ``"moonlight"``: s = 0.2·√max(fan_in, fan_out) (Liu et al. 2025, arXiv 2502.16982), which
  makes the update's RMS ≈ 0.2 like AdamW's;
* ``"paper"``: the paper's code, s = √max(fan_in, fan_out); a fused qkv matrix
  (fan_out = 3·fan_in; PyTorch's ``g.size(0) == 3 * g.size(1)``) is split along fan_out into
  three fan_in × fan_in blocks, each orthogonalized on its own and scaled by √fan_in.
  driftlab's GPT keeps w_q, w_k, w_v as separate D × D matrices, which get √D each: the
  same step as the paper's split. At width D the paper's block steps are √D (qkv, attention
  output, MLP up) and 2√D (MLP down, 4D × D) times the reference's: 8× and 16× at D = 64.

Newton–Schulz precision (``ns_dtype``): ``"float32"`` runs NS₅ in float32. ``"bfloat16"``
reproduces the paper's ``zeropower_via_newtonschulz5``, which casts to bfloat16 even on CPU:
X₀ = bf16(bf16(U)/(‖U‖_F + ε)) with the norm of the float32 U, and every product and sum of
the iteration rounded to bfloat16 as PyTorch's eager ops do (matrix products accumulate in
float32 and round once; ``c * A @ B`` is (c·A)@B, Python's left-to-right order), on the
paper's (out, in) orientation (for a square U, NS(Uᵀ) ≠ NS(U)ᵀ in bfloat16). With the
"sum" momentum's roundings kept as PyTorch's (β·M rounds before + G; the Nesterov
G + β·M is one fused multiply-add there as here), the step matches a NumPy transcription
of the paper's code bit for bit (tests/test_paper_muon_reference.py). float32 and bfloat16
differ by ~5–15% of the update: the paper's own rounding noise.

Why not ``optax.contrib.muon`` (optax 0.2.8): its momentum is bias-corrected (U is a
combination of M_t/(1 − β^{t+1}) and G_t/(1 − β^t)), so the *direction* of U, and hence the
step, differs from either code for the first ~100 steps; and it routes parameters by rank
alone (the (V, D) embedding would get Muon), while the recipe routes by path and rank
(models/engine/optim.py). ε = 1e-7 as in both codes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from driftlab.names import MOMENTUM_FORMS, NS_DTYPES, SCALINGS  # noqa: F401 (declared in driftlab/names.py)

NS_COEFFS = (3.4445, -4.7750, 2.0315)
EPS = 1e-7


def _check(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"muon {field}={value!r} invalid; allowed: {', '.join(allowed)}")


def _bf16(x):
    """x rounded to bfloat16 (round to nearest even), kept in float32."""
    return x.astype(jnp.bfloat16).astype(jnp.float32)


def _mm(x, y):
    """float32 matrix product at full precision (no TF32 on GPUs): bfloat16-valued inputs
    then give PyTorch's bf16 GEMM up to the float32 accumulation order."""
    return jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST)


def _newton_schulz5_bf16(u, steps: int, eps: float):
    """The paper's zeropower_via_newtonschulz5, op by op in bfloat16 (see the module doc),
    on the paper's (out, in) layout Uᵀ: in bfloat16 NS(Uᵀ) ≠ NS(U)ᵀ for a square U (the Gram
    matrix XXᵀ then differs from XᵀX), so the orientation is the paper's."""
    a, b, c = NS_COEFFS
    g = u.astype(jnp.float32).T
    x = _bf16(_bf16(g) / (jnp.linalg.norm(g) + eps))
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = _bf16(_mm(x, x.T))
        b_mat = _bf16(_mm(gram, x))
        x = _bf16(_bf16(_bf16(a * x) + _bf16(b * b_mat)) + _bf16(_mm(_bf16(c * gram), b_mat)))
    return (x.T if tall else x).T.astype(u.dtype)


def newton_schulz5(u, steps: int = 5, eps: float = EPS, dtype: str = "float32"):
    """NS₅(U) for a 2-D array U (m, n): Frobenius-normalize, then ``steps`` quintic
    iterations X ← aX + (bA + cA²)X, A = XXᵀ, on the wide orientation (rows ≤ cols), in
    ``dtype`` ("float32", or "bfloat16" as the paper's code rounds it)."""
    if u.ndim != 2:
        raise ValueError(f"newton_schulz5 needs a 2-D array, got shape {u.shape}")
    _check("ns_dtype", dtype, NS_DTYPES)
    if dtype == "bfloat16":
        return _newton_schulz5_bf16(u, steps, eps)
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
    """The factor s of Δ = s·NS₅(U) for a (fan_in, fan_out) matrix (see the module doc;
    for ``"paper"`` the factor of an unsplit matrix; :func:`orthogonalized_update` splits
    a fused qkv first)."""
    _check("scaling", scaling, SCALINGS)
    fan_in, fan_out = shape
    if scaling == "jordan":
        return math.sqrt(max(1.0, fan_out / fan_in))
    if scaling == "paper":
        return math.sqrt(max(fan_in, fan_out))
    return 0.2 * math.sqrt(max(fan_in, fan_out))


def is_fused_qkv(shape) -> bool:
    """The paper's qkv rule for a (fan_in, fan_out) matrix: fan_out = 3·fan_in."""
    return shape[1] == 3 * shape[0]


def orthogonalized_update(u, scaling: str = "jordan", ns_steps: int = 5, eps: float = EPS,
                          ns_dtype: str = "float32"):
    """Δ = s·NS₅(U) for one matrix; ``"paper"`` splits a fused qkv (fan_in, 3·fan_in) into
    three (fan_in, fan_in) blocks, Δ = [√fan_in·NS₅(U_q), √fan_in·NS₅(U_k), √fan_in·NS₅(U_v)]."""
    if scaling == "paper" and is_fused_qkv(u.shape):
        d = u.shape[0]
        blocks = [newton_schulz5(u[:, i * d:(i + 1) * d], ns_steps, eps, ns_dtype)
                  for i in range(3)]
        return math.sqrt(d) * jnp.concatenate(blocks, axis=1)
    return update_scale(u.shape, scaling) * newton_schulz5(u, ns_steps, eps, ns_dtype)


class MuonState(NamedTuple):
    """Muon's state: the momentum M (same tree as the parameters)."""

    momentum: optax.Updates


def scale_by_muon(beta: float = 0.95, ns_steps: int = 5, nesterov: bool = True,
                  scaling: str = "jordan", eps: float = EPS, momentum: str = "ema",
                  ns_dtype: str = "float32") -> optax.GradientTransformation:
    """G ↦ s·NS₅(U) per the module doc (no learning rate: chain a schedule after it).

    Every leaf it sees must be 2-D; routing (models/engine/optim.py) sends only 2-D matrices here.
    The state is the momentum M in float32 whatever the form, so a checkpoint's layout
    does not depend on it.
    """
    _check("scaling", scaling, SCALINGS)
    _check("momentum", momentum, MOMENTUM_FORMS)
    _check("ns_dtype", ns_dtype, NS_DTYPES)
    # "ema" weights G by (1 − β); "sum" by 1 (the paper's buf·β + g, g + β·buf).
    w_g = 1 - beta if momentum == "ema" else 1.0
    if momentum == "sum":
        # PyTorch's buf.mul_(β).add_(g) is two ops, two roundings; left alone XLA fuses
        # β·M + G into one FMA. The barrier keeps the product its own op. (g.add(buf,
        # alpha=β) is one fused multiply-add in PyTorch, as XLA computes β·M + G below.)
        def accumulate(m, g):
            return jax.lax.optimization_barrier(beta * m) + g
    else:
        def accumulate(m, g):
            return beta * m + w_g * g

    def init_fn(params):
        return MuonState(momentum=jax.tree_util.tree_map(
            lambda p: jnp.zeros(p.shape, jnp.float32), params))

    def update_fn(updates, state, params=None):
        del params
        mom = jax.tree_util.tree_map(accumulate, state.momentum, updates)
        if nesterov:
            blended = jax.tree_util.tree_map(lambda m, g: beta * m + w_g * g, mom, updates)
        else:
            blended = mom
        out = jax.tree_util.tree_map(
            lambda u: orthogonalized_update(u, scaling, ns_steps, eps, ns_dtype), blended)
        return out, MuonState(momentum=mom)

    return optax.GradientTransformation(init_fn, update_fn)


def muon(learning_rate, beta: float = 0.95, ns_steps: int = 5, nesterov: bool = True,
         scaling: str = "jordan", weight_decay: float = 0.0, momentum: str = "ema",
         ns_dtype: str = "float32") -> optax.GradientTransformation:
    """Muon with learning rate (or schedule) η and decoupled decay λ:
    W ← W − η_t·(s·NS₅(U_t) + λ·W)."""
    parts = [scale_by_muon(beta, ns_steps, nesterov, scaling, momentum=momentum,
                           ns_dtype=ns_dtype)]
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))
