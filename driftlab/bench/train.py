"""Training benchmarks (``driftlab bench train``): the engine's jitted step against baselines.

Rows, all measured in one process (ratios compare runs taken side by side):

* ``instrumented vs plain [arch size]``: throughput of the engine's training step
  (models/engine/train.py ``step_functions``) with ``instrument=True`` (per-tap activation
  and gradient statistics in the same pass) against ``instrument=False``; value and
  baseline are tokens/s for GPT-nano and samples/s otherwise; target ≥ 0.9 (< 10%
  overhead). Both steps see the same batch, so data loading is excluded.
* ``instrumented (log every 10) vs plain [arch size]``: the same, as the engine runs it —
  tap statistics only on logged steps (1 in 10, the default), the plain update
  otherwise; derived from the two step times of the row above.
* ``GPT-nano JAX vs PyTorch [size]``: the uninstrumented JAX step against the same
  network in eager PyTorch (driftlab/bench/torch_gpt.py: same config, same initial
  weights, AdamW with the same hyper-parameters, same batch; the faster of
  ``torch.set_num_threads(1)`` and one thread per core this process may use, since
  eager PyTorch's OpenMP threads collapse on a shared machine); target ≥ 1. Skipped with a note if torch is
  not importable.
* ``GPT-nano model FLOP/s vs matmul [size]``: model FLOPs per second
  (gpt.flops_per_token × tokens/s) against a large float32 matmul timed in the same
  run (the practical peak of this machine): ratio = MFU against that peak.
* ``engine loop, steady state vs bare mixed steps [arch size]`` (MLP always, GPT in full
  runs): steps/s of the loop of a ``train()`` call between a logged step and the end (read
  from its metrics records: batch sampling and transfer, per-weight statistics, host reads
  and records on logged steps) against the same compiled steps dispatched back to back on
  device batches (plain steps, the instrumented step every 10th); target >= 0.95. A second
  row compares the whole ``train()`` call (initialization and file writes included).
  See driftlab/bench/engine_loop.py.
* ``ensemble S=… vs S sequential runs [arch tiny]`` (only with ``--ensemble 1,4,8,16``):
  seed-steps/s of one S-member seed ensemble (one compiled program) against S
  single-seed ``train()`` calls of the same cells; compile time reported apart; target
  >= 3 at S = 8. See driftlab/bench/ensemble.py.

Timing: each step function is compiled and warmed up (the first call after
initialization also recompiles for the replicated output sharding), a block length
is calibrated to ``BLOCK_SECONDS``, then ``repeats`` blocks of each competitor are
timed alternately (so load on a shared machine hits both alike), each ending in
``block_until_ready``; the median block gives the rate.

``--quick`` runs the tiny MLP and GPT-nano only (the other architectures compile for
tens of seconds each on two cores); the full run covers MLP, ResNet, ViT, GPT-nano
and MP-SENet at ``tiny`` and ``small``.

GPU MFU at paper size (GPT-nano 124M, bfloat16, sequence 2048)::

    python -m driftlab.bench.train --gpu-paper                 # on the GPU machine
    python -m driftlab.bench.train --gpu-paper --size tiny     # the same code path on a CPU

which calls :func:`gpu_paper_mfu` and prints one JSON object (tokens/s, MFU against
the device's nominal dense bf16 peak and against a measured matmul, instrumentation
overhead).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.bench import engine_loop
from driftlab.bench import timing
from driftlab.bench.timing import calibrate, cores, matmul_flops_per_s, time_alternating
from driftlab.models.arch import gpt
from driftlab.models.engine import sharding
from driftlab.models.arch.base import get_arch
from driftlab.models.engine.train import TrainConfig, model_config, step_functions

# Global batch per architecture (the rows' unit is per sample or per token, so the
# choice only sets how much work one step does).
BATCH = {"mlp": 64, "resnet": 16, "vit": 16, "gpt": 16, "mpsenet": 2}
ARCHS = ("mlp", "resnet", "vit", "gpt", "mpsenet")
QUICK_ARCHS = ("mlp", "gpt")
ENGINE_STEPS = {"mlp": 1000, "gpt": 60}  # steps of the train() calls of the engine rows
ENGINE_TARGET = 0.95
BLOCK_SECONDS = {True: 0.15, False: 1.0}  # target length of a timed block (quick, full)
OVERHEAD_TARGET = 0.9
TORCH_TARGET = 1.0

# Nominal dense (no sparsity) bfloat16 peak FLOP/s per device; the first matching
# substring of ``jax.devices()[0].device_kind`` wins, so the specific names come first.
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100", 989.4e12),
    ("H200", 989.4e12),
    ("GH200", 989.4e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5p", 459e12),
)


# --------------------------------------------------------------------------- step runner


@dataclass
class StepRunner:
    """The engine's jitted training step on a fixed batch, with its state carried along.

    ``run(n)`` performs n optimizer steps and blocks until the last one is done; each
    step processes ``units_per_step`` tokens (GPT) or samples (everything else).
    """

    label: str
    train_step: object
    params: object
    opt_state: object
    batch: dict
    units_per_step: int
    unit: str
    mcfg: object
    cfg: TrainConfig

    def run(self, n: int) -> None:
        step = jnp.asarray(0, jnp.int32)
        p, o = self.params, self.opt_state
        for _ in range(n):
            p, o, _, _ = self.train_step(p, o, self.batch, step)
        jax.block_until_ready((p, o))
        self.params, self.opt_state = p, o


def make_runner(arch_name: str, size: str, instrument: bool, *, batch_size: int | None = None,
                dtype: str = "float32", steps: int = 100, example: dict | None = None,
                mcfg=None) -> StepRunner:
    """A :class:`StepRunner` for ``arch_name`` at ``size`` built exactly as ``train()`` builds
    its step (``step_functions``; synthetic data from ``arch.data``).

    ``example``/``mcfg`` replace the data pipeline's batch and model config (the GPU
    paper benchmark feeds random tokens over the full 50257-token vocabulary).
    """
    bs = BATCH[arch_name] if batch_size is None else batch_size
    cfg = TrainConfig(arch=arch_name, size=size, batch_size=bs, instrument=instrument,
                      dtype=dtype, steps=steps, progress=False).validate()
    arch = get_arch(arch_name)
    if mcfg is None:
        mcfg, ds = arch.data(cfg.data, model_config(arch, cfg), cfg.seed)
        example = ds.sample("train", 0, bs, cfg.seed)
    mesh = sharding.make_mesh()
    sharding.check_batch_size(bs, mesh)
    fns = step_functions(arch, mcfg, cfg, mesh, example)
    params, opt_state = fns.initialize(jax.random.PRNGKey(cfg.seed))
    params, opt_state = sharding.replicate((params, opt_state), mesh)
    batch = sharding.shard_batch(example, mesh, bs)
    if arch_name == "gpt":
        units, unit = int(np.size(example["x"])), "tokens/s"
    else:
        units, unit = bs, "samples/s"
    label = f"{arch_name} {size}" + ("" if dtype == "float32" else f" {dtype}")
    return StepRunner(label, fns.train_step, params, opt_state, batch, units, unit, mcfg, cfg)


def _warm(runner_run) -> None:
    # Two single steps: the first compiles for the freshly initialized inputs, the
    # second for the replicated outputs the step hands back.
    runner_run(1)
    runner_run(1)


# --------------------------------------------------------------------------- MFU


def gpt_mfu(cfg: gpt.GPTConfig, tokens_per_s: float, peak_flops: float,
            seq_len: int | None = None) -> float:
    """Model FLOPs utilization: tokens/s × gpt.flops_per_token(cfg, seq_len) / peak FLOP/s.

    flops_per_token counts 6·N plus the attention products (forward and backward), so
    this is the PaLM/nanoGPT MFU; ``seq_len`` defaults to ``cfg.block_size``.
    """
    if not (tokens_per_s > 0 and np.isfinite(tokens_per_s)):
        raise ValueError(f"tokens_per_s={tokens_per_s!r} invalid; allowed: a positive number")
    if not (peak_flops > 0 and np.isfinite(peak_flops)):
        raise ValueError(f"peak_flops={peak_flops!r} invalid; allowed: a positive number")
    return tokens_per_s * gpt.flops_per_token(cfg, seq_len) / peak_flops


def nominal_peak_flops(device_kind: str) -> float | None:
    """Nominal dense bf16 peak FLOP/s of a device kind (see ``PEAK_BF16``), or None."""
    for key, peak in PEAK_BF16:
        if key.lower() in device_kind.lower():
            return peak
    return None


def gpt_token_batch(mcfg: gpt.GPTConfig, batch_size: int, seed: int = 0) -> dict:
    """Uniform random tokens over the whole vocabulary: x, y of shape (B, block_size)."""
    rng = np.random.default_rng(seed)
    shape = (batch_size, mcfg.block_size)
    return {"x": rng.integers(0, mcfg.vocab_size, shape, dtype=np.int32),
            "y": rng.integers(0, mcfg.vocab_size, shape, dtype=np.int32)}


def gpu_paper_mfu(size: str = "paper", batch_size: int = 8, dtype: str = "bfloat16",
                  repeats: int = 3, peak_flops: float | None = None,
                  block_seconds: float = 2.0, instrument_too: bool = True) -> dict:
    """Tokens/s and MFU of the engine's GPT-nano training step at ``size`` (default the
    paper's 124M model, sequence 2048) in ``dtype``, on the default JAX device.

    The peak is ``peak_flops`` if given, else the device's nominal dense bf16 peak
    (``PEAK_BF16``; bf16 only), else — on a CPU or an unknown device — the measured
    matmul. ``mfu_vs_matmul`` always compares with a measured matmul in ``dtype``
    (4096² on an accelerator, 512² on a CPU). With ``instrument_too`` the instrumented
    step is timed as well (alternating blocks) and its overhead reported.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} invalid; allowed: a positive integer")
    arch = get_arch("gpt")
    base_cfg = TrainConfig(arch="gpt", size=size, dtype=dtype, batch_size=batch_size).validate()
    mcfg = model_config(arch, base_cfg)
    example = gpt_token_batch(mcfg, batch_size)
    runners = {"plain": make_runner("gpt", size, False, batch_size=batch_size, dtype=dtype,
                                    example=example, mcfg=mcfg)}
    if instrument_too:
        runners["instrumented"] = make_runner("gpt", size, True, batch_size=batch_size,
                                              dtype=dtype, example=example, mcfg=mcfg)
    for r in runners.values():
        _warm(r.run)
    n = {k: calibrate(r.run, block_seconds) for k, r in runners.items()}
    sec = time_alternating({k: r.run for k, r in runners.items()}, n, repeats)
    tokens = runners["plain"].units_per_step
    tps = {k: tokens / s for k, s in sec.items()}

    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    mm_dtype = jnp.dtype(dtype)
    mm_peak = matmul_flops_per_s(repeats, 512 if on_cpu else 4096, mm_dtype)
    if peak_flops is not None:
        peak, source = float(peak_flops), "given"
    elif dtype == "bfloat16" and nominal_peak_flops(device.device_kind) is not None:
        peak, source = nominal_peak_flops(device.device_kind), "nominal dense bf16"
    else:
        peak, source = mm_peak, "measured matmul"
    out = {
        "size": size, "dtype": dtype, "batch_size": batch_size, "seq_len": mcfg.block_size,
        "params": gpt.param_count(mcfg), "flops_per_token": gpt.flops_per_token(mcfg),
        "device": f"{device.platform}:{device.device_kind}", "n_devices": jax.device_count(),
        "tokens_per_s": tps["plain"], "peak_flops": peak, "peak_source": source,
        "mfu": gpt_mfu(mcfg, tps["plain"], peak),
        "matmul_flops": mm_peak, "mfu_vs_matmul": gpt_mfu(mcfg, tps["plain"], mm_peak),
        "steps_per_block": n["plain"],
    }
    if instrument_too:
        out.update(tokens_per_s_instrumented=tps["instrumented"],
                   instrumented_over_plain=tps["instrumented"] / tps["plain"],
                   mfu_instrumented=gpt_mfu(mcfg, tps["instrumented"], peak))
    return out


