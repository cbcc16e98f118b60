"""Named weight-initialization schemes, so experiments can match the theory's assumptions.

Each scheme maps (key, shape, fan_in, fan_out) to an array. The theory assumes
``fan_in_normal``: i.i.d. N(0, gain²/fan_in), zero mean.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp


def fan_in_normal(key, shape, fan_in, fan_out, gain=1.0, dtype=jnp.float32):
    """W_ij ~ N(0, gain²/fan_in): the theory's setting (gain √2 is He/Kaiming normal)."""
    return gain / math.sqrt(fan_in) * jax.random.normal(key, shape, dtype)


def torch_default(key, shape, fan_in, fan_out, gain=1.0, dtype=jnp.float32):
    """PyTorch nn.Linear/nn.Conv default (kaiming_uniform with a=√5): U(±gain/√fan_in)."""
    bound = gain / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def xavier_normal(key, shape, fan_in, fan_out, gain=1.0, dtype=jnp.float32):
    """Glorot normal: N(0, 2·gain²/(fan_in + fan_out))."""
    return gain * math.sqrt(2.0 / (fan_in + fan_out)) * jax.random.normal(key, shape, dtype)


def gpt2_normal(key, shape, fan_in, fan_out, gain=1.0, dtype=jnp.float32):
    """nanoGPT/GPT-2 default: N(0, (0.02·gain)²), independent of fan-in."""
    return 0.02 * gain * jax.random.normal(key, shape, dtype)


SCHEMES = {
    "fan_in_normal": fan_in_normal,
    "torch_default": torch_default,
    "xavier_normal": xavier_normal,
    "gpt2_normal": gpt2_normal,
}
# Var of one entry, beside each scheme (the per-layer theorem's s_W²), and whether the
# entries are Gaussian (Stein's lemma exact) or not (the prediction then approximate).
VARIANCES = {
    "fan_in_normal": lambda gain, fan_in, fan_out: gain**2 / fan_in,
    "torch_default": lambda gain, fan_in, fan_out: gain**2 / (3 * fan_in),  # U(±b): b²/3
    "xavier_normal": lambda gain, fan_in, fan_out: 2 * gain**2 / (fan_in + fan_out),
    "gpt2_normal": lambda gain, fan_in, fan_out: (0.02 * gain) ** 2,
}
GAUSSIAN_SCHEMES = ("fan_in_normal", "xavier_normal", "gpt2_normal")


def variance(scheme: str, gain: float, fan_in: int, fan_out: int) -> float:
    """Var of one entry of a matrix drawn from ``scheme`` with ``gain``."""
    if scheme not in VARIANCES:
        raise ValueError(f"init scheme {scheme!r} has no known variance; valid: "
                         f"{', '.join(VARIANCES)}")
    return VARIANCES[scheme](gain, fan_in, fan_out)


def get_init(name: str, gain: float = 1.0):
    """Return init(key, shape, fan_in, fan_out) for a named scheme and gain."""
    if name not in SCHEMES:
        raise ValueError(f"unknown init scheme {name!r}; valid: {', '.join(SCHEMES)}")
    return partial(SCHEMES[name], gain=gain)
