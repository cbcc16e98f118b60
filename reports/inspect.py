"""``driftlab inspect``: does a user's architecture drift? (issue 33)

For a model file (models/arch/user_model.py's contract) and S init seeds s = 0 … S−1 (init key
fold_in(PRNGKey(s), 0), the engine's; batch n of training step t from the model's batch),
this module measures, per tap t with pre-activation p and per reader W of t (traced):

1. **E[g | p > 0] at init**, the ratio R = Σ_s A_s / Σ_s N_s with A_s = Σ g·1[p > 0] and
   N_s = Σ 1[p > 0] over the tap's units and the n examples of seed s's step-0 batch, and
   g = ∂ℓᵢ/∂p of the per-example loss (B·∂L/∂p, L = mean ℓᵢ). Its SE is clustered over
   seeds (delta method for a ratio): SE² = S/(S−1) · Σ_s (A_s − R N_s)² / (Σ_s N_s)².
   Verdict: one-sided t over seeds (df S−1) at level α, with the (1−2α) interval.
2. **The per-layer Stein prediction** of the same quantity with its Gauss–Newton and
   curvature parts (models/measure/per_layer.py's ``per_seed``, Hutchinson probes), where it
   applies: the tap is written in the activation form ``tap(name, p, σ)`` (σ and σ′ known),
   exactly one parameter W reads it, W is a dense (H, D) matrix with H ≥ D and h feeds W
   alone (∇_h ℓ = ∇_z ℓ Wᵀ, checked). s_W² is the init's pooled mean of W² (W zero-mean, i.i.d.;
   Stein's step is exact when W is Gaussian). Otherwise the row says why not.
3. **The drift of each reader W**: d_t = (mean W_t − mean W_0)/s_W (s_W the RMS of W_0's
   entries, per seed) under the chosen optimizer (models/optim.py's ``make_optimizer``,
   constant lr) on the training stream. The first-step prediction is the optimizer's
   first update from its initial state on *independent* estimator batches,
   Δ₁ = E[mean u₁(W)]/s_W: for sgd and momentum u₁ = −η·∂L/∂W, i.e. −η·E[∂L/∂W] mean; for
   adamw u₁ = −η·m̂₁/(√v̂₁ + ε) = −η·g/(|g| + ε), the sign-based step. For sgd/momentum the
   first-order prediction at step t is W₁(t)·Δ₁ (theory/trajectory.py's weights). Paired z
   of prediction − measured over seeds; drift verdict at the last step: negative/positive
   (one-sided t, α), absent (TOST against ±margin), else inconclusive.
4. With ``steps`` (sgd, momentum): the second-order trajectory rows of ``theory trajectory``
   for this model (models/measure/trajectory.py's coefficients and comparison).

Every Monte Carlo number carries n (seeds) and its SE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.models.arch import user_model as um

OPTIMIZERS = ("sgd", "momentum", "adamw")
CONVENTION = ("E[g|p>0] = Σ g·1[p>0] / Σ 1[p>0] over the tap's units, the n examples and the "
              "S seeds; g = ∂ℓᵢ/∂p of the per-example loss ℓᵢ (mse: ½‖f−y‖² summed over "
              "outputs; ce: softmax cross-entropy, averaged over positions); SE clustered "
              "over init seeds (delta method for the ratio)")


@dataclass(frozen=True)
class InspectSpec:
    """What one ``driftlab inspect`` run measures (module docstring)."""

    seeds: int = 64
    samples: int = 32  # n: examples per batch
    optimizer: str = "sgd"
    lr: float = 1e-2
    drift_steps: int = 10  # the short run's length
    steps: int = 0  # > 0: trajectory rows over this many steps (sgd, momentum)
    probes: int = 4  # Hutchinson probes of the per-layer prediction
    pairs: int = 4  # estimator batches per seed for the first-step prediction
    alpha: float = 0.01  # one-sided level of every verdict
    margin: float = 0.01  # TOST margin of "absent" drift, in init-std units of W

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} invalid; allowed: {', '.join(OPTIMIZERS)}")
        for f, lo in (("seeds", 2), ("samples", 1), ("drift_steps", 1), ("steps", 0),
                      ("probes", 1), ("pairs", 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{f}={v!r} invalid; allowed: an int >= {lo}")
        for f in ("lr", "alpha", "margin"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{f}={v!r} invalid; allowed: a positive number")
        if self.steps and self.optimizer == "adamw":
            raise ValueError("steps > 0 with optimizer='adamw' invalid: the trajectory expansion "
                             "covers sgd and momentum (AdamW is not linear in the gradients)")

    @property
    def run_steps(self) -> int:
        return max(self.drift_steps, self.steps)


# --------------------------------------------------------------------------- statistics


def ratio_stats(a: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """(R = Σa/Σn, clustered delta-method SE) over seeds."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    S = a.size
    r = a.sum() / n.sum()
    se = math.sqrt(S / (S - 1) * np.sum((a - r * n) ** 2)) / n.sum()
    return float(r), float(se)