# --------------------------------------------------------------------------- rows


def overhead_row(arch_name: str, size: str, quick: bool, repeats: int):
    """Instrumented vs plain step throughput; also returns the plain runner (reused)."""
    # The same step count as the engine row's run, so both hit one compiled step.
    steps = ENGINE_STEPS.get(arch_name, 100)
    runners = {k: make_runner(arch_name, size, k, steps=steps) for k in (True, False)}
    for r in runners.values():
        _warm(r.run)
    n = {k: calibrate(r.run, BLOCK_SECONDS[quick]) for k, r in runners.items()}
    sec = time_alternating({k: r.run for k, r in runners.items()}, n, repeats)
    units = runners[True].units_per_step
    row = timing.row(f"instrumented vs plain step [{arch_name} {size}]", units / sec[True],
                     runners[True].unit, "instrument=False", units / sec[False], OVERHEAD_TARGET,
                     f"batch {runners[True].cfg.batch_size}; {n[True]}/{n[False]} steps per block")
    return row, runners


def amortized_row(step_row: dict, log_every: int) -> dict:
    """Throughput of training with instrumentation on, as the engine runs it: tap statistics
    only on logged steps (1 in ``log_every``), the plain update otherwise — derived from the
    two step times measured in ``step_row``."""
    t_inst, t_plain = 1.0 / step_row["value"], 1.0 / step_row["baseline_value"]
    t_mix = t_plain + (t_inst - t_plain) / log_every
    name = step_row["name"].replace("instrumented vs plain step", f"instrumented (log every {log_every}) vs plain")
    return timing.row(name, 1.0 / t_mix, step_row["unit"], "instrument=False", 1.0 / t_plain, OVERHEAD_TARGET,
                      "derived from the step times above")


