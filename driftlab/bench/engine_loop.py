"""The engine's training loop against the bare sequence of compiled steps it dispatches.

What is compared (one process, alternating blocks, medians over ``repeats``):

* **bare**: the compiled steps ``train()`` itself uses (``step_functions``' guarded plain
  step, and the guarded instrumented step on logged steps: s % log_every == 0 and the last
  step), in the same order, over the same steps, fed batches already on the device, with no
  host work between them; one ``block_until_ready`` at the end.
* **engine, steady state**: the wall time of a ``train()`` call minus that of the same
  call stopped after ``from_step`` steps (``train(cfg, stop_at=from_step)``, which also
  checkpoints and returns), over the ``steps - from_step`` steps the longer call runs in
  addition: steps from_step … steps-1 with all the engine's host work (batch sampling and
  transfer, per-weight statistics, host reads and JSON records on logged steps, progress
  bookkeeping) and none of the one-off work (initialization, compile-cache lookups, the
  final checkpoint, config and summary files), which both calls share. Timestamps inside
  the run would not do: a logged step's record is written a few steps after it.
* **engine, whole call**: total steps / wall time of the full ``train()`` call.

Both are compiled before timing (one ``train()`` call and one bare pass first).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np

from driftlab.bench.stable import stable_median
from driftlab.models.engine import nonfinite, sharding
from driftlab.models.arch.base import get_arch
from driftlab.models.engine.train import (TrainConfig, is_logged_step, model_config, step_functions,
                                   train)


class BareSteps:
    """The guarded compiled steps of ``cfg`` (the very functions ``train()`` uses, via
    ``step_functions``' cache) over pre-made device batches; ``run(first, last)`` dispatches
    steps first … last as the engine does and blocks at the end."""

    def __init__(self, cfg: TrainConfig):
        arch = get_arch(cfg.arch)
        mcfg, ds = arch.data(cfg.data, model_config(arch, cfg), cfg.seed)
        mesh = sharding.make_mesh()
        example = ds.sample("train", 0, cfg.batch_size, cfg.seed)
        self.cfg, self.fns = cfg, step_functions(arch, mcfg, cfg, mesh, example)
        params, opt_state = self.fns.initialize(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0))
        self.state = sharding.replicate((params, opt_state, nonfinite.init_guard()), mesh)
        self.batches = {s: sharding.shard_batch(ds.sample("train", s, cfg.batch_size, cfg.seed),
                                                mesh, cfg.batch_size) for s in range(cfg.steps)}
        self.steps = {s: np.int32(s) for s in range(cfg.steps)}
        self.pin_ref = None  # bench configs have no pins

    def run(self, first: int, last: int) -> None:
        params, opt_state, guard = self.state
        fns, cfg = self.fns, self.cfg
        for s in range(first, last + 1):
            step_fn = fns.logged_step if is_logged_step(s, cfg) else fns.guarded_plain_step
            params, opt_state, _, guard = step_fn(params, opt_state, self.batches[s],
                                                  self.steps[s], guard, self.pin_ref)
        jax.block_until_ready((params, opt_state, guard))
        self.state = params, opt_state, guard


def measure(cfg: TrainConfig, from_step: int, repeats: int) -> dict:
    """Median seconds per step of the bare steps from_step … steps-1, of the engine's
    steady state over the same steps, and of the whole ``train()`` call (see the module
    docstring); blocks alternate (bare, stopped call, full call) at least ``repeats``
    times and until the steady-state median is stable (``steady_s`` None and
    ``steady_note`` "too noisy: …" when it never is)."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} invalid; allowed: a positive integer")
    if not 0 < from_step < cfg.steps - 1:
        raise ValueError(f"from_step={from_step!r} invalid; allowed: 0 < from_step < "
                         f"steps - 1 = {cfg.steps - 1}")
    with tempfile.TemporaryDirectory(prefix="driftlab-engine-bench-") as tmp:
        cfg = replace(cfg, out=str(Path(tmp) / "run"), overwrite=True, progress=False,
                      checkpoint_minutes=0.0).validate()

        def engine(stop_at=None):
            t0 = time.perf_counter()
            train(cfg, stop_at=stop_at)
            return time.perf_counter() - t0

        engine()  # compiles everything train() runs
        bare = BareSteps(cfg)
        bare.run(0, cfg.steps - 1)  # compiles for the replicated outputs, warms the steps
        n = cfg.steps - from_step
        t_bare, t_whole = [], []

        def one_block() -> float:
            # One alternating block (bare, stopped call, full call); its steady-state draw.
            t0 = time.perf_counter()
            bare.run(from_step, cfg.steps - 1)
            t_bare.append((time.perf_counter() - t0) / n)
            stopped, full = engine(from_step), engine()
            t_whole.append(full / cfg.steps)
            return (full - stopped) / n

        # A difference of two wall times can be <= 0 under load: repeat until stable
        # or report None ("too noisy"), never a negative rate (driftlab/bench/stable.py).
        steady = stable_median(one_block, repeats)
    return {"bare_s": statistics.median(t_bare), "steady_s": steady.value,
            "steady_note": steady.note,
            "whole_s": statistics.median(t_whole), "window": (from_step, cfg.steps - 1),
            "steps": cfg.steps, "repeats": repeats, "load": os.getloadavg()[0]}
