"""The state a training step carries: a pytree of params, optimizer state and the
on-device non-finite guard, plus the number of steps done (a host int)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TrainState(NamedTuple):
    """``step`` steps done; ``params``/``opt_state``/``guard`` after them (device arrays,
    with a leading replica axis for a seed ensemble)."""

    params: object
    opt_state: object
    guard: dict
    step: int

    def advance(self, step_fn, batch, pin_ref, steps: int = 1) -> tuple["TrainState", object]:
        """Run one compiled program of ``steps`` steps on ``batch`` (for several steps: a
        tuple of their batches): (the state after them, what the program returned besides
        the state — the last step's logs or loss, or its packed record on a logged step)."""
        params, opt_state, out, guard = step_fn(self.params, self.opt_state, batch,
                                                np.int32(self.step), self.guard, pin_ref)
        return TrainState(params, opt_state, guard, self.step + steps), out