def t_tests(mean: float, se: float, S: int, alpha: float, margin: float | None = None) -> dict:
    """One-sided t p-values (df S−1) for > 0 and < 0, the (1−2α) interval, the word, and with
    ``margin`` the TOST p-value of |mean| < margin."""
    from scipy import stats

    df = S - 1
    if se == 0:
        t = math.inf if mean > 0 else (-math.inf if mean < 0 else 0.0)
    else:
        t = mean / se
    p_pos, p_neg = float(stats.t.sf(t, df)), float(stats.t.cdf(t, df))
    q = float(stats.t.ppf(1 - alpha, df))
    out = {"t": t, "p_positive": p_pos, "p_negative": p_neg, "ci": (mean - q * se, mean + q * se),
           "ci_level": 1 - 2 * alpha, "alpha": alpha, "n": S}
    word = "positive" if p_pos < alpha else ("negative" if p_neg < alpha else "inconclusive")
    if margin is not None:
        p_tost = max(float(stats.t.sf((mean + margin) / se, df)) if se else float(mean <= -margin),
                     float(stats.t.cdf((mean - margin) / se, df)) if se else float(mean >= margin))
        out["p_tost"], out["margin"] = p_tost, margin
        if word == "inconclusive" and p_tost < alpha:
            word = "absent"
    out["verdict"] = word
    return out


def _se(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / math.sqrt(x.size))


# --------------------------------------------------------------------------- data


def _stack(trees):
    return jax.tree_util.tree_map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]), *trees)


