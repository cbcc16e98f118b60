"""The activation registry shared by the Monte Carlo estimators and every model.

Each activation is a pure function σ: R → R applied elementwise to a JAX array.
Names accept an optional clip threshold, e.g. ``clipped_relu2:8`` means
σ(z) = min(ReLU(z)², 8). The gradient of a clipped activation is zero where the
clip is active, as in the paper's reference code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

# JAX is imported inside the functions (they run at trace time, where the import is a
# dict lookup): the registry's names and parser are used by argparse help and config
# validation, which must not start JAX (``driftlab --help`` stays fast).

# The paper's value is not public; its code uses 50 and a companion library 15.
# We default to 15 and make it a parameter (``clipped_relu2:50``).
DEFAULT_CLIP = 15.0


def _gelu(z):
    import jax

    return jax.nn.gelu(z, approximate=False)


def _relu(z):
    import jax

    return jax.nn.relu(z)


def _silu(z):
    import jax

    return jax.nn.silu(z)


def _tanh(z):
    import jax.numpy as jnp

    return jnp.tanh(z)


def _square(z):
    import jax.numpy as jnp

    return jnp.square(z)


_BASE: dict[str, Callable] = {
    "relu": _relu,
    "gelu": _gelu,
    "silu": _silu,
    "tanh": _tanh,
    "relu2": lambda z: _square(_relu(z)),
    "gelu2": lambda z: _square(_gelu(z)),
    "identity": lambda z: z,
}
_CLIPPED = {"clipped_relu2": "relu2", "clipped_gelu2": "gelu2"}

NAMES: tuple[str, ...] = tuple(_BASE) + tuple(_CLIPPED)


@dataclass(frozen=True)
class Activation:
    """A named elementwise activation; ``clip`` is set only for the clipped ones."""

    name: str
    clip: float | None = None

    def __call__(self, z):
        if self.name in _CLIPPED:
            import jax.numpy as jnp

            return jnp.minimum(_BASE[_CLIPPED[self.name]](z), self.clip)
        return _BASE[self.name](z)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.clip:g}" if self.clip is not None else self.name


def parse_activation(spec: str) -> Activation:
    """Parse ``NAME`` or ``NAME:CLIP`` into an :class:`Activation`.

    Raises ValueError naming the valid names for an unknown name or a bad clip.
    """
    name, _, clip_text = spec.strip().partition(":")
    if name not in NAMES:
        raise ValueError(f"unknown activation {spec!r}; valid: {', '.join(NAMES)} "
                         f"(clipped ones accept ':C', e.g. clipped_relu2:15)")
    if name not in _CLIPPED:
        if clip_text:
            raise ValueError(f"activation {name!r} takes no clip threshold (got {spec!r})")
        return Activation(name)
    try:
        clip = float(clip_text) if clip_text else DEFAULT_CLIP
    except ValueError:
        raise ValueError(f"clip threshold in {spec!r} must be a number") from None
    if not (clip > 0 and math.isfinite(clip)):
        raise ValueError(f"clip threshold in {spec!r} invalid; allowed: a positive finite "
                         f"number (for no clip use {_CLIPPED[name]!r})")
    return Activation(name, clip)
