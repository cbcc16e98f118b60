"""A setting split into what fixes a compiled program and what is only data.

XLA compiles one program per distinct set of shapes and Python-level constants. A
BlockSetting mixes the two: the loss, the MSE reduction and the sizes (d, n, k) fix the
program's structure (its *shape class*), while the weight scales s1 = G/√d, s2 = G/√n,
W2's mean μ, the target coupling β and the activation are numbers a program can take as
arguments. Passing them as traced arguments lets one compiled program serve every check
of a shape class — every activation, gain and broken-assumption variant — instead of
one compile (seconds on CPU) per check.

The activation enters as a branch index into ``lax.switch`` over the registry's base
activations; XLA's conditional runs only the selected branch, so the traced form costs
one branch's work. Clipped activations pass their threshold c as an argument
(σ = min(σ_base, c)); unclipped ones take the branch without the min.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from driftlab.activations import parse_activation
from driftlab.theory.setting import BlockSetting

# Branch order of ``value_and_slope``: the unclipped registry activations, then clipped.
_UNCLIPPED = ("relu", "gelu", "silu", "tanh", "relu2", "gelu2", "identity")
_CLIPPED = ("clipped_relu2", "clipped_gelu2")
BRANCHES = _UNCLIPPED + _CLIPPED


@dataclass(frozen=True)
class ShapeClass:
    """The static part of a BlockSetting: what changes the compiled program."""

    loss: str
    reduction: str
    d_in: int
    width: int
    d_out: int

    @classmethod
    def of(cls, setting: BlockSetting) -> "ShapeClass":
        return cls(setting.loss, setting.reduction, setting.d_in, setting.width, setting.d_out)


def setting_params(setting: BlockSetting, dtype) -> dict:
    """The traced part of a BlockSetting as 0-d arrays of ``dtype``.

    act: branch index into BRANCHES; clip: the clipped activations' threshold (unused
    otherwise); s1, s2: weight scales; w2_mean: μ of W2; beta: target coupling β.
    """
    act = parse_activation(setting.act)
    clip = act.clip if act.clip is not None else float("inf")
    scalar = lambda v: jnp.asarray(v, dtype)
    return {"act": jnp.asarray(BRANCHES.index(act.name), jnp.int32), "clip": scalar(clip),
            "s1": scalar(setting.s1), "s2": scalar(setting.s2), "w2_mean": scalar(setting.w2_mean),
            "beta": scalar(setting.target_coupling)}


def _branch(name: str, clipped: bool):
    base = parse_activation(name)

    def value_and_slope(p, clip):
        fn = (lambda z: jnp.minimum(base(z), clip)) if clipped else base
        return jax.jvp(fn, (p,), (jnp.ones_like(p),))

    return value_and_slope


_BRANCH_FNS = tuple(_branch(n, False) for n in _UNCLIPPED) + tuple(
    _branch(n.removeprefix("clipped_"), True) for n in _CLIPPED)


def value_and_slope(params: dict, p):
    """(σ(p), σ'(p)) elementwise for the activation selected by ``params["act"]``;
    σ' by forward-mode autodiff of the registry activation (as the eager form)."""
    return jax.lax.switch(params["act"], _BRANCH_FNS, p, params["clip"].astype(p.dtype))


def _plain_branch(name: str, clipped: bool):
    base = parse_activation(name)
    return (lambda p, clip: jnp.minimum(base(p), clip)) if clipped else (lambda p, clip: base(p))


_PLAIN_FNS = tuple(_plain_branch(n, False) for n in _UNCLIPPED) + tuple(
    _plain_branch(n.removeprefix("clipped_"), True) for n in _CLIPPED)


def activation(params: dict, p):
    """σ(p) for the activation selected by ``params["act"]`` (differentiable, vmappable)."""
    return jax.lax.switch(params["act"], _PLAIN_FNS, p, params["clip"].astype(p.dtype))
