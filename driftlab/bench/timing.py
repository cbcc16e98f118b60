"""Shared timing helpers of the benchmarks: block calibration, interleaved timing, the
core count this process may use, the device's matmul rate, and the row every benchmark
reports.

Timing model: a competitor ``run(n)`` executes n steps and blocks until they are done.
A block length is calibrated so one block lasts about ``block_seconds``; the competitors'
blocks are then timed alternately (load on a shared machine hits all alike) and the
median block gives seconds per step.
"""

from __future__ import annotations

import os
import statistics
import time


def calibrate(run, block_seconds: float, max_steps: int = 2000) -> int:
    """Steps per timed block so that one block lasts about ``block_seconds``.

    ``run(n)`` must be warm (compiled). Three steps give the per-step estimate.
    """
    t0 = time.perf_counter()
    run(3)
    per_step = max((time.perf_counter() - t0) / 3, 1e-6)
    return int(min(max_steps, max(2, round(block_seconds / per_step))))


def time_alternating(runs: dict, n_steps: dict, repeats: int) -> dict:
    """Median seconds per step of each ``runs[name](n)`` over ``repeats`` blocks of
    ``n_steps[name]`` steps, the competitors' blocks interleaved."""
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            t0 = time.perf_counter()
            run(n_steps[k])
            times[k].append((time.perf_counter() - t0) / n_steps[k])
    return {k: statistics.median(v) for k, v in times.items()}


def cores() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def matmul_flops_per_s(repeats: int, size: int = 1024, dtype=None) -> float:
    """FLOP/s of a jitted size×size matmul in ``dtype`` (default float32; median of
    ``repeats`` blocks): the practical peak of the default device."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype or jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    n = max(1, int(0.1 * 1e12 / (2 * size**3)))  # ≈ 0.1 TFLOP per block: long on CPU, ms on GPU
    n = min(n, 64)
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        outs = [f(a) for _ in range(n)]
        jax.block_until_ready(outs)
        times.append((time.perf_counter() - t0) / n)
    return 2 * size**3 / statistics.median(times)


def row(name, value, unit, baseline, baseline_value, target=None, note="") -> dict:
    """One row; ``value`` None (a measurement too noisy to give a rate) gives ratio None."""
    if value is not None and not value > 0:
        raise ValueError(f"{name}: rate {value!r} invalid; allowed: > 0 (or None: too noisy)")
    return {"name": name, "value": None if value is None else float(value), "unit": unit,
            "baseline": baseline, "baseline_value": float(baseline_value),
            "ratio": None if value is None else float(value / baseline_value),
            "target": target, "note": note}
