"""On-device non-finite guard for the training loop: no host sync per step.

Reading a "finite?" flag back after every step stalls the host until the step is done,
so the next step cannot be dispatched while this one runs. Instead the guard carries on
the device

  ok        all steps so far had a finite loss and finite new parameters
  bad_step  the first step that did not (−1 while ok)
  bad_loss  its loss

and a guarded step keeps the previous (params, opt_state) wherever ``ok`` is false. The
host reads the guard only at sync points (logged and checkpoint steps, the last step):
if it is not ok, the state on the device is exactly the state before ``bad_step`` —
the last good state — whatever steps ran after it, and nothing of the bad step has
been logged or saved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def init_guard() -> dict:
    """The guard before any step (host arrays; place them like the params): ok, no bad step."""
    return {"ok": np.asarray(True), "bad_step": np.asarray(-1, np.int32),
            "bad_loss": np.asarray(np.nan, np.float32)}


def guarded(train_step):
    """Wrap ``train_step(params, opt_state, batch, step, *extra) -> (params, opt_state, logs,
    finite)`` into ``(params, opt_state, batch, step, guard, *extra) -> (params, opt_state,
    logs, guard)``
    that keeps the previous state once a step is non-finite (see the module docstring).
    Jit the result: the selection then fuses into the step's own program."""

    def step_fn(params, opt_state, batch, step, guard, *extra):
        new_params, new_opt, logs, finite = train_step(params, opt_state, batch, step, *extra)
        ok = guard["ok"] & finite
        first_bad = guard["ok"] & ~finite
        keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)
        guard = {"ok": ok,
                 "bad_step": jnp.where(first_bad, jnp.asarray(step, jnp.int32), guard["bad_step"]),
                 "bad_loss": jnp.where(first_bad, jnp.asarray(logs["loss"], jnp.float32), guard["bad_loss"])}
        return keep(new_params, params), keep(new_opt, opt_state), logs, guard

    return step_fn


def read_guard(guard: dict, to_host=np.asarray) -> tuple[bool, int, float]:
    """(ok, bad_step, bad_loss) on the host: the one sync of a sync point. ``to_host``
    reads one (replicated) device array, e.g. models.sharding.to_host."""
    return bool(to_host(guard["ok"])), int(to_host(guard["bad_step"])), float(to_host(guard["bad_loss"]))
