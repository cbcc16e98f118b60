"""Seed-ensemble throughput (``driftlab bench train --ensemble 1,4,8,16``).

``--scale cpu`` (the default) measures the models of the decisive cpu-scale sweep (MLP
3×128 at batch 64, GPT-nano 4×64 at batch 16: reports/presets.py ``CPU_MODELS``, with that
sweep's ``log_every``); ``--scale tiny`` the ``tiny`` presets; ``--quick`` the MLP only,
at the same scale, for :data:`QUICK_STEPS` steps (seconds; for tests). For each architecture and ensemble size S, in one process and
alternating so that machine load hits both alike:

* **ensemble**: one ``train_ensemble(cfg, seeds=0…S-1)`` call (one compiled program, a
  leading replica axis; models/engine/ensemble.py), with its run directories written;
* **sequential**: S ``train(cfg, seed=s)`` calls of the same cells one after the other
  (each with its own data set, init, dispatch per step, validation and files), as a sweep
  ran them before, but in one process, so they already share one compile.

Both are timed as whole calls (setup, steps, validation, file writes). Compile time is
reported apart: the first call of each kind compiles (and is not timed as a rate); the
difference between that first call and the median timed call is the row's
``compile_s``. value = S·steps / median ensemble seconds (seed-steps/s), baseline = the
same for the sequential calls; ratio = sequential seconds / ensemble seconds. A timed
call always takes a positive time, so no rate is ever zero or negative; when the ratio of
the repeats spreads by more than :data:`NOISE` after :data:`MAX_REPEATS` repeats, the note
says "too noisy".
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import jax

from driftlab.models.engine import steps as steps_module
from driftlab.models.engine.train import TrainConfig, train, train_ensemble

ENSEMBLE_STEPS = {"mlp": 200, "gpt": 40}  # steps per seed (1 eval batch)
QUICK_STEPS = {"mlp": 4, "gpt": 2}  # --quick: a smoke run of the same configurations
ENSEMBLE_BATCH = {"mlp": 64, "gpt": 16}  # tiny scale: as driftlab/bench/train.py BATCH
SCALES = ("cpu", "tiny")
ENSEMBLE_TARGET = 3.0  # seeds/s at S = 8 vs sequential (issue 19)
TARGET_SIZE = 8
NOISE = 1.5  # max/min of the per-repeat ratios above which the row says "too noisy"
MAX_REPEATS = 7


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"1,4,8,16"`` -> (1, 4, 8, 16); ValueError naming --ensemble otherwise."""
    try:
        sizes = tuple(int(x) for x in str(text).split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--ensemble {text!r} invalid; allowed: positive integers, "
                         f"comma-separated, e.g. 8 or 1,4,8,16")
    return sizes


def scale_fields(arch: str, scale: str, steps: int | None = None) -> dict:
    """The TrainConfig fields of ``arch`` at ``scale`` (see the module docstring), with the
    bench's own ``steps`` (default :data:`ENSEMBLE_STEPS`) and one eval batch in place of
    the preset's (issue 31: passing them twice crashed ``bench train --ensemble 8``)."""
    if scale not in SCALES:
        raise ValueError(f"--scale {scale!r} invalid; allowed: {', '.join(SCALES)}")
    steps = steps or ENSEMBLE_STEPS[arch]
    if scale == "tiny":
        fields = dict(size="tiny", batch_size=ENSEMBLE_BATCH[arch], log_every=10)
    else:
        from driftlab.reports.presets import CPU_MODELS

        fields = CPU_MODELS[arch].train_fields("adamw")
    return {**fields, "arch": arch, "steps": steps, "eval_batches": 1,
            "log_every": max(1, min(fields["log_every"], steps // 2))}


def _cfg(arch: str, out: Path, scale: str, steps: int) -> TrainConfig:
    return TrainConfig(progress=False, checkpoint_minutes=0.0, out=str(out), overwrite=True,
                       **scale_fields(arch, scale, steps))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return max(time.perf_counter() - t, 1e-9)


def measure(arch: str, size: int, repeats: int, scale: str = "cpu", steps: int | None = None) -> dict:
    """Seconds of the ensemble call and of the S sequential calls (medians), the first
    (compiling) calls, and the per-repeat ratios."""
    jax.clear_caches()  # each first call compiles afresh: compile times are comparable
    steps_module._CACHE.clear()
    with tempfile.TemporaryDirectory(prefix="driftlab-ens-bench-") as tmp:
        cfg = _cfg(arch, Path(tmp) / "ens", scale, steps or ENSEMBLE_STEPS[arch])
        seeds = tuple(range(size))

        def ensemble():
            train_ensemble(cfg, seeds)

        def sequential():
            for s in seeds:
                train(dataclasses.replace(cfg, seed=s, out=str(Path(tmp) / f"s{s}")))

        first_ens = _timed(ensemble)
        first_seq = _timed(lambda: train(dataclasses.replace(cfg, out=str(Path(tmp) / "w"))))
        ens, seq = [], []
        while len(ens) < repeats or (_spread(ens, seq) > NOISE and len(ens) < MAX_REPEATS):
            ens.append(_timed(ensemble))
            seq.append(_timed(sequential))
    return {"ens_s": statistics.median(ens), "seq_s": statistics.median(seq),
            "first_ens_s": first_ens, "first_single_s": first_seq,
            "ratios": [b / a for a, b in zip(ens, seq)]}


def _spread(ens: list, seq: list) -> float:
    ratios = [b / a for a, b in zip(ens, seq)]
    return max(ratios) / min(ratios) if ratios else float("inf")


def ensemble_rows(sizes=(1, 4, 8, 16), archs=("mlp", "gpt"), repeats: int = 3,
                  scale: str = "cpu", quick: bool = False) -> list[dict]:
    """One row per (arch, S); see the module docstring."""
    from driftlab.bench.timing import row

    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} invalid; allowed: a positive integer")
    rows = []
    for arch in archs:
        steps = (QUICK_STEPS if quick else ENSEMBLE_STEPS)[arch]
        for size in sizes:
            m = measure(arch, size, repeats, scale, steps)
            noisy = max(m["ratios"]) / min(m["ratios"]) > NOISE
            single_s = m["seq_s"] / size
            note = (f"{'too noisy; ' if noisy else ''}median of {len(m['ratios'])} "
                    f"alternating; ratios {min(m['ratios']):.2f}-{max(m['ratios']):.2f}; "
                    f"compile_s ensemble {max(m['first_ens_s'] - m['ens_s'], 0):.2f}, "
                    f"single {max(m['first_single_s'] - single_s, 0):.2f} (not in the rates)")
            rows.append(row(f"ensemble S={size} (lax.map, k steps per dispatch) vs {size} "
                            f"sequential default runs [{arch} {scale}]",
                            size * steps / m["ens_s"], "seed-steps/s",
                            f"{size}×train() sequential", size * steps / m["seq_s"],
                            ENSEMBLE_TARGET if size == TARGET_SIZE else None,
                            f"{note}; load average {os.getloadavg()[0]:.1f}"))
    return rows


def cli_archs(args) -> tuple:
    """The architectures of ``bench train --ensemble``: the MLP alone with ``--quick``."""
    return ("mlp",) if args.quick else ("mlp", "gpt")


def cli_rows(args) -> list[dict]:
    """The rows of ``bench train --ensemble S,… [--scale cpu|tiny] [--quick]`` (one seed's
    FLOP/s rows come from driftlab/bench/ensemble_profile.py ``flops_row``)."""
    return ensemble_rows(parse_sizes(args.ensemble), cli_archs(args), args.repeats, args.scale,
                         args.quick)
