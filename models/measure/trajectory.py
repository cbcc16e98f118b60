"""Monte Carlo side of the drift trajectory: the expansion's coefficients at init, and training.

Quantities Q (theory/trajectory.py's notation), for an architecture of models/:

* ``mean:{path}`` — (mean W_t − mean W₀)/s_W for every downstream matrix W = ``arch.downstream``
  (s_W the init std of the config's scheme, models/measure/per_layer.py's ``init_variance``);
* ``g+:{tap}`` — E[g | p > 0] of every tap, in models/arch/instrument.py's grad_pos_mean units
  (B·Σ_{p>0} ∂ℓ/∂p / #(p>0)), read at step t on the step's own batch before its update (as the
  engine logs it).

Coefficients (one cluster per init seed s: init ``arch.init(fold_in(PRNGKey(s), 0))`` and data
``arch.data(data, cfg, s)``, as ``models.train.train`` with seed s), each from ``pairs`` draws
of three batches x, x₁, x₂ of the seed's training split, disjoint from each other and drawn
apart from the training stream (sampler seed s + ``ESTIMATOR_SEED_OFFSET``):

    c₀ = Q(x),  c₁ = ∇Q(x)·g₁,  c₂ = ∇Q(x)·H₂g₁,  d₂ = g₁ᵀ∇²Q(x) g₂,  e₂ = g₁ᵀ∇²Q(x) g₁,
    c₁_same = ∇Q(x)·g(x),  c₂_same = ∇Q(x)·H₁g₁,

with gᵢ = ∇ℓ(θ₀; xᵢ) and Hᵢv = jax.jvp(jax.grad ℓ(·; xᵢ), θ₀, v), ∇Q·v and vᵀ∇²Q v′ by
(nested) jax.jvp. For the downstream means Q is linear: a = c₁, b = c₂, d₂ = e₂ = 0.

ReLU: autodiff's σ'' = 0 drops the kink's contribution to H̄ and to ∇ E[Q] (units crossing zero
move mass in and out of {p > 0}). With ``kink_width`` τ > 0 the prediction uses
montecarlo/relu_kink.py's ReLU (σ'' = φ_τ) and an indicator 1[p > 0] whose derivative is φ_τ;
values and first derivatives (hence g₁, g₂ and the measured side) are exact. Other kinked
activations (clipped variants) are expanded with autodiff's derivatives.

Measured side: :func:`train_ensemble` runs every seed at once (``jax.vmap`` over seeds inside
one ``lax.scan`` over steps) with the engine's own optimizer (models/engine/optim.py's
``make_optimizer``), loss and batch stream (``ds.sample("train", t, B, s)``), so one member
equals ``train(TrainConfig(seed=s, …))`` (tests/test_trajectory_engine.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.models.arch.params import flatten_dict
from driftlab.models.arch.instrument import probe_shapes
from driftlab.models.measure.per_layer import downstream_scheme, init_variance
from driftlab.models.measure.trajectory_replay import batch_stream, engine_init
from driftlab.montecarlo.relu_kink import KINK_WIDTH, relu_with_kink_kernel, smoothed_step
from driftlab.montecarlo.stats import suite_threshold
from driftlab.theory import trajectory as th

ESTIMATOR_SEED_OFFSET = 1_000_003  # sampler seed of the coefficient batches: apart from training
OPTIMIZERS = ("sgd", "momentum", "adamw", "muon")  # adamw, muon: replay theory (models/measure/trajectory_replay.py)
HORIZON_LEVEL = 0.025  # one-sided level of each of the two bounds in U ≥ |b/a| (joint ≥ 95%)
ARCHES = ("block", "mlp", "gpt", "resnet", "vit")
# The canonical 3-layer drift block (theory/setting.py: W1 → σ → W2 (n×n) → σ → W3, squared
# loss, no biases) as the MLP with these fields.
BLOCK_OVERRIDES = (("task", "regress"), ("bias", False), ("width", 64), ("depth", 2))


@dataclass(frozen=True)
class TrajectorySpec:
    """One cell: architecture × data × optimizer × lr, ``steps`` steps over ``seeds`` inits."""

    arch: str = "mlp"
    size: str = "tiny"
    data: str = "synthetic"
    act: str | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    steps: int = 100
    seeds: int = 64
    batch_size: int = 32
    pairs: int = 4  # batch triples (x, x₁, x₂) per seed for the coefficients
    kink_width: float = KINK_WIDTH
    horizon_fraction: float = th.HORIZON_FRACTION
    overrides: tuple = ()
    predict: bool = True  # False: training only (e.g. the 10-epoch figure)

    def __post_init__(self):
        if self.arch not in ARCHES:
            raise ValueError(f"TrajectorySpec.arch={self.arch!r} invalid; allowed: {', '.join(ARCHES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrajectorySpec.optimizer={self.optimizer!r} invalid; allowed: "
                             f"{', '.join(OPTIMIZERS)}")
        for f in ("steps", "seeds", "batch_size", "pairs"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrajectorySpec.{f}={v!r} invalid; allowed: a positive int")
        if self.seeds < 2:
            raise ValueError(f"TrajectorySpec.seeds={self.seeds} invalid; allowed: >= 2 (clustered SE)")
        for f in ("lr", "horizon_fraction"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"TrajectorySpec.{f}={v!r} invalid; allowed: a positive finite number")
        if isinstance(self.kink_width, bool) or not isinstance(self.kink_width, (int, float)) \
                or not self.kink_width >= 0:
            raise ValueError(f"TrajectorySpec.kink_width={self.kink_width!r} invalid; allowed: a "
                             f"number >= 0 (0: autodiff's σ'' = 0)")


# --------------------------------------------------------------------------- model plumbing


def model(spec: TrajectorySpec):
    """(arch, cfg) of the cell; ``block`` is the MLP with :data:`BLOCK_OVERRIDES`."""
    from driftlab.models.arch.base import get_arch

    name = "mlp" if spec.arch == "block" else spec.arch
    arch = get_arch(name)
    kwargs = dict(BLOCK_OVERRIDES if spec.arch == "block" else ())
    kwargs.update(dict(spec.overrides))
    cfg = arch.config(spec.size, spec.act, **kwargs) if spec.act else arch.config(spec.size, **kwargs)
    return arch, cfg


class _Tap:
    """Adds ``probes[name]`` to p (∂ℓ/∂probe = g), records p, applies ``act_for(act)``."""

    def __init__(self, probes=None, relu=None, act_name=None):
        self.probes, self.relu, self.act_name = probes, relu, act_name
        self.p = {}

    def __call__(self, name, p, act):
        if self.probes is not None:
            p = p + self.probes[name].astype(p.dtype)
        self.p[name] = p
        if self.relu is not None and self.act_name == "relu":
            return self.relu(p)
        return act(p)


class Problem:
    """The loss, the quantities Q and their shapes for one (arch, cfg)."""

    def __init__(self, arch, cfg, example: dict, kink_width: float = 0.0):
        self.arch, self.cfg = arch, cfg
        self.B = int(np.asarray(example[next(iter(example))]).shape[0])
        params = jax.eval_shape(lambda: arch.init(jax.random.PRNGKey(0), cfg))
        self.shapes = probe_shapes(lambda t, pr, b: arch.apply(pr, b, cfg, t), params,
                                   {k: jnp.asarray(v) for k, v in example.items()})
        self.taps = list(self.shapes)
        self.downstream = dict(arch.downstream(cfg))
        flat = flatten_dict(params)
        scheme, gain = downstream_scheme(cfg)
        self.s_w = {}
        for path in self.downstream.values():
            shape = flat[path].shape
            fan_in, fan_out = int(np.prod(shape[:-1])), int(shape[-1])
            self.s_w[path] = math.sqrt(init_variance(scheme, gain, fan_in, fan_out))
        self.quantities = [f"mean:{p}" for p in self.downstream.values()] + \
                          [f"g+:{t}" for t in self.taps]
        self.kink_width = kink_width
        self._relu = relu_with_kink_kernel(kink_width) if kink_width > 0 else None
        self._step = smoothed_step(kink_width)

    def loss(self, params, batch, smooth: bool = False):
        tap = _Tap(None, self._relu if smooth else None, getattr(self.cfg, "act", None))
        return self.arch.loss(self.arch.apply(params, batch, self.cfg, tap), batch, self.cfg)[0]

    def taps_q(self, params, batch, smooth: bool = False):
        """{tap: grad_pos_mean} at ``params`` on ``batch`` (kink kernel in derivatives if smooth)."""
        zeros = {k: jnp.zeros(v.shape, jnp.float32) for k, v in self.shapes.items()}

        def f(probes):
            tap = _Tap(probes, self._relu if smooth else None, getattr(self.cfg, "act", None))
            out = self.arch.apply(params, batch, self.cfg, tap)
            return self.arch.loss(out, batch, self.cfg)[0], tap.p

        g, p = jax.grad(f, has_aux=True)(zeros)
        out = {}
        for name in self.taps:
            pos = self._step(p[name].astype(jnp.float32)) if smooth else \
                (p[name] > 0).astype(jnp.float32)
            out[name] = self.B * jnp.sum(g[name] * pos) / jnp.maximum(jnp.sum(pos), 1.0)
        return out

    def means(self, params):
        flat = flatten_dict(params)
        return {path: jnp.mean(flat[path].astype(jnp.float32)) / self.s_w[path]
                for path in self.downstream.values()}

    def q_vector(self, params, batch, smooth: bool = True):
        """Every quantity Q as one vector (order of ``self.quantities``)."""
        m = self.means(params)
        g = self.taps_q(params, batch, smooth)
        return jnp.stack([m[p] for p in self.downstream.values()] + [g[t] for t in self.taps])


# --------------------------------------------------------------------------- coefficients


def coefficients_one(prob: Problem, params, xf, x1, x2) -> dict:
    """Per-cluster coefficients (module docstring) from one batch triple; dict of vectors."""
    grad = lambda b: jax.grad(lambda th_: prob.loss(th_, b))(params)
    hvp = lambda b, v: jax.jvp(lambda th_: jax.grad(lambda t2: prob.loss(t2, b, True))(th_),
                               (params,), (v,))[1]
    g1, g2, gf = grad(x1), grad(x2), grad(xf)
    Q = lambda th_: prob.q_vector(th_, xf, True)
    dQ = lambda th_, v: jax.jvp(Q, (th_,), (v,))[1]
    c0, c1 = jax.jvp(Q, (params,), (g1,))
    d2 = jax.jvp(lambda th_: dQ(th_, g1), (params,), (g2,))[1]
    e2 = jax.jvp(lambda th_: dQ(th_, g1), (params,), (g1,))[1]
    return {"c0": c0, "c1": c1, "c2": dQ(params, hvp(x2, g1)), "d2": d2, "e2": e2,
            "c1_same": dQ(params, gf), "c2_same": dQ(params, hvp(x1, g1))}


def coefficients(spec: TrajectorySpec, progress=None) -> tuple[Problem, dict]:
    """{name: (seeds, n_quantities) float64} for every coefficient, one row per init seed."""
    arch, cfg0 = model(spec)
    prob = None
    rows = []
    fn = None
    for s in range(spec.seeds):
        cfg, ds = arch.data(spec.data, cfg0, s)
        if prob is None:
            prob = Problem(arch, cfg, ds.sample("train", 0, spec.batch_size, s), spec.kink_width)

            def cluster(params, batches):
                outs = jax.lax.map(lambda b: coefficients_one(prob, params, *b), batches)
                return {k: v.mean(0) for k, v in outs.items()}

            fn = jax.jit(cluster)
        params = engine_init(arch, cfg, s)
        es = s + ESTIMATOR_SEED_OFFSET
        trip = [[ds.sample("train", 3 * k + j, spec.batch_size, es) for k in range(spec.pairs)]
                for j in range(3)]
        stacked = tuple({key: jnp.asarray(np.stack([b[key] for b in trip[j]])) for key in trip[j][0]}
                        for j in range(3))
        rows.append(jax.device_get(fn(params, stacked)))
        if progress:
            progress("coefficients", s)
    return prob, {k: np.stack([np.asarray(r[k], np.float64) for r in rows]) for k in rows[0]}


# --------------------------------------------------------------------------- training


def train_ensemble(spec: TrajectorySpec, seeds: list[int] | None = None, record_every: int = 1,
                   progress=None) -> tuple[Problem, dict]:
    """Train every seed (vmapped) for ``spec.steps`` steps at constant lr; return
    {"mean:…"/"g+:…": (seeds, steps + 1) float64} (mean changes at t = 0 … steps, tap values at
    t = 0 … steps − 1 then NaN), recorded every ``record_every`` steps (others NaN), and "loss"."""
    import optax

    from driftlab.models.engine.optim import make_optimizer

    arch, cfg0 = model(spec)
    seeds = list(range(spec.seeds)) if seeds is None else list(seeds)
    cfgs, stacks, params = [], [], []
    for s in seeds:
        cfg, ds = arch.data(spec.data, cfg0, s)
        cfgs.append(cfg)
        stacks.append(batch_stream(ds, spec.steps, spec.batch_size, s))
        params.append(engine_init(arch, cfg, s))
        if progress:
            progress("data", s)
    cfg = cfgs[0]
    example = {k: v[0] for k, v in stacks[0].items()}
    prob = Problem(arch, cfg, example, 0.0)
    batches = {k: jnp.asarray(np.stack([st[k] for st in stacks], axis=1)) for k in stacks[0]}
    params = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *params)
    tx = make_optimizer(spec.optimizer, optax.constant_schedule(spec.lr))
    opt = jax.vmap(tx.init)(params)
    mean0 = jax.vmap(prob.means)(params)

    def observe(p, batch):
        q = prob.taps_q(p, batch)
        m = prob.means(p)
        return {**{f"mean:{k}": m[k] for k in m}, **{f"g+:{k}": q[k] for k in q}}

    def one(p, o, batch):
        value, g = jax.value_and_grad(prob.loss)(p, batch)
        upd, o = tx.update(g, o, p)
        return optax.apply_updates(p, upd), o, value

    vobserve, vstep = jax.vmap(observe), jax.vmap(one)
    blank = jax.eval_shape(vobserve, params, jax.tree_util.tree_map(lambda x: x[0], batches))

    def body(carry, xs):
        p, o = carry
        batch, t = xs
        # the cond sits outside the vmap, so unrecorded steps skip the instrumented pass
        obs = jax.lax.cond((t % record_every) == 0, lambda: vobserve(p, batch),
                           lambda: {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in blank.items()})
        p, o, value = vstep(p, o, batch)
        return (p, o), (obs, value)

    steps = jnp.arange(spec.steps)
    (pT, _), (obs, loss) = jax.jit(lambda p, o, b: jax.lax.scan(body, (p, o), (b, steps)))(
        params, opt, batches)
    mT = jax.vmap(prob.means)(pT)
    out = {}
    for key, v in obs.items():
        v = np.asarray(v, np.float64).T  # (seeds, steps)
        if key.startswith("mean:"):
            path = key[5:]
            base = np.asarray(mean0[path], np.float64)[:, None]
            last = np.asarray(mT[path], np.float64)[:, None] - base
            out[key] = np.concatenate([v - base, last], axis=1)
        else:
            out[key] = np.concatenate([v, np.full((v.shape[0], 1), np.nan)], axis=1)
    out["loss"] = np.asarray(loss, np.float64).T
    out["final_params"] = pT
    return prob, out


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Row:
    """One step of one quantity (``driftlab theory trajectory --json``)."""

    step: int
    quantity: str
    first_order: float
    second_order: float
    second_order_se: float
    measured: float
    measured_se: float
    z: float  # paired over seeds: (second order − measured) / SE
    z_first: float  # the same for the first order alone
    in_horizon: bool
    z_cv: float = math.nan  # the check's paired t: D = P − F⁰ + F − M (trajectory_check.py)
    theory: str = "second-order"  # "second-order" (SGD, momentum) or "replay" (AdamW, Muon)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SignChange:
    quantity: str
    predicted_sign_change: int | None
    predicted_ci: tuple | None  # (lo, hi), hi None when beyond the steps run
    measured_sign_change: int | None
    measured_ci: tuple | None
    horizon: float  # steps: κ / (η |b/a|)
    a: float
    b: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _se(x: np.ndarray) -> np.ndarray:
    return x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])


def predictions(spec: TrajectorySpec, prob: Problem, coef: dict, n_train: int | None,
                second_scale: float = 1.0) -> dict:
    """{quantity: {"first_order", "second_order": (steps + 1, seeds)}} per-seed predictions."""
    beta = th.optimizer_beta(spec.optimizer)
    wts = th.weights(spec.steps, beta)
    over = th.overlap_weights(spec.steps, beta, spec.batch_size, n_train)
    out = {}
    for j, q in enumerate(prob.quantities):
        c = {k: v[:, j] for k, v in coef.items()}
        if q.startswith("mean:"):  # Q linear, no read batch: c₀ = 0 change, no read overlap
            c = {k: c[k] for k in ("c1", "c2", "c2_same")}
            c["c0"] = np.zeros_like(c["c1"])
        out[q] = th.polynomial(c, spec.lr, wts, over, second_scale)
    return out


def horizon_of(spec: TrajectorySpec, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(horizon in steps, U) for per-seed a = c₁ and b = c₂ + d₂ of one quantity: U =
    theory/trajectory.py's ``ratio_upper_bound`` with Student-t quantile q = t_{1−HORIZON_LEVEL}
    at S − 1 df, and the last step with η T(t) U ≤ κ (``horizon_beta``, β of the optimizer)."""
    a, b = np.asarray(a, np.float64), np.broadcast_to(np.asarray(b, np.float64), np.shape(a))
    S = a.shape[0]
    from scipy import stats as sps

    q = float(sps.t.ppf(1 - HORIZON_LEVEL, S - 1))
    U = th.ratio_upper_bound(float(a.mean()), float(_se(a)), float(b.mean()), float(_se(b)), q)
    return th.horizon_beta(U, spec.lr, th.optimizer_beta(spec.optimizer),
                           spec.horizon_fraction), U