def torch_row(plain: StepRunner, quick: bool, repeats: int) -> dict:
    """JAX (uninstrumented) GPT-nano step vs the same network in eager PyTorch."""
    name = f"GPT-nano JAX vs PyTorch [{plain.label}]"
    try:
        import torch

        from driftlab.bench import torch_gpt
    except ImportError as err:
        return {"name": name, "value": 1.0, "unit": "tokens/s", "baseline": "torch (skipped)",
                "baseline_value": 1.0, "ratio": 1.0, "target": None,
                "note": f"skipped: torch is not importable ({err}); pip install driftlab[torch]"}
    threads = torch.get_num_threads()
    torch.set_num_threads(cores())
    try:
        model = torch_gpt.load_jax_params(torch_gpt.TorchGPT(plain.mcfg),
                                          jax.device_get(plain.params))
        step = torch_gpt.make_train_step(model, plain.cfg.lr, plain.cfg.weight_decay)
        x = torch_gpt.as_tokens(jax.device_get(plain.batch["x"]))
        y = torch_gpt.as_tokens(jax.device_get(plain.batch["y"]))

        def torch_runner(threads):
            def run(n):
                torch.set_num_threads(threads)
                for _ in range(n):
                    loss = step(x, y)
                loss.item()
            return run

        # Eager PyTorch's OpenMP threads collapse when another process shares the cores
        # (10-100x slower steps seen here), so the baseline is the faster of one thread
        # and one thread per core: a conservative ratio.
        runs = {"jax": plain.run}
        runs.update({f"torch{t}": torch_runner(t) for t in sorted({1, cores()})})
        n = {}
        for k, run in runs.items():
            run(2)
            n[k] = calibrate(run, BLOCK_SECONDS[quick])
        sec = time_alternating(runs, n, repeats)
    finally:
        torch.set_num_threads(threads)
    units = plain.units_per_step
    best = min((k for k in sec if k.startswith("torch")), key=sec.get)
    others = ", ".join(f"{k[5:]} thr {units / sec[k]:.4g}" for k in sec if k.startswith("torch"))
    return timing.row(name, units / sec["jax"], "tokens/s", f"torch {torch.__version__} eager",
                      units / sec[best], TORCH_TARGET,
                      f"JAX {cores()} cores; torch best of ({others}) tokens/s; same init, AdamW, "
                      f"batch; JAX step also computes accuracy, entropy, grad norm, finiteness")


