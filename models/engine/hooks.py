"""Hooks: callbacks ``train(cfg, hooks=[...])`` calls with the state at the steps they ask for.

``Hook(steps=(100, 200), fn=f)`` calls ``f(step, state)`` once ``step`` steps are done,
with ``state`` a :class:`~driftlab.models.engine.train_state.TrainState` of host (numpy) arrays
(for a seed ensemble with the leading replica axis). A hook step is a sync point: every
deferred read up to it is finished first, so a non-finite step before it has already
stopped the run, and the hook never sees a diverged state of a single run. Steps done
before a resumed run's checkpoint are not replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax

from driftlab.models.engine import sharding
from driftlab.models.engine.train_state import TrainState


@dataclass(frozen=True)
class Hook:
    steps: tuple  # numbers of steps done at which to call ``fn``
    fn: Callable  # fn(step, state: TrainState of host arrays)

    def __post_init__(self):
        if not callable(self.fn) or not all(isinstance(s, int) and s >= 0 for s in self.steps):
            raise ValueError(f"Hook(steps={self.steps!r}, fn={self.fn!r}) invalid; allowed: "
                             f"non-negative int steps and a callable fn(step, state)")


class Hooks:
    """The hooks of one run."""

    def __init__(self, hooks=()):
        self.hooks = tuple(hooks)
        self._steps = {s for h in self.hooks for s in h.steps}

    def wants(self, done: int) -> bool:
        return done in self._steps

    def call(self, done: int, state: TrainState) -> None:
        if not self.wants(done):
            return
        host = TrainState(*jax.tree_util.tree_map(sharding.to_host, tuple(state[:3])), done)
        for h in self.hooks:
            if done in h.steps:
                h.fn(done, host)