def _z(d: np.ndarray) -> float:
    se = float(_se(d))
    return float(d.mean() / se) if se > 0 else (0.0 if d.mean() == 0 else math.inf)


def compare(spec: TrajectorySpec, prob: Problem, coef: dict, measured: dict, n_train: int | None,
            second_scale: float = 1.0, bootstrap: int = 400, frozen: dict | None = None,
            ) -> tuple[list[Row], list[SignChange]]:
    """Rows per step × quantity and one sign-change object per quantity.

    SEs are clustered over seeds (the same seeds drive coefficients and training: paired).
    The horizon of a quantity is :func:`horizon_of` (β-aware, from an upper confidence bound
    on |b/a|). ``frozen``: the frozen replay on the training stream (models/measure/trajectory_replay.py),
    for the rows' ``z_cv`` (trajectory_check.py's D). A sign change is the first step whose
    value has the sign opposite to step 1's (means; the drift starts at 0) or step 0's
    (taps); its CI is the 2.5–97.5 % range over ``bootstrap`` cluster resamples of seeds.
    """
    pred = predictions(spec, prob, coef, n_train, second_scale)
    hz = {q: horizon_of(spec, coef["c1"][:, j], coef["c2"][:, j] + coef["d2"][:, j])[0]
          for j, q in enumerate(prob.quantities)}
    ab = {q: (float(coef["c1"][:, j].mean()), float((coef["c2"][:, j] + coef["d2"][:, j]).mean()))
          for j, q in enumerate(prob.quantities)}
    paths = {q: (pred[q]["first_order"].T, pred[q]["second_order"].T) for q in prob.quantities}
    return compare_paths(spec, prob.quantities, paths, measured, hz, ab, frozen, bootstrap)