def gpt_vs_torch_rows(size: str, repeats: int, block_seconds: float = BLOCK_SECONDS[False]
                      ) -> list[dict]:
    """Only GPT-nano at ``size``: the JAX vs PyTorch row, then (torch importable) the phase
    split and the engine step's extras (driftlab/bench/gpt_phases.py)."""
    if size not in ("tiny", "small"):
        raise ValueError(f"size={size!r} invalid; allowed: tiny, small")
    plain = make_runner("gpt", size, False, steps=ENGINE_STEPS["gpt"])
    _warm(plain.run)
    rows = [torch_row(plain, False, repeats)]
    if rows[0]["target"] is not None:  # torch is importable
        from driftlab.bench import gpt_phases

        rows += gpt_phases.phase_rows(plain, repeats, block_seconds)
    return rows


def mfu_row(plain: StepRunner, tokens_per_s: float, peak: float) -> dict:
    """Achieved model FLOP/s of the plain GPT step against the measured matmul peak."""
    flops = tokens_per_s * gpt.flops_per_token(plain.mcfg)
    return timing.row(f"GPT-nano model FLOP/s vs matmul [{plain.label}]", flops / 1e9, "GFLOP/s",
                      "matmul f32", peak / 1e9, None,
                      f"MFU vs measured peak = {gpt_mfu(plain.mcfg, tokens_per_s, peak):.3g}")


