"""Inspect benchmark (``driftlab bench inspect``): does a user's model under 1M parameters
answer ``driftlab inspect`` at 64 seeds in under a minute on 2 CPU cores? (issue 33)

The model: a 4-layer ReLU MLP, x ∈ R²⁵⁶ → 512 → 512 → 512 → 10, MSE, ~0.66M parameters,
taps in both forms (the middle one in the activation form, so the per-layer prediction
runs too). Rows, all from the same run:

* end to end: ``driftlab.inspect`` at 64 seeds × 32 examples, 10 SGD steps, every tap
  (load, validation, compiles, the per-layer prediction), against the 60 s budget (ratio
  budget/seconds, target ≥ 1);
* the compiled measurement (E[g|p>0] of every tap and the 10-step short run of all 64
  seeds in one program, a lax.map over seeds of a lax.scan over steps,
  reports/inspect.measure, compile excluded) against the
  plain-JAX baseline a user would write: one jitted single-seed step, looped over seeds
  and steps in Python (compile excluded), ratio baseline/ours.
"""

from __future__ import annotations

import time
import types

D, H, K = 256, 512, 10


def model(d: int = D, h: int = H, k: int = K):
    """The benchmark's user model (module-like namespace)."""
    import jax
    import jax.numpy as jnp

    import driftlab

    def init(key):
        ks = jax.random.split(key, 4)
        return {"w0": jax.random.normal(ks[0], (d, h)) / jnp.sqrt(d),
                "w1": jax.random.normal(ks[1], (h, h)) * jnp.sqrt(2.0 / h),
                "w2": jax.random.normal(ks[2], (h, h)) * jnp.sqrt(2.0 / h),
                "w3": jax.random.normal(ks[3], (h, k)) / jnp.sqrt(h)}

    def apply(params, x):
        x = jax.nn.relu(driftlab.tap("layer0", x @ params["w0"]))
        x = driftlab.tap("layer1", x @ params["w1"], jax.nn.relu)
        x = jax.nn.relu(driftlab.tap("layer2", x @ params["w2"]))
        return x @ params["w3"]

    def batch(key, n):
        kx, ky = jax.random.split(key)
        return jax.random.normal(kx, (n, d)), jax.random.normal(ky, (n, k))

    return types.SimpleNamespace(__name__="bench_mlp", LOSS="mse", init=init, apply=apply,
                                 batch=batch)


def _baseline_seconds(program, spec, meas) -> float:
    """Seconds of the plain loop doing the same work as measure(): the same draw of inits and
    batches, then per seed and step one jitted (E[g|p>0] sums + optimizer step), and per seed
    and estimator batch one jitted first update (compiles excluded)."""
    import jax
    import optax

    from driftlab.models.arch import user_model as um
    from driftlab.models.arch.instrument import probe_shapes
    from driftlab.models.engine.optim import make_optimizer
    from driftlab.reports.inspect import _tap_sums, draw

    arch, cfg = um.as_arch(program.model), um.UserConfig()
    tx = make_optimizer(spec.optimizer, optax.constant_schedule(spec.lr))
    p0 = jax.tree_util.tree_map(lambda a: a[0], meas.params0)
    b0 = jax.tree_util.tree_map(lambda a: a[0, 0], meas.train)
    shapes = probe_shapes(lambda t, pr, b: arch.apply(pr, b, cfg, t), p0, b0)
    loss = lambda prm, b: arch.loss(arch.apply(prm, b, cfg, lambda nm, p, act: act(p)), b, cfg)[0]

    @jax.jit
    def step(prm, opt, b):
        sums = _tap_sums(arch, cfg, shapes, prm, b)
        upd, opt = tx.update(jax.grad(loss)(prm, b), opt, prm)
        return optax.apply_updates(prm, upd), opt, sums

    @jax.jit
    def first(prm, b):
        return tx.update(jax.grad(loss)(prm, b), tx.init(prm), prm)[0]

    jax.block_until_ready((step(p0, tx.init(p0), b0), first(p0, b0)))  # compiles excluded
    t0 = time.perf_counter()
    params, train, est = draw(program.model, spec.seeds, spec.run_steps, spec.pairs, spec.samples)
    for s in range(spec.seeds):
        prm = jax.tree_util.tree_map(lambda a: a[s], params)
        opt = tx.init(prm)
        for j in range(spec.pairs):
            upd = first(prm, jax.tree_util.tree_map(lambda a: a[j, s], est))
        for t in range(spec.run_steps):
            prm, opt, sums = step(prm, opt, jax.tree_util.tree_map(lambda a: a[t, s], train))
        jax.block_until_ready((sums, upd))
    return time.perf_counter() - t0


def run_bench(quick: bool = False, repeats: int = 3) -> list[dict]:
    import jax

    import driftlab
    from driftlab.models.arch import user_model as um
    from driftlab.reports.inspect import InspectSpec, measure

    seeds = 4 if quick else 64
    m = model(32, 64, 10) if quick else model()
    t0 = time.perf_counter()
    driftlab.inspect(m, seeds=seeds, samples=32, drift_steps=10)
    total = time.perf_counter() - t0
    program = um.validate(um.load(m), 32)
    spec = InspectSpec(seeds=seeds, samples=32, drift_steps=10)
    measure(program, spec)  # compile
    ours, meas = [], None
    for _ in range(repeats):
        t1 = time.perf_counter()
        meas = measure(program, spec)
        jax.block_until_ready(meas.loss)
        ours.append(time.perf_counter() - t1)
    base = [_baseline_seconds(program, spec, meas) for _ in range(repeats)]
    ours_s, base_s = sorted(ours)[len(ours) // 2], sorted(base)[len(base) // 2]
    params = f"{program.n_params / 1e6:.2f}M params"
    return [
        {"name": f"inspect end to end, {seeds} seeds ({params})", "value": total, "unit": "s",
         "baseline": "budget_s", "baseline_value": 60.0, "ratio": 60.0 / total, "target": 1.0,
         "note": "load+validate+compile+per-layer; ratio = 60 s / value"},
        {"name": f"inspect measure(), {seeds} seeds × 10 steps", "value": ours_s, "unit": "s",
         "baseline": "python_loop_s", "baseline_value": base_s, "ratio": base_s / ours_s,
         "target": None, "note": "compile excluded; baseline: the same work, jitted per seed and step, looped"},
    ]