def compare_paths(spec: TrajectorySpec, quantities: list[str], paths: dict, measured: dict,
                  horizons: dict, ab: dict, frozen: dict | None = None, bootstrap: int = 400,
                  theory: str = "second-order") -> tuple[list[Row], list[SignChange]]:
    """:func:`compare` on given per-seed paths {Q: (first (S, T+1), second (S, T+1))}."""
    rows, changes = [], []
    rng = np.random.default_rng(0)
    S = next(iter(paths.values()))[0].shape[0]
    boot = rng.integers(0, S, (bootstrap, S))
    for q in quantities:
        first, second = paths[q]  # (seeds, T+1)
        meas = measured[q]
        a, b = ab[q]
        horizon = horizons[q]
        last = spec.steps if q.startswith("mean:") else spec.steps - 1
        for t in range(last + 1):
            m = meas[:, t]
            if np.isnan(m).any():
                continue
            d2 = second[:, t] - m
            d1 = first[:, t] - m
            zcv = _z(d2 - first[:, t] + frozen[q][:, t]) if frozen is not None else math.nan
            rows.append(Row(t, q, float(first[:, t].mean()), float(second[:, t].mean()),
                            float(_se(second[:, t])), float(m.mean()), float(_se(m)), _z(d2),
                            _z(d1), bool(t <= horizon), zcv, theory))
        start = 1 if q.startswith("mean:") else 0
        sec_mean = second.mean(0)[: last + 1]
        meas_mean = np.nanmean(meas, axis=0)[: last + 1]
        ps = th.sign_change(sec_mean, start)
        ms = th.sign_change(meas_mean, start)
        pci = _boot_ci(second[:, : last + 1], boot, start)
        mci = _boot_ci(meas[:, : last + 1], boot, start)
        changes.append(SignChange(q, ps, pci, ms, mci, horizon, a, b))
    return rows, changes


