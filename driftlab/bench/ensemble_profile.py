"""Where a seed ensemble's step time goes (``python -m driftlab.bench.ensemble_profile``).

A careful breakdown rather than a trace: the compiled steps ``train()`` runs between
logged steps (``step_functions``' guarded plain step, models/engine/steps.py) of one model at the
bench's cpu scale (driftlab/bench/ensemble.py), on batches already on the device, so that
no engine host work is counted. For the single run (no replica axis) and each
ensemble size S under each member loop (``vmap``, ``map``: models/engine/steps.py MEMBER_LOOP),
in one process, blocks alternating over them:

* ``step_s``: seconds per step of the bare compiled step (median of the blocks), and
  ``cpu_s``: the process's CPU seconds (all threads) per step, which other processes'
  load changes much less than the wall time (a step that uses both cores has
  cpu_s ≈ 2·step_s on an idle machine);
* ``null_s``: seconds per call of a compiled function with the step's inputs and outputs
  (params, optimizer state, batch, step, guard in; params-shaped, optimizer-state-shaped
  and guard out) and no arithmetic: the per-step dispatch and buffer cost, which vmapping
  pays once for S members;
* ``scan_s``: seconds per step of ``SCAN`` steps fused into one dispatch by
  ``lax.scan`` (what a fused multi-step loop could save on top);
* ``flops``: XLA's cost analysis of one step (all members: under lax.map, whose loop body
  cost analysis counts once, that body's count times S); ``flops / step_s`` against a
  jitted 1024² matmul's rate (``matmul_flops_s``) says how compute-bound the step is.

Per member, S sequential single runs cost S·step_s(1); the ensemble costs step_s(S). The
``bare_ratio`` S·step_s(1)/step_s(S) (``cpu_ratio``: the same in CPU seconds) bounds what the whole-call benchmark can show. If
``null_s`` is a small share of ``step_s(1)``, the step is compute-bound and vmapping can
remove only that share: ratio ≤ step_s(1) / (step_s(1) − null_s(1)) unless the batched
arithmetic itself runs faster per member.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.bench.ensemble import scale_fields
from driftlab.models.engine import ensemble, nonfinite, sharding
from driftlab.models.engine import steps as steps_module
from driftlab.models.arch.base import get_arch
from driftlab.models.engine.train import TrainConfig, model_config, step_functions

SCAN = 8  # steps per dispatch in the fused variant
SEED_FLOPS_TARGET = 0.45  # one GPT-nano seed's FLOP/s / the matmul rate (issue 34)


class Bare:
    """The guarded plain step of ``arch`` at ``scale`` for S members (None: single run)."""

    def __init__(self, arch_name: str, scale: str, members: int | None, loop: str | None = None):
        cfg = TrainConfig(progress=False, **scale_fields(arch_name, scale)).validate()
        arch = get_arch(arch_name)
        mcfg, ds = arch.data(cfg.data, model_config(arch, cfg), cfg.seed)
        mesh = sharding.make_mesh()
        example = ds.sample("train", 0, cfg.batch_size, cfg.seed)
        saved, steps_module.MEMBER_LOOP = steps_module.MEMBER_LOOP, loop
        try:
            fns = step_functions(arch, mcfg, cfg, mesh, example, members)
            self.loop = steps_module.member_loop(mesh, members) if members is not None else None
        finally:
            steps_module.MEMBER_LOOP = saved
        key = jax.random.PRNGKey(0)
        n = members or 1
        keys = key if members is None else jnp.stack([jax.random.fold_in(key, i)
                                                      for i in range(n)])
        params, opt = fns.initialize(keys)
        guard = nonfinite.init_guard()
        batch = example
        if members is not None:
            guard = ensemble.stack_members([guard] * n, axis=0)
            batch = ensemble.stack_members([example] * n, axis=0)
        self.state = jax.device_put((params, opt, guard))
        self.batch = jax.device_put(batch)
        self.step_fn = fns.guarded_plain_step
        self.members = n

        def null(p, o, b, s, g):  # the step's inputs and outputs, no arithmetic
            return (jax.tree_util.tree_map(jnp.zeros_like, p),
                    jax.tree_util.tree_map(jnp.zeros_like, o), g)

        def scanned(state, batches):
            def body(carry, b):
                p, o, g = carry
                p, o, _, g = fns.guarded_plain_step(p, o, b, np.int32(0), g, None)
                return (p, o, g), None
            return jax.lax.scan(body, state, batches)[0]

        self.null_fn, self.scan_fn = jax.jit(null), jax.jit(scanned)
        self.batches = jax.device_put(jax.tree_util.tree_map(
            lambda x: jnp.stack([x] * SCAN), batch))
        self.flops = self._flops()

    def _flops(self) -> float | None:
        p, o, g = self.state
        cost = self.step_fn.lower(p, o, self.batch, np.int32(0), g, None).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        # XLA's cost analysis counts a while loop's body once: under lax.map ("map") that
        # body is one member's step, so the program's FLOPs are members times it
        per_body = float(cost.get("flops", 0.0))
        return per_body * (self.members if self.loop == "map" else 1) or None

    def steps(self, n: int) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) per step over n steps."""
        p, o, g = self.state
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(n):
            p, o, _, g = self.step_fn(p, o, self.batch, np.int32(s), g, None)
        jax.block_until_ready((p, o, g))
        self.state = p, o, g
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n

    def nulls(self, n: int) -> float:
        p, o, g = self.state
        t0 = time.perf_counter()
        outs = [self.null_fn(p, o, self.batch, np.int32(s), g) for s in range(n)]
        jax.block_until_ready(outs)
        return (time.perf_counter() - t0) / n

    def scans(self, n: int) -> float:
        state = self.state
        t0 = time.perf_counter()
        for _ in range(max(1, n // SCAN)):
            state = self.scan_fn(state, self.batches)
        jax.block_until_ready(state)
        self.state = state
        return (time.perf_counter() - t0) / (max(1, n // SCAN) * SCAN)


def profile(arch: str, scale: str = "cpu", sizes=(1, 8), block_s: float = 1.0,
            repeats: int = 5, loops=steps_module.MEMBER_LOOPS) -> dict:
    """The breakdown of the module docstring: one entry "1" (the single run) and one
    "S <loop>" per ensemble size S and member loop (models/engine/steps.py MEMBER_LOOP)."""
    from driftlab.bench.timing import matmul_flops_per_s

    if not sizes or sizes[0] != 1:
        raise ValueError(f"sizes={sizes!r} invalid; allowed: 1 first (the single run every "
                         f"ratio is taken against), then ensemble sizes")
    bares = {"1": (1, Bare(arch, scale, None))}
    bares.update({f"{s} {lp}": (s, Bare(arch, scale, s, lp)) for s in sizes[1:] for lp in loops})
    n = {}
    for name, (_, b) in bares.items():  # compile, warm, then size the blocks to ~block_s
        b.steps(2), b.nulls(2), b.scans(SCAN)
        n[name] = max(SCAN, int(block_s / b.steps(3)[0]))
    times = {name: {"step_s": [], "cpu_s": [], "null_s": [], "scan_s": []} for name in bares}
    for _ in range(repeats):
        for name, (_, b) in bares.items():
            wall, cpu = b.steps(n[name])
            times[name]["step_s"].append(wall)
            times[name]["cpu_s"].append(cpu)
            times[name]["null_s"].append(b.nulls(n[name]))
            times[name]["scan_s"].append(b.scans(n[name]))
    out = {"arch": arch, "scale": scale, "matmul_flops_s": matmul_flops_per_s(3),
           "cpus": len(os.sched_getaffinity(0)), "load": os.getloadavg()[0], "entries": {}}
    for name, (size, b) in bares.items():
        m = {k: statistics.median(v) for k, v in times[name].items()}
        m["spread"] = max(times[name]["step_s"]) / min(times[name]["step_s"])
        m["flops"] = b.flops
        m["flops_s"] = b.flops / m["step_s"] if b.flops else None
        out["entries"][name] = m
    one = out["entries"]["1"]
    for name, (size, _) in bares.items():
        m = out["entries"][name]
        m["bare_ratio"] = size * one["step_s"] / m["step_s"]
        m["cpu_ratio"] = size * one["cpu_s"] / m["cpu_s"]
    return out


def flops_row(arch: str, scale: str, repeats: int, block_s: float = 0.5) -> dict:
    """One seed's FLOP/s (XLA's cost analysis of the single run's guarded plain step over
    its median seconds on device batches, :class:`Bare`) against a jitted 1024² matmul's
    FLOP/s, the two measured alternating in this run (``bench train --ensemble``)."""
    from driftlab.bench.timing import matmul_flops_per_s, row

    bare = Bare(arch, scale, None)
    bare.steps(2)  # compile and warm
    n = max(3, int(block_s / bare.steps(3)[0]))
    walls, matmul = [], []
    for _ in range(repeats):
        walls.append(bare.steps(n)[0])
        matmul.append(matmul_flops_per_s(1))
    step_s = statistics.median(walls)
    return row(f"one seed's step FLOP/s vs the matmul rate [{arch} {scale}]",
               bare.flops / step_s, "FLOP/s", "jitted 1024² float32 matmul",
               statistics.median(matmul), SEED_FLOPS_TARGET if arch == "gpt" else None,
               f"{bare.flops / 1e9:.3f} GFLOP per step in {step_s * 1e3:.1f} ms (median of "
               f"{repeats} blocks of {n}); load average {os.getloadavg()[0]:.1f}")



def bench_rows(args) -> list[dict]:
    """``bench train --ensemble …``: the ensemble rows (driftlab/bench/ensemble.py), then
    one seed's FLOP/s against the matmul rate per architecture."""
    from driftlab.bench.ensemble import cli_archs, cli_rows

    return cli_rows(args) + [flops_row(a, args.scale, args.repeats) for a in cli_archs(args)]

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftlab.bench.ensemble_profile")
    parser.add_argument("--arch", default="gpt", choices=("mlp", "gpt"))
    parser.add_argument("--scale", default="cpu", choices=("cpu", "tiny"))
    parser.add_argument("--sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = tuple(int(x) for x in args.sizes.split(","))
    print(json.dumps(profile(args.arch, args.scale, sizes, repeats=args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
