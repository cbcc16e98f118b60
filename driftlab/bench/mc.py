"""Monte Carlo benchmark: E[∂ℓ/∂p | p > 0] (canonical block, MSE, ReLU) at several sizes.

Rows, per size, all measured in the same process:
  * driftlab's clustered estimator (montecarlo.estimators.estimate_grad_positive), at the
    size's bench config and with B and chunk chosen by the pilot (montecarlo.autotune);
    its compile and run times are reported separately;
  * ``plain_jax``: what a competent JAX user writes — batched matmuls, the gradient
    written out, targets integrated out, fresh W1 per draw, no vmap(grad) — at its best
    B among PLAIN_JAX_INPUTS (each timed; the best is the baseline);
  * ``vmap(grad)``: the straightforward estimator — ``jax.vmap(jax.grad(loss))`` over
    independent samples, each with freshly drawn W1, W2, x and target y;
  * ``numpy``: the clustered estimator written in plain NumPy.
"Precision per second" is 1/(relative SE² · seconds): the number of independent
samples' worth of information gathered per second, so its ratio between two
estimators is their speed ratio *at equal standard error*. FLOP/s counts the
estimator's matrix products (2·B·n·d + 4·B·n·k per draw, or 2·B²·(d + n) + 4·B·n·k on
the Cholesky path for 2B ≤ d) and is compared with a
large float32 matrix product timed in the same run (the practical limit).
"""

from __future__ import annotations

import math
import statistics
import time
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.bench.timing import matmul_flops_per_s
from driftlab.montecarlo import autotune
from driftlab.montecarlo.estimators import Budget, chunk_for, estimate_grad_positive
from driftlab.montecarlo.stats import MCResult
from driftlab.theory.expected_grad import expected_grad_positive_mse
from driftlab.theory.setting import BlockSetting

# label -> (setting, inputs per draw B, draws). The weights' between-draw variance bounds
# the precision, so a small B maximises precision per second; a large B amortises the
# RNG over more matrix-product work and maximises FLOP/s. Both are shown.
_MEDIUM = BlockSetting(d_in=128, width=256, d_out=10)
_LARGE = BlockSetting(d_in=512, width=1024, d_out=10)
SIZES = {
    "small d16 n32 k10 B16": (BlockSetting(d_in=16, width=32, d_out=10), 16, 16384),
    "medium d128 n256 k10 B8": (_MEDIUM, 8, 8192),
    "medium d128 n256 k10 B512": (_MEDIUM, 512, 128),
    "large d512 n1024 k10 B64": (_LARGE, 64, 512),
    "large d512 n1024 k10 B1024": (_LARGE, 1024, 32),
}
QUICK = ("small d16 n32 k10 B16",)
# B values tried for the plain_jax baseline (its best is the baseline) and by the pilot.
PLAIN_JAX_INPUTS = (1, 4, 16, 64)