def engine_rows(arch_name: str, size: str, repeats: int) -> list[dict]:
    """The engine's loop against the bare sequence of compiled steps it dispatches
    (driftlab/bench/engine_loop.py): the steady-state loop (the target row, >= 0.95) and
    the whole ``train()`` call (informative: includes initialization and file writes)."""
    steps = ENGINE_STEPS[arch_name]
    cfg = TrainConfig(arch=arch_name, size=size, batch_size=BATCH[arch_name], steps=steps,
                      log_every=10, eval_batches=0, progress=False)
    m = engine_loop.measure(cfg, from_step=min(100, steps // 3), repeats=repeats)
    a, b = m["window"]  # steps a … b
    steady = None if m["steady_s"] is None else 1.0 / m["steady_s"]
    note = (f"{m['steady_note']}, alternating; {b - a + 1} steps, log every 10 "
            f"(instrumented step + weight stats + record on logged steps); load {m['load']:.1f} "
            f"on {cores()} cores")
    label = f"[{arch_name} {size}]"
    return [timing.row(f"engine loop, steady state (steps {a}-{b}) vs bare mixed steps {label}",
                       steady, "steps/s", "bare guarded steps, device batches",
                       1.0 / m["bare_s"], ENGINE_TARGET, note),
            timing.row(f"engine train() call ({steps} steps, incl. init) vs bare mixed steps {label}",
                       1.0 / m["whole_s"], "steps/s", "bare guarded steps, device batches",
                       1.0 / m["bare_s"], None, "informative: one-off init, compile-cache lookups, "
                       "config/checkpoint/summary writes")]


def run_bench(quick: bool = False, repeats: int = 3) -> list[dict]:
    """All rows (see the module docstring); ``quick``: tiny MLP and GPT-nano only."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} invalid; allowed: a positive integer")
    rows = []
    peak = matmul_flops_per_s(repeats)
    rows.append(timing.row("matmul 1024² float32 (practical peak)", peak / 1e9, "GFLOP/s", "self",
                           peak / 1e9))
    archs = QUICK_ARCHS if quick else ARCHS
    sizes = ("tiny",) if quick else ("tiny", "small")
    for size in sizes:
        for arch_name in archs:
            row, runners = overhead_row(arch_name, size, quick, repeats)
            rows += [row, amortized_row(row, log_every=10)]
            if arch_name in ENGINE_STEPS and size == "tiny" and (arch_name == "mlp" or not quick):
                rows += engine_rows(arch_name, size, repeats)
            if arch_name == "gpt":
                rows.append(mfu_row(runners[False], row["baseline_value"], peak))
                rows.append(torch_row(runners[False], quick, repeats))
    return rows


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """``python -m driftlab.bench.train [--gpu-paper ...] | [--gpt-vs-torch SIZE] | [--quick]
    [--repeats N] [--json]``."""
    parser = argparse.ArgumentParser(prog="python -m driftlab.bench.train",
                                     description="training benchmarks; --gpu-paper: GPT-nano "
                                                 "MFU at paper size")
    parser.add_argument("--gpu-paper", action="store_true",
                        help="time GPT-nano at --size in --dtype and print one JSON object")
    parser.add_argument("--size", default="paper", choices=("tiny", "small", "paper"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak to compute MFU against (default: device table or matmul)")
    parser.add_argument("--no-instrumented", action="store_true",
                        help="skip timing the instrumented step")
    parser.add_argument("--gpt-vs-torch", metavar="SIZE", choices=("tiny", "small"),
                        help="only GPT-nano at SIZE against eager PyTorch, with the phase split")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ensemble", default=None, metavar="S[,S...]",
                        help="seed-ensemble throughput at these sizes (driftlab/bench/ensemble.py)")
    parser.add_argument("--scale", default="cpu", choices=("cpu", "tiny"),
                        help="--ensemble only: the cpu-scale sweep's models (default) or the "
                             "tiny presets")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.gpu_paper:
        if args.batch_size < 1:
            parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
        peak = None if args.peak_tflops is None else args.peak_tflops * 1e12
        result = gpu_paper_mfu(args.size, args.batch_size, args.dtype, args.repeats, peak,
                               instrument_too=not args.no_instrumented)
        print(json.dumps(result))
        return 0
    from driftlab.bench.cli import format_rows

    if args.ensemble is not None:
        from driftlab.bench.ensemble_profile import bench_rows

        rows = bench_rows(args)
    elif args.gpt_vs_torch:
        rows = gpt_vs_torch_rows(args.gpt_vs_torch, args.repeats)
    else:
        rows = run_bench(quick=args.quick, repeats=args.repeats)
    print("\n".join(json.dumps(r) for r in rows) if args.json else format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
