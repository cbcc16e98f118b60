"""Per-layer benchmark (``driftlab bench layers``): ``--probes auto`` against ``--probes 0``
(the exact H·D basis, the default before issue 24), in one run, at equal standard error.

Per architecture (MLP, GPT tiny; one tap each, batch 32): the auto pilot and its run over
``seeds`` seeds give the seconds per seed t_auto (steady state, compile excluded) and the
per-seed variance of the paired difference V_auto = Var(predicted − measured); its probe
noise σ²/P (from the per-probe values) gives the exact basis's V_exact = V_auto − σ²/P,
since the basis removes exactly that part. The exact basis is timed on one seed (t_exact).
Seeds needed for a given SE scale with V, so the cost at equal SE is t·V and the ratio
(t_exact·V_exact)/(t_auto·V_auto) is the speed-up at equal SE (> 1: auto is cheaper). The
64-seed row adds compiles (and, for auto, the pilot) to 64 seeds of steady state.
"""

from __future__ import annotations

import time

import numpy as np

CASES = (("mlp", "layer0"), ("gpt", "block0.mlp"))


def _auto(arch_name: str, tap: str, seeds: int, batch: int) -> dict:
    from driftlab.montecarlo.layer_driver import SeedBlocks, run_tap
    from driftlab.montecarlo.layer_probes import choose
    from driftlab.models.measure.per_layer import LayersSpec, _config, dense_tap_kernels

    spec = LayersSpec(arch_name, seeds=seeds, batch_size=batch, probes="auto")
    arch, cfg = _config(spec)
    cfg, ds = arch.data(spec.data, cfg, 0)
    blocks = SeedBlocks(arch, cfg, ds, batch, seeds)
    kernels, hvps = dense_tap_kernels(spec, arch, cfg, blocks, tap)
    fixed = [kernels.fixed(b) for b in range(len(blocks.blocks))]
    choice = choose(tap, kernels, fixed, hvps)
    t1, c1 = time.perf_counter(), kernels.compile_seconds
    values = run_tap(kernels, choice.estimator, fixed, choice.done)
    run_s = time.perf_counter() - t1 - (kernels.compile_seconds - c1)
    # steady seconds per seed: the blocks the pilot did not run, or a rerun of all of them
    new_blocks = len(blocks.blocks) - 1
    if new_blocks > 0:
        t_seed = run_s / (new_blocks * blocks.size)
    else:
        t2 = time.perf_counter()
        run_tap(kernels, choice.estimator, fixed, None)
        t_seed = (time.perf_counter() - t2) / blocks.size
    t3 = time.perf_counter()
    kernels.fixed(0)
    t_seed += (time.perf_counter() - t3) / blocks.size
    d = np.array([v["predicted"] - v["measured"] for v in values])
    probe_var = float(np.mean([v["predicted_probes"].var(ddof=1) / v["predicted_probes"].size
                               for v in values])) if choice.estimator.probes > 1 else 0.0
    return {"choice": choice, "t_seed": t_seed, "v_auto": float(d.var(ddof=1)), "probe_var": probe_var,
            "overhead_s": kernels.compile_seconds + choice.pilot_seconds - choice.pilot_compile_seconds,
            "spec": spec, "arch": arch, "cfg": cfg, "ds": ds}


def _exact_seconds(a: dict, tap: str) -> tuple[float, float]:
    """(seconds per seed of the exact basis on one seed, its compile seconds)."""
    from driftlab.montecarlo.layer_driver import Estimator, SeedBlocks
    from driftlab.models.measure.per_layer import dense_tap_kernels

    blocks = SeedBlocks(a["arch"], a["cfg"], a["ds"], a["spec"].batch_size, 1, size=1)
    kernels, _ = dense_tap_kernels(a["spec"], a["arch"], a["cfg"], blocks, tap)
    est = Estimator("exact", 1, 1)
    kernels.fixed(0)
    kernels.probes(est, 0, 0)  # compiles
    t0 = time.perf_counter()
    kernels.fixed(0)
    kernels.probes(est, 0, 0)
    return time.perf_counter() - t0, kernels.compile_seconds


def run_bench(quick: bool = False, repeats: int = 1, seeds: int = 16) -> list[dict]:
    """Rows for each case (module doc); ``quick``: the MLP only, 4 seeds of batch 8.
    ``repeats`` is ignored (the auto run's blocks already average over seeds)."""
    rows = []
    for arch_name, tap in CASES[:1] if quick else CASES:
        a = _auto(arch_name, tap, 4 if quick else seeds, 8 if quick else 32)
        t_ex, compile_ex = _exact_seconds(a, tap)
        v_auto = a["v_auto"]
        v_exact = max(v_auto - a["probe_var"], 1e-3 * v_auto)
        est = a["choice"].estimator.describe()
        name = f"layers {arch_name} {tap}"
        rows.append({"name": f"{name}: s/seed", "value": a["t_seed"], "unit": "s/seed",
                     "baseline": "exact", "baseline_value": t_ex, "ratio": t_ex / a["t_seed"],
                     "target": None, "note": f"auto = {est}; ratio = exact / auto"})
        rows.append({"name": f"{name}: cost at equal SE", "value": a["t_seed"] * v_auto,
                     "unit": "s·var", "baseline": "exact", "baseline_value": t_ex * v_exact,
                     "ratio": t_ex * v_exact / (a["t_seed"] * v_auto), "target": 1.0,
                     "note": f"V_exact/V_auto = {v_exact / v_auto:.2f}; ratio > 1: auto cheaper"})
        auto64 = a["overhead_s"] + 64 * a["t_seed"]
        exact64 = compile_ex + 64 * t_ex
        rows.append({"name": f"{name}: 64 seeds incl. compile", "value": auto64, "unit": "s",
                     "baseline": "exact", "baseline_value": exact64, "ratio": exact64 / auto64,
                     "target": None, "note": f"auto pilot+compiles {a['overhead_s']:.1f} s"})
    return rows