def _timed(fn, repeats: int):
    fn()  # compile / warm up
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def straightforward_estimator(setting: BlockSetting, samples: int, seed: int = 0, chunk: int = 4096):
    """Baseline (a): per sample, fresh W1, W2, x, y; g = jax.grad of ℓ w.r.t. p; value 2·mean(g·1{p>0})."""
    n, d, k = setting.width, setting.d_in, setting.d_out

    def one(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        w1 = setting.s1 * jax.random.normal(k1, (n, d))
        w2 = setting.s2 * jax.random.normal(k2, (k, n))
        x, y = jax.random.normal(k3, (d,)), jax.random.normal(k4, (k,))
        p = w1 @ x
        g = jax.grad(lambda pp: 0.5 * jnp.sum((w2 @ jax.nn.relu(pp) - y) ** 2))(p)
        return 2.0 * jnp.mean(jnp.where(p > 0, g, 0.0))

    fn = jax.jit(jax.vmap(one))
    base = jax.random.key(seed)
    vals = [np.asarray(fn(jax.random.split(jax.random.fold_in(base, i), chunk)))
            for i in range(math.ceil(samples / chunk))]
    return MCResult.from_clusters(np.concatenate(vals))


def plain_jax_estimator(setting: BlockSetting, budget: Budget) -> MCResult:
    """Baseline ``plain_jax``: per draw fresh W1 (n×d), W2 (k×n) and B inputs, one jitted
    program per chunk of draws; g = σ'(p)·(W2ᵀ W2 h) written out (MSE, targets integrated
    out: E[∂ℓ/∂f] = f), value 2·mean(g·1{p>0}). ReLU only."""
    chunk_values = _plain_jax_program(setting, budget.inputs_per_draw, budget.chunk)
    base = jax.random.key(budget.seed)
    vals = [chunk_values(jax.random.fold_in(base, i)) for i in range(math.ceil(budget.draws / budget.chunk))]
    return MCResult.from_clusters(np.concatenate([np.asarray(v) for v in vals]), budget.inputs_per_draw)


@lru_cache(maxsize=64)
def _plain_jax_program(setting: BlockSetting, b: int, c: int):
    """The jitted chunk of ``plain_jax_estimator`` (kept, as a user would keep their jit)."""
    n, d, k = setting.width, setting.d_in, setting.d_out

    @jax.jit
    def chunk_values(key):
        k1, k2, k3 = jax.random.split(key, 3)
        w1 = setting.s1 * jax.random.normal(k1, (c, n, d))
        w2 = setting.s2 * jax.random.normal(k2, (c, k, n))
        x = jax.random.normal(k3, (c, b, d))
        p = jnp.einsum("cbd,cnd->cbn", x, w1)
        f = jnp.einsum("cbn,ckn->cbk", jax.nn.relu(p), w2)
        g = (p > 0) * jnp.einsum("cbk,ckn->cbn", f, w2)
        return 2.0 * jnp.mean(g, axis=(1, 2))

    return chunk_values


def numpy_estimator(setting: BlockSetting, budget: Budget) -> MCResult:
    """Baseline (b): the clustered estimator in NumPy (targets integrated out, as driftlab does)."""
    rng = np.random.default_rng(budget.seed)
    n, d, k, b = setting.width, setting.d_in, setting.d_out, budget.inputs_per_draw
    vals = []
    for start in range(0, budget.draws, budget.chunk):
        c = min(budget.chunk, budget.draws - start)
        w1 = setting.s1 * rng.standard_normal((c, n, d), dtype=np.float32)
        w2 = setting.s2 * rng.standard_normal((c, k, n), dtype=np.float32)
        x = rng.standard_normal((c, b, d), dtype=np.float32)
        p = x @ w1.transpose(0, 2, 1)
        h = np.maximum(p, 0)
        g = (p > 0) * ((h @ w2.transpose(0, 2, 1)) @ w2)
        vals.append(2.0 * np.mean(np.where(p > 0, g, 0.0), axis=(1, 2)))
    return MCResult.from_clusters(np.concatenate(vals), b)


def _precision_per_s(res: MCResult, analytic: float, seconds: float) -> float:
    return 1.0 / ((res.stderr / analytic) ** 2 * seconds)


def _timed_with_compile(fn, repeats: int):
    """(compile seconds, median run seconds, result): the first call's excess over a run."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    t_run, result = _timed(fn, repeats) if repeats > 1 else (None, None)
    if t_run is None:  # _timed warms up once more; with one repeat time a single call
        t0 = time.perf_counter()
        result = fn()
        t_run = time.perf_counter() - t0
    return max(0.0, first - t_run), t_run, result


def _plain_jax_best(setting: BlockSetting, analytic: float, seconds_per_try: float, repeats: int,
                    inputs=PLAIN_JAX_INPUTS):
    """(precision/s, B, chunk) of the best plain_jax B; each B gets about ``seconds_per_try``."""
    best = None
    for b in inputs:
        chunk = min(4096, max(1, 2**24 // (setting.width * (setting.d_in + b) + b * setting.d_in)))
        probe = Budget(draws=2 * chunk, inputs_per_draw=b, chunk=chunk)
        t_probe, _ = _timed(lambda: plain_jax_estimator(setting, probe), 1)
        draws = chunk * max(2, min(64, int(seconds_per_try / max(t_probe / 2, 1e-6))))
        budget = Budget(draws=draws, inputs_per_draw=b, chunk=chunk)
        t, res = _timed(lambda: plain_jax_estimator(setting, budget), repeats)
        prec = _precision_per_s(res, analytic, t)
        if best is None or prec > best[0]:
            best = (prec, b, chunk)
    return best


def run_bench(quick: bool = False, repeats: int = 3) -> list[dict]:
    peak = matmul_flops_per_s(repeats, 2048)
    rows = [{"name": "matmul 2048² float32 (practical limit)", "value": peak / 1e9, "unit": "GFLOP/s",
             "baseline": "self", "baseline_value": peak / 1e9, "ratio": 1.0, "target": None}]
    for label in (QUICK if quick else SIZES):
        setting, inputs, draws = SIZES[label]
        if quick:
            draws //= 4
        budget = Budget(draws=draws, inputs_per_draw=inputs, chunk=min(draws, chunk_for(setting, inputs)))
        analytic = expected_grad_positive_mse(setting).value
        compile_s, t_ours, ours = _timed_with_compile(lambda: estimate_grad_positive(setting, budget), repeats)
        # automatic B and chunk at the same expected SE (pilot on this device), the better of
        # the two configs counts against plain_jax (both are shown)
        t_pilot = time.perf_counter()
        tried = (4, inputs) if quick else PLAIN_JAX_INPUTS + (inputs,)  # quick: fewer compiles
        auto_budget, _ = autotune.choose_budget(setting, budget, inputs=tried)
        t_pilot = time.perf_counter() - t_pilot
        auto_compile_s, t_auto, auto = _timed_with_compile(lambda: estimate_grad_positive(setting, auto_budget),
                                                           repeats)
        p_auto = _precision_per_s(auto, analytic, t_auto)
        p_plain, plain_b, plain_chunk = _plain_jax_best(setting, analytic, 0.5 if quick else 1.5, repeats,
                                                        (4, 16) if quick else PLAIN_JAX_INPUTS)
        t_np, base_np = _timed(lambda: numpy_estimator(setting, budget), max(1, repeats // 2))
        # fresh weights per sample: bound memory (chunk·n·d ≤ 2²⁴ floats) and the sample count
        chunk = max(8, min(4096, 2**24 // (setting.width * setting.d_in)))
        straight_n = chunk * max(2, min(16, 65536 // chunk))
        t_straight, straight = _timed(lambda: straightforward_estimator(setting, straight_n, chunk=chunk), repeats)
        p_ours = _precision_per_s(ours, analytic, t_ours)
        p_best = max(p_ours, p_auto)
        choice = (f"auto B={auto_budget.inputs_per_draw} chunk={auto_budget.chunk} draws={auto_budget.draws} "
                  f"(pilot {t_pilot:.1f} s); plain_jax best B={plain_b} chunk={plain_chunk}")
        n, d, k = setting.width, setting.d_in, setting.d_out
        first_layer = (2 * inputs * inputs * (d + n) if 2 * inputs <= d  # Cholesky path, see estimators
                       else 2 * inputs * n * d)
        flops = draws * (first_layer + 4 * inputs * n * k)
        rows += [
            {"name": f"MC precision/s vs plain_jax [{label}]", "value": p_best, "unit": "1/(relSE²·s)",
             "baseline": "plain_jax", "baseline_value": p_plain, "ratio": p_best / p_plain, "target": 2.0,
             "note": choice},
            {"name": f"MC auto B/chunk vs bench config [{label}]", "value": p_auto, "unit": "1/(relSE²·s)",
             "baseline": "bench config", "baseline_value": p_ours, "ratio": p_auto / p_ours, "target": None,
             "note": choice},
            {"name": f"MC compile vs run [{label}]", "value": compile_s, "unit": "s compile",
             "baseline": "run", "baseline_value": t_ours, "ratio": compile_s / t_ours, "target": None,
             "compile_s": compile_s, "run_s": t_ours,
             "note": f"auto config: compile {auto_compile_s:.2f} s, run {t_auto:.2f} s"},
            {"name": f"MC draws/s [{label}]", "value": ours.draws / t_ours, "unit": "draws/s",
             "baseline": "numpy", "baseline_value": base_np.draws / t_np,
             "ratio": (ours.draws / t_ours) / (base_np.draws / t_np), "target": None},
            {"name": f"MC precision/s vs vmap(grad) [{label}]", "value": p_ours, "unit": "1/(relSE²·s)",
             "baseline": "vmap(grad)", "baseline_value": _precision_per_s(straight, analytic, t_straight),
             "ratio": p_ours / _precision_per_s(straight, analytic, t_straight), "target": 10.0},
            {"name": f"MC precision/s vs numpy [{label}]", "value": p_ours, "unit": "1/(relSE²·s)",
             "baseline": "numpy", "baseline_value": _precision_per_s(base_np, analytic, t_np),
             "ratio": p_ours / _precision_per_s(base_np, analytic, t_np), "target": None},
            {"name": f"MC FLOP/s fraction of matmul [{label}]", "value": flops / t_ours / 1e9, "unit": "GFLOP/s",
             "baseline": "matmul", "baseline_value": peak / 1e9, "ratio": flops / t_ours / peak,
             "target": 0.25 if inputs >= 512 else None},
        ]
    return rows
