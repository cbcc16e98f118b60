"""When and what a run checkpoints, and the stop signal that forces one.

A :class:`Checkpointer` owns the run's ``checkpoint.npz`` (two generations,
models/engine/checkpoint.py): the schedule — every ``checkpoint_every`` steps, every
``checkpoint_minutes`` of wall time, and in any case every :data:`STEP_BOUND` steps while
the wall-time cadence is on and no step cadence is set, so that a run killed (SIGKILL)
before its first wall-time checkpoint loses at most that many steps — and the
SIGTERM/SIGINT handler (models/engine/interrupt.py), installed from setup to the summary, so a
signal at any point of the run leaves a checkpoint to resume from. A seed ensemble's
checkpoint holds every member (leading replica axis) and each member's guard, so a
member that diverged stays frozen at its last good state after a resume.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from driftlab.models.engine import checkpoint, interrupt, nonfinite, sharding

# Default step bound of the checkpoint cadence (see the module docstring): at most this
# many steps are lost by a SIGKILL, whatever the wall-time cadence.
STEP_BOUND = 1000


class Checkpointer:
    """Schedule, save and restore one run's checkpoint; ``stopping`` once a signal came."""

    def __init__(self, cfg, path: Path | None, identity: dict, replicas, main: bool,
                 signals: interrupt.StopOnSignal):
        self.cfg, self.path, self.identity = cfg, path, identity
        self.replicas, self.main = replicas, main
        self.last: int | None = None  # step of the last checkpoint written or resumed
        self._t_last = time.time()
        self._signals = signals  # installed by the caller, from setup to the summary

    @property
    def stopping(self) -> bool:
        return self._signals.signum is not None

    @property
    def signal_name(self) -> str | None:
        return self._signals.name

    def every(self) -> int:
        """The step cadence: ``checkpoint_every``, else :data:`STEP_BOUND` while the
        wall-time cadence is on, else none (0)."""
        if self.cfg.checkpoint_every:
            return self.cfg.checkpoint_every
        return STEP_BOUND if self.cfg.checkpoint_minutes > 0 else 0

    def due(self, done: int) -> bool:
        """Whether a checkpoint is due after ``done`` steps (one clock read)."""
        if self.path is None:
            return False
        every = self.every()
        return bool((every and done % every == 0) or (
            self.cfg.checkpoint_minutes > 0
            and time.time() - self._t_last >= 60.0 * self.cfg.checkpoint_minutes))

    def save(self, state, final_loss: list, diverged: dict) -> None:
        """Write ``state`` (every process reads it; process 0 writes)."""
        if self.path is not None:
            params = jax.tree_util.tree_map(sharding.to_host, state.params)
            opt = jax.tree_util.tree_map(sharding.to_host, state.opt_state)
            if self.main:
                checkpoint.save(self.path, params, opt, state.step, self._rng(state.step),
                                self.identity, self._extra(state, final_loss, diverged))
            self.last = state.step
        self._t_last = time.time()

    def _rng(self, step: int) -> np.ndarray:
        keys = [np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.PRNGKey(s), step)))
                for s in self.replicas.seeds]
        return keys[0] if not self.replicas.stacked else np.stack(keys)

    def _extra(self, state, final_loss: list, diverged: dict) -> dict:
        if not self.replicas.stacked:
            return {} if final_loss[0] is None else {"last_loss": final_loss[0]}
        guard = jax.tree_util.tree_map(sharding.to_host, state.guard)
        return {"last_loss": np.asarray([np.nan if v is None else v for v in final_loss]),
                "guard_ok": guard["ok"], "guard_bad_step": guard["bad_step"],
                "guard_bad_loss": guard["bad_loss"]}

    def restore(self, params, opt_state):
        """(params, opt_state, step, guard, final_loss, diverged) of the checkpoint
        (host arrays; the previous generation if the current one is damaged)."""
        params, opt_state, step, _, extra = checkpoint.load_latest(self.path, params,
                                                                   opt_state, self.identity)
        self.last = step
        n = self.replicas.n
        loss = np.atleast_1d(extra.get("last_loss", np.full(n, np.nan))).astype(float)
        final_loss = [None if not np.isfinite(v) else float(v) for v in loss]
        if "guard_ok" not in extra:
            return params, opt_state, step, self.initial_guard(), final_loss, {}
        guard = {"ok": extra["guard_ok"], "bad_step": extra["guard_bad_step"].astype(np.int32),
                 "bad_loss": extra["guard_bad_loss"].astype(np.float32)}
        diverged = {i: (int(guard["bad_step"][i]), float(guard["bad_loss"][i]))
                    for i in range(n) if not guard["ok"][i]}
        return params, opt_state, step, guard, final_loss, diverged

    def initial_guard(self) -> dict:
        guard = nonfinite.init_guard()
        return self.replicas.stack([guard] * self.replicas.n)