def _boot_ci(curves: np.ndarray, boot: np.ndarray, start: int):
    vals = []
    for idx in boot:
        c = th.sign_change(np.nanmean(curves[idx], axis=0), start)
        vals.append(math.inf if c is None else c)
    vals = np.asarray(vals, float)
    if np.all(np.isinf(vals)):
        return None
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return (int(lo) if math.isfinite(lo) else None, int(hi) if math.isfinite(hi) else None)


def n_train_of(spec: TrajectorySpec) -> int | None:
    """Size n of the training split when batches are epoch permutations (images), else None."""
    arch, cfg = model(spec)
    _, ds = arch.data(spec.data, cfg, 0)
    n = ds.meta.get("n_train")
    return int(n) if n is not None else None


def run(spec: TrajectorySpec, progress=None, second_scale: float = 1.0):
    """Coefficients (or replays), training, comparison and check of one cell: (rows, sign
    changes, raw dict with "check": trajectory_check.py's verdict). SGD and momentum: the
    second-order expansion; AdamW and Muon: the replays of models/measure/trajectory_replay.py (frozen =
    first, linearized = next order). ``second_scale`` plants an error in the η² term (the
    replay's next order)."""
    from driftlab.montecarlo import trajectory_check as tc
    from driftlab.models.measure import trajectory_replay as rp

    n_train = n_train_of(spec)
    prob, meas = train_ensemble(spec, progress=progress)
    if not spec.predict:
        return [], [], {"problem": prob, "measured": meas, "coef": None, "n_train": n_train}
    adaptive = spec.optimizer not in th.LINEAR_OPTIMIZERS
    on_train = rp.replay(spec, "train", exact=adaptive, model=model(spec), problem=Problem)
    frozen, base = on_train["frozen"], on_train["base"]
    if spec.optimizer in th.LINEAR_OPTIMIZERS:
        prob_c, coef = coefficients(spec, progress=progress)
        rows, changes = compare(spec, prob_c, coef, meas, n_train, second_scale, frozen=frozen)
        pred = predictions(spec, prob_c, coef, n_train)
        paths = {q: (pred[q]["first_order"].T, pred[q]["second_order"].T) for q in prob_c.quantities}
        horizons = {c.quantity: c.horizon for c in changes}
        check = tc.check_paths(prob_c.quantities, paths, meas, frozen, horizons, second_scale,
                               base)
        return rows, changes, {"problem": prob_c, "measured": meas, "coef": coef,
                               "n_train": n_train, "check": check, "frozen": frozen, "base": base}
    rep = rp.replay(spec, "replay", linear=True, exact=True, model=model(spec), problem=Problem)
    paths, horizons, ab = {}, {}, {}
    for q in prob.quantities:
        F, L, b0 = rep["frozen"][q], rep["linear"][q], rep["base"][q]
        paths[q] = (F, F + second_scale * (L - F))
        horizons[q] = rp.replay_horizon(F, L, b0, spec.lr, spec.horizon_fraction, HORIZON_LEVEL)
        ab[q] = (float(-(F[:, 1] - b0[:, 1]).mean() / spec.lr), math.nan)
    rows, changes = compare_paths(spec, prob.quantities, paths, meas, horizons, ab, frozen,
                                  theory="replay")
    plain = {q: (paths[q][0], rep["linear"][q]) for q in prob.quantities}
    check = tc.check_paths(prob.quantities, plain, meas, frozen, horizons, second_scale, base)
    return rows, changes, {"problem": prob, "measured": meas, "coef": None, "n_train": n_train,
                           "check": check, "frozen": frozen, "base": base, "replay": rep}


def agreement(rows: list[Row], field: str = "z") -> dict:
    """Max |z| over the in-horizon rows against the Bonferroni z* over those rows."""
    inside = [r for r in rows if r.in_horizon]
    if not inside:
        return {"n": 0, "max_abs_z": None, "z_star": None, "agrees": None}
    z = max(abs(getattr(r, field)) for r in inside)
    z_star = suite_threshold(len(inside))
    return {"n": len(inside), "max_abs_z": z, "z_star": z_star, "agrees": bool(z <= z_star)}


__all__ = ["TrajectorySpec", "Problem", "model", "coefficients", "coefficients_one",
           "train_ensemble", "predictions", "compare", "run", "agreement", "Row", "SignChange",
           "n_train_of", "ESTIMATOR_SEED_OFFSET", "BLOCK_OVERRIDES", "OPTIMIZERS", "ARCHES"]
