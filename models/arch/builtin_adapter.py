"""The five built-in architectures as user model files (issue 33): ``driftlab inspect builtin:gpt``.

:func:`adapter` exposes ``arch`` at size ``size`` as the contract of models/arch/user_model.py:
``init(key) = arch.init(key, cfg)``; ``apply(params, x) = arch.apply(params, x, cfg,
driftlab.tap)`` (the built-in tap protocol ``tap(name, p, act)`` is driftlab.tap's activation
form, so every built-in tap is a user tap with its σ); ``batch_at(seed, step, n)`` is the
engine's stream ``ds.sample("train", step, n, seed)`` (x = y = that batch dict), so the
generic path sees the same inits and batches as ``driftlab train --seed s``;
``loss(outputs, y)`` is the architecture's batch loss L = ``arch.loss`` repeated for each
example: the generic path uses ℓᵢ only through their mean L (g = B·∂L/∂p, the engine's
units), so this is the built-in loss bit for bit, where a per-example split (vmapping
arch.loss over examples) changed float32 roundoff by 3e-4 relative on MP-SENet's
cancelling E[g|p>0]. The built-in model files are not changed.
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.models.arch.base import get_arch
from driftlab.tap import tap


def adapter(name: str, size: str = "tiny", act: str | None = None, data: str = "synthetic",
            **overrides) -> types.SimpleNamespace:
    """A module-like namespace (LOSS, init, apply, batch, batch_at, loss, arch, cfg) of the
    built-in ``name`` (ValueError naming the valid names for an unknown one)."""
    arch = get_arch(name)
    cfg = arch.config(size, act, **overrides) if act else arch.config(size, **overrides)
    cfg, _ = arch.data(data, cfg, 0)
    datasets: dict = {}

    def dataset(seed: int):
        if seed not in datasets:
            datasets[seed] = arch.data(data, cfg, seed)[1]
        return datasets[seed]

    def init(key):
        return jax.tree_util.tree_map(
            lambda x: x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x,
            arch.init(key, cfg))

    def apply(params, x):
        return arch.apply(params, x, cfg, tap)

    def batch_at(seed: int, step: int, n: int):
        b = dataset(seed).sample("train", step, n, seed)
        return b, b

    def batch(key, n: int):
        return batch_at(int(jax.random.randint(key, (), 0, 2**31 - 1)), 0, n)

    def loss(outputs, y):
        value = arch.loss(outputs, y, cfg)[0]
        return jnp.full((jax.tree_util.tree_leaves(y)[0].shape[0],), value)

    return types.SimpleNamespace(__name__=f"builtin:{name}", LOSS=None, init=init, apply=apply,
                                 batch=batch, batch_at=batch_at, loss=loss, arch=arch, cfg=cfg)


__all__ = ["adapter"]