def _keys(seed, which: int, t):
    """Batch key of seed s, stream ``which`` (1 training, 2 estimator), index t (models/arch/user_model.py)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), which), t)


def _jit_or_plain(fn, *example, static=()):
    """``jax.jit(fn)`` when it traces on ``example``, else ``fn`` itself (Python-side code)."""
    jitted = jax.jit(fn, static_argnums=static)
    try:
        jitted(*example)
        return jitted
    except Exception:
        return fn


def draw(model, seeds: int, steps: int, pairs: int, n: int):
    """(params, training batches, estimator batches) of seeds 0 … S−1 (models/arch/user_model.py's
    keys): params stacked on a leading seed axis; batches {"x", "y"} with leading axes
    (steps or pairs, seeds). init and batch are compiled once and called per seed and step:
    a vmapped PRNG program took 10–50 s to compile on the 2-core CPU, a loop of calls ~1 s."""
    init = _jit_or_plain(model.init, um.init_key(0))
    params = _stack([init(um.init_key(s)) for s in range(seeds)])
    if model.batch_at is None:
        key_of = jax.jit(_keys, static_argnums=1)
        batch = _jit_or_plain(model.batch, key_of(0, 1, 0), n, static=(1,))
        get = lambda which: (lambda m, s, t, nn: batch(key_of(s, which, t), nn))
        train_get, est_get = get(1), get(2)
    else:
        train_get, est_get = um.train_batch, um.estimator_batch

    def stream(get, count):
        rows = [_stack([{"x": xy[0], "y": xy[1]} for xy in (get(model, s, t, n) for s in range(seeds))])
                for t in range(count)]
        return _stack(rows)
    return params, stream(train_get, steps), stream(est_get, pairs)


# --------------------------------------------------------------------------- kernels


def _tap_sums(arch, cfg, shapes, params, batch):
    """({tap: A = B·Σ_{p>0} ∂L/∂p}, {tap: N = #(p>0)}, {tap: B·Σ_{p>0} |∂L/∂p|}) at ``params``
    on ``batch`` (the last: the scale of the summands, for float32 tolerances and the
    dimensionless size E[g|p>0] / E[|g| | p>0])."""
    from driftlab.models.arch.instrument import TapRecorder

    B = jax.tree_util.tree_leaves(batch)[0].shape[0]
    zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}

    def f(probes):
        rec = TapRecorder(probes)
        out = arch.apply(params, batch, cfg, rec)
        return arch.loss(out, batch, cfg)[0], {k: p for k, (p, _) in rec.records.items()}

    g, p = jax.grad(f, has_aux=True)(zeros)
    pos = {k: (p[k] > 0).astype(jnp.float32) for k in shapes}
    return ({k: B * jnp.sum(g[k].astype(jnp.float32) * pos[k]) for k in shapes},
            {k: jnp.sum(pos[k]) for k in shapes},
            {k: B * jnp.sum(jnp.abs(g[k].astype(jnp.float32)) * pos[k]) for k in shapes})


def _get(params, path: str, paths: tuple):
    return jax.tree_util.tree_leaves(params)[paths.index(path)]


@dataclass
class Measured:
    """Raw per-seed arrays of one run (float64): A, N, A_abs of every tap at each step (steps, S);
    the mean of every reader at t = 0 … T (T+1, S); s_W per reader (S,); the first-step
    prediction Δ₁ per reader (S,); the loss (T, S)."""

    A: dict
    N: dict
    A_abs: dict
    means: dict
    s_w: dict
    first_step: dict
    loss: np.ndarray
    params0: object
    train: dict


def measure(program: um.Program, spec: InspectSpec) -> Measured:
    """Training stream, tap sums and reader means of every seed: one compiled program, a
    lax.map over seeds of a lax.scan over steps."""
    import optax

    from driftlab.models.arch.instrument import probe_shapes
    from driftlab.models.engine.optim import make_optimizer

    model = program.model
    arch, cfg = um.as_arch(model), um.UserConfig()
    S, T, n = spec.seeds, spec.run_steps, spec.samples
    params, train, est = draw(model, S, T, spec.pairs, n)
    one = jax.tree_util.tree_map(lambda a: a[0, 0], train)
    p0 = jax.tree_util.tree_map(lambda a: a[0], params)
    shapes = probe_shapes(lambda t, pr, b: arch.apply(pr, b, cfg, t), p0, one)
    readers = sorted({w for t in program.taps for w in t.readers}, key=program.paths.index)
    paths = program.paths
    tx = make_optimizer(spec.optimizer, optax.constant_schedule(spec.lr))
    loss = lambda prm, b: arch.loss(arch.apply(prm, b, cfg, lambda nm, p, act: act(p)), b, cfg)[0]

    def means(prm):
        return {w: jnp.mean(_get(prm, w, paths).astype(jnp.float32)) for w in readers}

    def first_update(prm, b):
        upd, _ = tx.update(jax.grad(loss)(prm, b), tx.init(prm), prm)
        return means(upd)

    def seed_first(prm, bs):  # bs: (pairs, …)
        d = jax.lax.map(lambda b: first_update(prm, b), bs)
        return {w: v.mean(0) for w, v in d.items()}

    def step(carry, b):
        prm, opt = carry
        a, cnt, aabs = _tap_sums(arch, cfg, shapes, prm, b)
        value, g = jax.value_and_grad(loss)(prm, b)
        upd, opt = tx.update(g, opt, prm)
        return (optax.apply_updates(prm, upd), opt), (a, cnt, aabs, means(prm), value)

    def one_seed(args):
        prm, tr, es = args
        (pT, _), (a, cnt, aabs, m, value) = jax.lax.scan(step, (prm, tx.init(prm)), tr)
        s_w = {w: jnp.sqrt(jnp.mean(jnp.square(_get(prm, w, paths).astype(jnp.float32))))
               for w in readers}
        return a, cnt, aabs, m, means(pT), value, s_w, seed_first(prm, es)

    @jax.jit
    def run(prm, tr, es):
        # lax.map over seeds, not vmap: XLA:CPU ran the seed-batched dots of a 0.66M-parameter
        # MLP 7× slower than a loop of plain ones (README: the same for the engine's ensembles)
        seeds_first = lambda t: jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), t)
        out = jax.lax.map(one_seed, (prm, seeds_first(tr), seeds_first(es)))
        a, cnt, aabs, m, mT, value, s_w, first = out
        steps_first = lambda t: jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), t)
        return (steps_first(a), steps_first(cnt), steps_first(aabs), steps_first(m), mT,
                steps_first(value), s_w, first)

    a, cnt, aabs, m, mT, value, s_w, first = jax.device_get(run(params, train, est))
    f64 = lambda x: np.asarray(x, np.float64)
    all_means = {w: np.concatenate([f64(m[w]), f64(mT[w])[None]], axis=0) for w in readers}
    return Measured({k: f64(v) for k, v in a.items()}, {k: f64(v) for k, v in cnt.items()},
                    {k: f64(v) for k, v in aabs.items()},
                    all_means, {w: f64(v) for w, v in s_w.items()},
                    {w: f64(v) for w, v in first.items()}, f64(value), params, train)


# --------------------------------------------------------------------------- per-layer


def per_layer_reason(program: um.Program, tap: um.TapInfo, shapes: dict) -> str | None:
    """Why the per-layer Stein prediction does not apply to ``tap`` (None: it applies)."""
    if tap.act is None:
        return ("activation applied outside the tap (identity form): the Stein prediction needs "
                "σ and σ′; write h = driftlab.tap(name, p, act)")
    if len(tap.readers) != 1:
        return (f"read by {len(tap.readers)} parameters ({', '.join(tap.readers)}): the per-layer "
                f"Stein step needs one dense matrix reading h alone")
    shape = shapes[tap.readers[0]]
    if len(shape) != 2 or shape[0] < shape[1]:
        return (f"reader {tap.readers[0]} has shape {tuple(shape)}: the estimator needs a dense "
                f"(H, D) matrix with H >= D")
    return None


def per_layer(program: um.Program, spec: InspectSpec, meas: Measured, tap: um.TapInfo) -> dict:
    """Clustered predicted, Gauss–Newton, curvature and measured (models/measure/per_layer.per_seed)
    over the seeds at init on the step-0 batch; or {"applies": False, "reason"}."""
    from driftlab.models.measure.per_layer import SeedValues, summarize

    p0 = jax.tree_util.tree_map(lambda a: a[0], meas.params0)
    shapes = dict(zip(program.paths, (np.shape(v) for v in jax.tree_util.tree_leaves(p0))))
    reason = per_layer_reason(program, tap, shapes)
    if reason is not None:
        return {"applies": False, "reason": reason}
    from driftlab.models.measure.per_layer import per_seed

    import dataclasses

    w = tap.readers[0]
    base = um.as_arch(program.model)
    treedef = jax.tree_util.tree_structure(p0)
    paths = program.paths
    # per_seed finds W by its "/"-path in a dict (models/checkpoint.flatten_dict): hand it the
    # params as {path: leaf} (lists and tuples in a user's pytree have no dict path)
    arch = dataclasses.replace(base, apply=lambda prm, b, c, t: base.apply(
        jax.tree_util.tree_unflatten(treedef, [prm[q] for q in paths]), b, c, t))
    flat_params = dict(zip(paths, jax.tree_util.tree_leaves(meas.params0)))
    cfg = um.UserConfig(act_fn=tap.act, readers=((tap.name, w),))
    W = np.asarray(_get(meas.params0, w, program.paths), np.float64)
    s_w2 = float(np.mean(W ** 2))
    batch0 = jax.tree_util.tree_map(lambda a: a[0], meas.train)
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 3) for s in range(spec.seeds)])
    # lax.map over seeds, not vmap: a vmapped PRNG (the probes) compiled 10× slower on CPU
    fn = jax.jit(lambda prm, b, k: jax.lax.map(
        lambda a: per_seed(arch, cfg, a[0], a[1], tap.name, spec.probes, a[2], s_w2=s_w2),
        (prm, b, k)))
    out = jax.device_get(fn(flat_params, batch0, keys))
    bad = float(np.max(out["reader_error"]))
    if not bad <= 1e-3:
        return {"applies": False, "reason": f"h does not feed {w} alone and densely (relative "
                                            f"mismatch {bad:.2g} of ∇_h ℓ vs ∇_z ℓ Wᵀ)"}
    vals = [SeedValues(float(out["predicted"][s]), float(out["measured"][s]),
                       float(out["gauss_newton"][s]), int(out["n_pos"][s])) for s in range(spec.seeds)]
    row = summarize(tap.name, vals, max(len(program.taps), 1), gaussian=False)
    kurt = float(np.mean(W ** 4) / np.mean(W ** 2) ** 2 - 3.0)
    return {"applies": True, "reader": w, "s_w2": s_w2, "w_excess_kurtosis": kurt,
            "predicted": row.predicted, "predicted_se": row.predicted_se,
            "gauss_newton": row.gauss_newton, "gauss_newton_se": row.gauss_newton_se,
            "curvature": row.curvature, "curvature_se": row.curvature_se,
            "measured": row.measured, "measured_se": row.measured_se, "z": row.z,
            "probes": spec.probes, "per_seed": {k: np.asarray(out[k], np.float64).tolist()
                                                for k in ("predicted", "measured", "gauss_newton")}}


# --------------------------------------------------------------------------- trajectory


def trajectory(program: um.Program, spec: InspectSpec, meas: Measured) -> list[dict]:
    """``theory trajectory`` rows for this model: the coefficients of models/measure/trajectory.py
    on ``spec.pairs`` estimator triples per seed, compared with the run's measured curves
    (reader means in units of the init's pooled RMS; E[g|p>0] per tap)."""
    from driftlab.models.measure import trajectory as mt

    model = program.model
    arch, cfg = um.as_arch(model), um.UserConfig()
    S, T, n = spec.seeds, spec.steps, spec.samples
    readers = list(meas.means)
    example = jax.tree_util.tree_map(lambda a: np.asarray(a[0, 0]), meas.train)
    prob = mt.Problem(arch, cfg, example, 0.0)
    prob.downstream = {w: w for w in readers}
    prob.s_w = {w: float(np.sqrt(np.mean(np.asarray(meas.s_w[w]) ** 2))) for w in readers}
    prob.quantities = [f"mean:{w}" for w in readers] + [f"g+:{t}" for t in prob.taps]
    est = draw(model, S, 1, 3 * spec.pairs, n)[2]

    def cluster(params, trip):
        outs = jax.lax.map(lambda b: mt.coefficients_one(prob, params, *b), trip)
        return {k: v.mean(0) for k, v in outs.items()}

    fn = jax.jit(jax.vmap(cluster))
    trip = tuple(jax.tree_util.tree_map(lambda a: jnp.swapaxes(a[j::3], 0, 1), est) for j in range(3))
    coef = {k: np.asarray(v, np.float64) for k, v in jax.device_get(fn(meas.params0, trip)).items()}
    measured = {}
    for w in readers:
        m = meas.means[w][: T + 1].T  # (S, T+1)
        measured[f"mean:{w}"] = (m - m[:, :1]) / prob.s_w[w]
    for t in prob.taps:
        g = (meas.A[t][:T] / np.maximum(meas.N[t][:T], 1.0)).T
        measured[f"g+:{t}"] = np.concatenate([g, np.full((S, 1), np.nan)], axis=1)
    carrier = mt.TrajectorySpec(optimizer=spec.optimizer, lr=spec.lr, steps=T, seeds=S,
                                batch_size=n, pairs=spec.pairs)
    rows, changes = mt.compare(carrier, prob, coef, measured, None)
    tap_of = {f"mean:{w}": next(t.name for t in program.taps if w in t.readers) for w in readers}
    tap_of.update({f"g+:{t}": t for t in prob.taps})

    def row(kind, d):
        d = dict(d)
        of = d.pop("quantity")
        return {"tap": tap_of[of], "quantity": kind, "of": of, "n": S, **d}
    return [row("trajectory", r.as_dict()) for r in rows] + \
        [row("sign change", c.as_dict()) for c in changes]


# --------------------------------------------------------------------------- rows


def inspect_program(program: um.Program, spec: InspectSpec, progress=None) -> list[dict]:
    """The rows of :func:`inspect` for a validated program."""
    from driftlab.montecarlo.stats import suite_threshold
    from driftlab.theory import trajectory as th

    say = progress or (lambda text: None)
    say(f"{len(program.taps)} taps, {program.n_params} parameters; {spec.seeds} seeds × "
        f"{spec.run_steps} steps of {spec.optimizer} (lr {spec.lr:g})")
    meas = measure(program, spec)
    S, K = spec.seeds, spec.drift_steps
    rows: list[dict] = []
    n_checks = sum(len(t.readers) for t in program.taps) or 1
    z_star = suite_threshold(n_checks)
    for tap in program.taps:
        a, cnt = meas.A[tap.name][0], meas.N[tap.name][0]
        r, se = ratio_stats(a, cnt)
        test = t_tests(r, se, S, spec.alpha)
        scale = float(meas.A_abs[tap.name][0].sum() / cnt.sum())
        rows.append({"tap": tap.name, "quantity": "E[g|p>0]", "value": r, "se": se, "n": S,
                     "relative": r / scale if scale > 0 else 0.0, "abs_scale": scale,
                     "examples_per_seed": spec.samples, "positive_fraction": float(cnt.sum() / (
                         S * np.prod(tap.shape))), "form": "activation" if tap.act else "identity",
                     "test": "one-sided t over seeds (df n−1)", **test, "convention": CONVENTION,
                     "per_seed": (a / np.maximum(cnt, 1.0)).tolist()})
        say(f"{tap.name}: per-layer prediction")
        rows.append({"tap": tap.name, "quantity": "per-layer", "n": S,
                     **per_layer(program, spec, meas, tap)})
        for w in tap.readers:
            s_w = meas.s_w[w]
            d = (meas.means[w] - meas.means[w][:1]) / s_w  # (T+1, S)
            first = meas.first_step[w] / s_w
            beta = th.optimizer_beta(spec.optimizer) if spec.optimizer != "adamw" else None
            W1 = th.weights(K, beta)["W1"] if beta is not None else None
            diff1 = first - d[1]
            se1 = _se(diff1)
            z1 = float(diff1.mean() / se1) if se1 > 0 else 0.0
            row = {"tap": tap.name, "quantity": "drift", "matrix": w, "n": S,
                   "units": "Δ mean(W) / s_W, s_W = RMS of W's entries at init",
                   "optimizer": spec.optimizer, "lr": spec.lr,
                   "predicted_first_step": float(first.mean()), "predicted_first_step_se": _se(first),
                   "measured_step1": float(d[1].mean()), "measured_step1_se": _se(d[1]),
                   "z_step1": z1, "z_star": z_star, "agrees_step1": bool(abs(z1) <= z_star),
                   "steps": K, "measured": float(d[K].mean()), "measured_se": _se(d[K]),
                   "predicted_first_order": float(W1[K] * first.mean()) if W1 is not None else None,
                   "test": "one-sided t over seeds (df n−1); absent: TOST",
                   **t_tests(float(d[K].mean()), _se(d[K]), S, spec.alpha, spec.margin),
                   "per_seed_measured": d[K].tolist(), "per_seed_first_step": first.tolist()}
            rows.append(row)
    if spec.steps:
        say("trajectory coefficients")
        rows += trajectory(program, spec, meas)
    return rows


def inspect(source, seeds: int = 64, samples: int = 32, optimizer: str = "sgd", lr: float = 1e-2,
            drift_steps: int = 10, steps: int = 0, probes: int = 4, pairs: int = 4,
            alpha: float = 0.01, margin: float = 0.01, progress=None) -> list[dict]:
    """Rows (dicts) answering "does this architecture drift?" for ``source`` (a path, a
    module, or ``builtin:NAME``): per tap its E[g|p>0] row, its per-layer row and one drift
    row per reader, then trajectory rows with ``steps`` (module docstring). InspectError
    (a ValueError, one line) on bad input."""
    spec = InspectSpec(seeds, samples, optimizer, lr, drift_steps, steps, probes, pairs, alpha,
                       margin)
    program = um.validate(um.load(source), samples)
    return inspect_program(program, spec, progress)


# --------------------------------------------------------------------------- text


def _pm(v, se, fmt="{:+.4g}") -> str:
    return f"{fmt.format(v)} ± {se:.2g}"


def render(rows: list[dict], source: str = "") -> str:
    """The human-readable table of :func:`inspect`'s rows."""
    lines = [f"driftlab inspect {source}".rstrip(), f"convention: {CONVENTION}", ""]
    for r in rows:
        if r["quantity"] == "E[g|p>0]":
            lo, hi = r["ci"]
            lines.append(f"tap {r['tap']}  ({r['form']} form, p>0 in {r['positive_fraction']:.0%})")
            lines.append(f"  E[g|p>0] at init   {_pm(r['value'], r['se'])}  (n={r['n']} seeds × "
                         f"{r['examples_per_seed']} ex.; t={r['t']:.2f}, "
                         f"{r['ci_level']:.0%} CI [{lo:+.3g}, {hi:+.3g}]) → {r['verdict']}")
        elif r["quantity"] == "per-layer":
            if r["applies"]:
                lines.append(f"  per-layer Stein    {_pm(r['predicted'], r['predicted_se'])} = GN "
                             f"{_pm(r['gauss_newton'], r['gauss_newton_se'])} + curvature "
                             f"{_pm(r['curvature'], r['curvature_se'])}  (reader {r['reader']}; "
                             f"vs measured z={r['z']:+.2f})")
            else:
                lines.append(f"  per-layer Stein    does not apply: {r['reason']}")
        elif r["quantity"] == "drift":
            lo, hi = r["ci"]
            fo = r["predicted_first_order"]
            fo_text = f", first order {fo:+.3g}" if fo is not None else ""
            lines.append(f"  drift {r['matrix']}  [{r['units'].split(',')[0]}, {r['optimizer']} lr "
                         f"{r['lr']:g}]")
            lines.append(f"    step 1: predicted {_pm(r['predicted_first_step'], r['predicted_first_step_se'])}"
                         f"  measured {_pm(r['measured_step1'], r['measured_step1_se'])}  "
                         f"(paired z={r['z_step1']:+.2f}, |z|≤{r['z_star']:.2f}: "
                         f"{'agrees' if r['agrees_step1'] else 'DISAGREES'})")
            lines.append(f"    step {r['steps']}: measured {_pm(r['measured'], r['measured_se'])}"
                         f"{fo_text}  ({r['ci_level']:.0%} CI [{lo:+.3g}, {hi:+.3g}], n={r['n']}) "
                         f"→ {r['verdict']}")
    traj = [r for r in rows if r["quantity"] == "trajectory"]
    if traj:
        lines += ["", "trajectory (theory trajectory rows): step  quantity  first  second ± se  "
                      "measured ± se  z  in-horizon"]
        for r in traj:
            lines.append(f"  {r['step']:4d}  {r['of']:<28} {r['first_order']:+.4g}  "
                         f"{_pm(r['second_order'], r['second_order_se'])}  "
                         f"{_pm(r['measured'], r['measured_se'])}  {r['z']:+.2f}  {r['in_horizon']}")
    return "\n".join(lines)


__all__ = ["InspectSpec", "inspect", "inspect_program", "measure", "per_layer", "trajectory",
           "render", "verdict_table", "ratio_stats", "t_tests", "CONVENTION", "OPTIMIZERS"]


def verdict_table(named: dict) -> str:
    """Markdown table of several models' rows ({label: rows}): per tap, E[g|p>0] with its
    one-sided t verdict and (1−2α) CI, the per-layer prediction (GN + curvature) or n/a,
    and per reader the first-step prediction and the measured drift with its verdict."""
    head = ("| block | tap | E[g\\|p>0] at init ± SE [CI] | > 0? | per-layer Stein (GN + curv.) "
            "| reader | predicted step-1 drift ± SE | measured drift at step K ± SE [CI] | drifts? | n |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for label, rows in named.items():
        by_tap: dict = {}
        for r in rows:
            if r["quantity"] in ("E[g|p>0]", "per-layer", "drift"):
                by_tap.setdefault(r["tap"], []).append(r)
        for tap, rs in by_tap.items():
            g = next(r for r in rs if r["quantity"] == "E[g|p>0]")
            pl = next(r for r in rs if r["quantity"] == "per-layer")
            pl_text = (f"{pl['predicted']:+.3g} ({pl['gauss_newton']:+.3g} {pl['curvature']:+.2g})"
                       if pl["applies"] else "n/a")
            for d in (r for r in rs if r["quantity"] == "drift"):
                lo, hi = g["ci"]
                dlo, dhi = d["ci"]
                lines.append(
                    f"| {label} | {tap} | {g['value']:+.3g} ± {g['se']:.2g} [{lo:+.3g}, {hi:+.3g}] "
                    f"| {g['verdict']} (t={g['t']:.1f}) | {pl_text} | {d['matrix']} "
                    f"| {d['predicted_first_step']:+.2e} ± {d['predicted_first_step_se']:.1e} "
                    f"| step {d['steps']}: {d['measured']:+.2e} ± {d['measured_se']:.1e} "
                    f"[{dlo:+.1e}, {dhi:+.1e}] | {d['verdict']} | {d['n']} |")
    return "\n".join(lines)
