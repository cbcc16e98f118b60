"""Per-tap Stein prediction of E[∂ℓ/∂p | p > 0] for any architecture, against autodiff.

Setting (theory/per_layer.py): a tap computes h = σ(p) and a matrix W (the tap's
downstream matrix, ``reading_matrix(arch, cfg)[tap]``, i.i.d. N(0, s_W²), independent of p)
reads it densely, z_t = h_t W at every position t that shares W (tokens, patches, frames
and the examples of the batch); ℓ depends on (W, h) only through z. Stein's lemma on W:

    E[g_{t,i} | p] = s_W² σ'(p_{t,i}) Σ_{t'} h_{t',i} E[T_{tt'} | p],   T_{tt'} = Σ_k ∂²ℓ/∂z_{tk}∂z_{t'k}.

Per init seed (one cluster) this module computes, over one batch and the same W draw,

* ``measured``  = B · Σ_{p>0} g / #(p>0), g = ∂ℓ/∂p by autodiff (models/arch/instrument.py's
  ``grad_pos_mean``, the training metric's units);
* ``predicted`` = B · Σ_{p>0} q / #(p>0), q_{t,i} = s_W² σ'(p_{t,i}) (Rᵀ-contraction of
  ∇²_z ℓ · (h R))_{t,i} with R a Rademacher (H × D) probe matrix, E_R[R_{ik} R_{i'k'}] =
  δ_{ii'} δ_{kk'} (Hutchinson), or the exact sum over the H·D basis matrices of R;
* ``gauss_newton`` the same with ∇²_z ℓ replaced by its Gauss–Newton part J_zᵀ ∇²_y ℓ J_z
  (y the model outputs fed to ``arch.loss``), and ``curvature`` = predicted − gauss_newton.

Given p both ``predicted`` and ``measured`` have the same conditional mean, so the paired
difference has mean 0 across seeds; the SE is clustered over seeds (SD / √seeds).

How z is reached without touching the architecture: the tap adds e·W⁺ to h (W⁺ the
pseudo-inverse, W⁺ W = I_D when W (H × D) has full column rank, H ≥ D), which shifts z by
exactly e. So ℓ_z(e) = ℓ(z + e) is available for any model in which h feeds W only and W
is dense over h's last axis; :func:`per_seed` checks this (∇_h ℓ = ∇_z ℓ Wᵀ) and raises
ValueError when it fails. Architectures that declare ``readers(cfg)`` (ResNet: conv, pooled-head
and identity-shortcut readers) go to models/measure/conv_readers.py instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from driftlab.models.arch.params import flatten_dict
from driftlab.models.arch.init import GAUSSIAN_SCHEMES, variance
from driftlab.models.arch.instrument import probe_shapes
from driftlab.montecarlo.stats import MCResult, detectable_shift, suite_threshold, z_score

# The schemes' variances and Gaussianity are declared beside the schemes (models/arch/init.py).
init_variance = variance


def downstream_scheme(cfg) -> tuple[str, float]:
    """(scheme, gain) of the downstream matrices: the config's ``init`` and ``gain``."""
    return cfg.init, float(cfg.gain)


class _StreamTap:
    """Tap that, at ``target`` only, adds ``p_probe`` to p and ``h_shift`` to σ(p), and records p."""

    def __init__(self, target: str, p_probe=None, h_shift=None):
        self.target, self.p_probe, self.h_shift = target, p_probe, h_shift
        self.p = None

    def __call__(self, name, p, act):
        if name != self.target:
            return act(p)
        if self.p_probe is not None:
            p = p + self.p_probe.astype(p.dtype)
        self.p = p
        h = act(p)
        if self.h_shift is not None:
            h = h + self.h_shift.astype(h.dtype)
        return h


@dataclass(frozen=True)
class SeedValues:
    """One cluster (init seed): the four per-tap ratios in grad_pos_mean units."""

    predicted: float
    measured: float
    gauss_newton: float
    n_pos: int

    @property
    def curvature(self) -> float:
        return self.predicted - self.gauss_newton


def reading_matrix(arch, cfg) -> dict[str, str]:
    """{tap: the matrix W that reads h = σ(p)}: ``arch.downstream`` plus the taps read by an
    output head (``arch.output_heads``; the canonical block's last layer is one)."""
    heads = {tap: path for path, tap in arch.output_heads(cfg).items() if tap is not None}
    return {**arch.downstream(cfg), **heads}


def _rademacher(key, shape):
    return jax.random.rademacher(key, shape, jnp.float32)


def per_seed(arch, cfg, params, batch, tap: str, probes: int = 4, key=None,
             exact: bool = False, s_w2: float | None = None, check_reader: bool = True,
             row_exact: bool = False,
             planted_scale: float = 1.0, planted_curvature_sign: float = 1.0):
    """Predicted, measured and Gauss–Newton ratios for one tap at one init (jit-friendly).

    ``probes`` Hutchinson probe matrices R (ignored when ``exact``: the H·D basis); with
    ``row_exact`` each probe is exact over the H hidden units and Rademacher over the D
    outputs (H HVPs per probe; removes the cross-unit noise that dominates when many
    positions share W).
    ``planted_scale`` / ``planted_curvature_sign`` deliberately corrupt the prediction
    (power tests: ×1.05, or the curvature part's sign flipped).
    Returns a dict of jax scalars.
    """
    w_path = reading_matrix(arch, cfg)[tap]
    W = flatten_dict(params)[w_path].astype(jnp.float32)
    if W.ndim != 2 or W.shape[0] < W.shape[1]:
        raise ValueError(f"tap {tap!r}: downstream {w_path} has shape {W.shape}; the estimator "
                         f"needs a dense (H, D) matrix with H >= D")
    if s_w2 is None:
        scheme, gain = downstream_scheme(cfg)
        s_w2 = init_variance(scheme, gain, W.shape[0], W.shape[1])
    W_pinv = jnp.linalg.pinv(W)  # (D, H)
    B = int(jax.tree_util.tree_leaves(batch)[0].shape[0])

    shapes = probe_shapes(lambda t, pr, b: arch.apply(pr, b, cfg, t), params, batch)
    p_shape = shapes[tap].shape
    z_shape = p_shape[:-1] + (W.shape[1],)

    def run(p_probe, e):
        t = _StreamTap(tap, p_probe, e @ W_pinv)
        out = arch.apply(params, batch, cfg, t)
        return out, t.p

    def loss_of(p_probe, e):
        out, p = run(p_probe, e)
        return arch.loss(out, batch, cfg)[0], p

    zero_p = jnp.zeros(p_shape, jnp.float32)
    zero_e = jnp.zeros(z_shape, jnp.float32)
    (g, ge), p = jax.grad(loss_of, argnums=(0, 1), has_aux=True)(zero_p, zero_e)
    p = jax.lax.stop_gradient(p)
    act_fn = _act(cfg)
    h = act_fn(p)
    dsig = jax.jvp(act_fn, (p,), (jnp.ones_like(p),))[1]

    grad_e = lambda e: jax.grad(lambda ee: loss_of(zero_p, ee)[0])(e)
    hvp = lambda v: jax.jvp(grad_e, (zero_e,), (v,))[1]

    out0 = run(zero_p, zero_e)[0]
    y_of = lambda e: run(zero_p, e)[0]
    loss_y = lambda y: arch.loss(y, batch, cfg)[0]

    def gn_hvp(v):
        jv = jax.jvp(y_of, (zero_e,), (v,))[1]
        hjv = jax.jvp(jax.grad(loss_y), (out0,), (jv,))[1]
        return jax.vjp(y_of, zero_e)[1](hjv)[0]

    H_dim, D = W.shape
    hvps = lambda v: (hvp(v), gn_hvp(v))
    if exact:
        def column(i):  # Σ_k over basis R = e_i e_kᵀ: v = h[..., i] ⊗ e_k, read back u[..., k]
            def one(k):
                tot, gn = hvps(h[..., i, None] * jax.nn.one_hot(k, D))
                return tot[..., k], gn[..., k]
            tot, gn = _batched_map(one, jnp.arange(D))
            return tot.sum(0), gn.sum(0)
        tot, gn = jax.lax.map(column, jnp.arange(H_dim))
        q_tot, q_gn = jnp.moveaxis(tot, 0, -1)[None], jnp.moveaxis(gn, 0, -1)[None]
    elif row_exact:
        def one_probe(k):  # exact over i, Rademacher over k: no cross-unit (i ≠ i') noise
            r = jax.random.rademacher(k, (D,), jnp.float32)
            def column(i):
                tot, gn = hvps(h[..., i, None] * r)
                return tot @ r, gn @ r
            tot, gn = _batched_map(column, jnp.arange(H_dim))
            return jnp.moveaxis(tot, 0, -1), jnp.moveaxis(gn, 0, -1)
        q_tot, q_gn = _batched_map(one_probe, jax.random.split(key, probes))
    else:
        def one_probe(k):
            R = _rademacher(k, (H_dim, D))
            tot, gn = hvps(h @ R)
            return tot @ R.T, gn @ R.T
        q_tot, q_gn = _batched_map(one_probe, jax.random.split(key, probes))

    pos = (p > 0).astype(jnp.float32)
    n_pos = jnp.maximum(pos.sum(), 1.0)
    ratio = lambda x: B * jnp.sum(x * pos) / n_pos
    # One value per probe (the prediction is their mean): their spread is the probe noise
    # that the estimator choice (montecarlo/layer_probes.py) trades against cost.
    pred_gn = jax.vmap(ratio)(s_w2 * dsig * q_gn)
    pred = jax.vmap(ratio)(s_w2 * dsig * q_tot)
    pred = planted_scale * (pred_gn + planted_curvature_sign * (pred - pred_gn))
    out = {"predicted": pred.mean(), "measured": ratio(g), "gauss_newton": pred_gn.mean(),
           "n_pos": pos.sum(), "predicted_probes": pred}
    if check_reader:  # ∇_h ℓ must equal ∇_z ℓ Wᵀ when h feeds W only, densely
        gh = jax.grad(lambda hs: arch.loss(arch.apply(params, batch, cfg,
                                                      _StreamTap(tap, None, hs)), batch, cfg)[0])(
            jnp.zeros(p_shape, jnp.float32))
        out["reader_error"] = jnp.max(jnp.abs(gh - ge @ W.T)) / jnp.maximum(jnp.max(jnp.abs(gh)), 1e-30)
    return out


# HVPs evaluated together (vmap) in one step of a batched map: large enough to fill the
# vector units on the tiny sizes, small enough that the batch's activations stay in memory.
HVP_BATCH = 16


def _batched_map(f, xs):
    """``f`` over the leading axis of ``xs``, ``HVP_BATCH`` at a time (vmapped): a plain vmap
    up to HVP_BATCH, else lax.map in batches. Under the seed vmap, a lax.map whose scan
    has a single step returned wrong values on this JAX/XLA (zeros; a Gauss–Newton part of
    −4.6e19 under pytest), so no single-step scan is ever built."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if n <= HVP_BATCH:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=HVP_BATCH)


def _act(cfg):
    """σ of the config: ``cfg.act_fn`` when set (a user model's tap, models/user_model.py),
    else the registry activation ``cfg.act``."""
    from driftlab.activations import parse_activation

    return getattr(cfg, "act_fn", None) or parse_activation(cfg.act)


@dataclass(frozen=True)
class TapRow:
    """One output row of ``driftlab theory layers``."""

    tap: str
    predicted: float
    predicted_se: float
    measured: float
    measured_se: float
    z: float
    gauss_newton: float
    gauss_newton_se: float
    curvature: float
    curvature_se: float
    sign_verdict: str
    detectable: float  # smallest |predicted − measured| bias caught with 99% power
    seeds: int
    stein: str  # "exact (Gaussian W)" or "approximate (non-Gaussian W)"
    estimator: str = ""  # --probes auto: the chosen estimator (montecarlo/layer_probes.py)
    pilot_seconds: float = 0.0  # and the pilot's cost
    probe_se_ratio: float | None = None  # probe-noise SE / measured SE of the chosen estimator

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def sign_verdict(mean: float, se: float, z_one: float) -> str:
    """positive / negative when the one-sided z passes z*₁, else indistinguishable."""
    if se == 0:
        return "positive" if mean > 0 else ("negative" if mean < 0 else "indistinguishable")
    z = mean / se
    return "positive" if z >= z_one else ("negative" if -z >= z_one else "indistinguishable")


def paired_z(values: list[SeedValues]) -> float:
    """(mean of predicted − measured) / its clustered SE over seeds."""
    d = MCResult.from_clusters([v.predicted - v.measured for v in values])
    return z_score(d.mean, d.stderr, 0.0)


def summarize(tap: str, values: list[SeedValues], n_checks: int, gaussian: bool) -> TapRow:
    """Clustered mean ± SE over seeds of every quantity, the paired z and the sign verdict."""
    r = {k: MCResult.from_clusters([getattr(v, k) for v in values])
         for k in ("predicted", "measured", "gauss_newton", "curvature")}
    z_one = suite_threshold(n_checks, one_sided=True)
    diff = MCResult.from_clusters([v.predicted - v.measured for v in values])
    return TapRow(tap=tap, predicted=r["predicted"].mean, predicted_se=r["predicted"].stderr,
                  measured=r["measured"].mean, measured_se=r["measured"].stderr,
                  z=paired_z(values), gauss_newton=r["gauss_newton"].mean,
                  gauss_newton_se=r["gauss_newton"].stderr, curvature=r["curvature"].mean,
                  curvature_se=r["curvature"].stderr,
                  sign_verdict=sign_verdict(r["measured"].mean, r["measured"].stderr, z_one),
                  detectable=detectable_shift(diff.stderr, suite_threshold(n_checks)),
                  seeds=len(values),
                  stein="exact (Gaussian W)" if gaussian else "approximate (non-Gaussian W)")


@dataclass(frozen=True)
class LayersSpec:
    """What ``driftlab theory layers`` runs: an arch config, data, seeds, batch, probes.

    ``probes``: Hutchinson probes per seed, or ``"auto"`` (the pilot of
    montecarlo/layer_probes.py picks exact, Hutchinson with its P, or row-exact per tap);
    ``exact`` / ``row_exact`` select those modes for an integer ``probes``."""

    arch: str
    size: str = "tiny"
    data: str = "synthetic"
    act: str | None = None
    seeds: int = 64
    batch_size: int = 32
    probes: int | str = 4
    exact: bool = False
    row_exact: bool = False
    w_draws: int = 1  # downstream-W redraws per seed (same p): averages out W's noise
    overrides: tuple = ()
    planted_scale: float = 1.0
    planted_curvature_sign: float = 1.0

    def __post_init__(self):
        if self.probes != "auto" and not (isinstance(self.probes, int) and self.probes >= 1):
            raise ValueError(f"probes={self.probes!r} invalid; allowed: 'auto' or a positive int")
        if self.probes == "auto" and (self.exact or self.row_exact):
            raise ValueError("probes='auto' chooses exact / row_exact itself; allowed with it: "
                             "exact=False, row_exact=False")

    @property
    def auto(self) -> bool:
        return self.probes == "auto"

    def estimator(self):
        """The fixed estimator of a non-auto spec (one call of all its probes: the keys and
        draws of the runs before ``auto``)."""
        from driftlab.montecarlo.layer_driver import Estimator

        if self.exact:
            return Estimator("exact", 1, 1)
        return Estimator("row_exact" if self.row_exact else "hutchinson", self.probes, self.probes)


def _config(spec: LayersSpec):
    from driftlab.models.arch.base import get_arch

    arch = get_arch(spec.arch)
    kwargs = dict(spec.overrides)
    cfg = arch.config(spec.size, spec.act, **kwargs) if spec.act else arch.config(spec.size, **kwargs)
    return arch, cfg


def tap_names(spec: LayersSpec) -> list[str]:
    """The taps ``run_layers(spec)`` reports, in its order (no JAX work beyond the config)."""
    from driftlab.models.measure.conv_readers import has_readers, tap_readers

    arch, cfg = _config(spec)
    cfg, _ = arch.data(spec.data, cfg, 0)
    return list(tap_readers(arch, cfg)) if has_readers(arch) else list(reading_matrix(arch, cfg))


def drive_tap(tap: str, spec: LayersSpec, kernels, hvps: dict, progress=None, on_choice=None):
    """(seed values, Choice or None) of one tap: the fixed pass over all seeds, then the
    pilot (``spec.auto``) and the probe calls. ``progress(tap, seed, values)`` per seed,
    ``on_choice(choice)`` once the pilot has chosen."""
    from driftlab.montecarlo import layer_probes
    from driftlab.montecarlo.layer_driver import run_tap

    fixed = [kernels.fixed(b) for b in range(len(kernels.blocks.blocks))]
    choice = None
    if spec.auto:
        choice = layer_probes.choose(tap, kernels, fixed, hvps)
        if on_choice:
            on_choice(choice)
        est, done = choice.estimator, choice.done
    else:
        est, done = spec.estimator(), None
    on_seed = (lambda s, v: progress(tap, s, v)) if progress else None
    return run_tap(kernels, est, fixed, done, on_seed), choice


def with_choice(row, choice):
    """``row`` with the estimator that produced it (and, for ``auto``, the pilot's cost)."""
    from dataclasses import replace

    if choice is None:
        return row
    return replace(row, estimator=choice.estimator.describe(), pilot_seconds=choice.pilot_seconds,
                   probe_se_ratio=choice.probe_se_ratio())


def dense_tap_kernels(spec: LayersSpec, arch, cfg, blocks, tap: str):
    """(TapKernels, HVPs per probe call of each mode) of a dense-reader tap over ``blocks``.

    A seed's key k_j = split(PRNGKey(10 000 + s), w_draws)[j] draws W from fold_in(k_j, 1)
    and the probes of call c from call_key(fold_in(k_j, 2), c)."""
    from driftlab.models.arch.init import get_init
    from driftlab.montecarlo.layer_driver import TapKernels, call_key

    scheme, gain = downstream_scheme(cfg)
    w_init = get_init(scheme, gain)
    w_path = reading_matrix(arch, cfg)[tap].split("/")

    def with_w(params, W):
        params = dict(params)
        node = params
        for part in w_path[:-1]:
            node[part] = dict(node[part])
            node = node[part]
        node[w_path[-1]] = W
        return params

    def seed_fn(params, batch, key, call, mode, block):
        """Mean over ``w_draws`` fresh W (same upstream params, batch, hence p)."""
        W0 = flatten_dict(params)["/".join(w_path)]

        def one(k):
            W = w_init(jax.random.fold_in(k, 1), W0.shape, W0.shape[0], W0.shape[1])
            return per_seed(arch, cfg, with_w(params, W), batch, tap, block,
                            call_key(jax.random.fold_in(k, 2), call), mode == "exact",
                            row_exact=mode == "row_exact", planted_scale=spec.planted_scale,
                            planted_curvature_sign=spec.planted_curvature_sign)
        # vmap, not lax.map: under the seed vmap a lax.map here returned zero probe values
        outs = jax.vmap(one)(jax.random.split(key, spec.w_draws))
        return {k: (v.max(0) if k == "reader_error" else v.mean(0)) for k, v in outs.items()}

    shape = flatten_dict(jax.eval_shape(lambda: arch.init(jax.random.PRNGKey(0), cfg)))["/".join(w_path)].shape
    H, D = shape
    return (TapKernels(seed_fn, blocks, ("predicted_probes", "gauss_newton")),
            {"hutchinson": 1, "row_exact": H, "exact": H * D})


def run_layers(spec: LayersSpec, n_checks: int | None = None, taps: list[str] | None = None,
               progress=None, on_choice=None) -> list[TapRow]:
    """Every tap of the architecture: clustered predicted vs measured over ``spec.seeds`` inits.

    Seed s draws the init from PRNGKey(s) and the batch ``ds.sample("train", s, B, s)``;
    within a seed, ``spec.w_draws`` fresh draws of the downstream W (from the config's
    scheme) share that p, and the cluster value is their mean (E[g | p] over W, twice).
    ``n_checks`` (default: the number of taps) sets the Bonferroni z*. Seeds run in
    vmapped blocks (montecarlo/layer_driver.py); ``progress`` / ``on_choice`` as in
    :func:`drive_tap`.
    """
    if spec.seeds < 2:
        raise ValueError(f"seeds must be at least 2 (clustered SE), got {spec.seeds}")
    if spec.batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {spec.batch_size}")
    arch, cfg = _config(spec)
    from driftlab.models.measure.conv_readers import has_readers, run_reader_layers

    if has_readers(arch):  # conv / pooled-head / identity readers (ResNet): its own estimator
        return run_reader_layers(spec, n_checks, taps, progress, on_choice)
    cfg, ds = arch.data(spec.data, cfg, 0)
    all_taps = list(reading_matrix(arch, cfg))
    taps = all_taps if taps is None else taps
    for t in taps:
        if t not in all_taps:
            raise ValueError(f"unknown tap {t!r}; valid: {', '.join(all_taps)}")
    shapes = flatten_dict(jax.eval_shape(lambda: arch.init(jax.random.PRNGKey(0), cfg)))
    for t in taps:
        shape = shapes[reading_matrix(arch, cfg)[t]].shape
        if len(shape) != 2 or shape[0] < shape[1]:
            raise ValueError(f"tap {t!r}: downstream {reading_matrix(arch, cfg)[t]} has shape {shape}; "
                             f"the estimator needs a dense (H, D) matrix with H >= D")
    scheme, gain = downstream_scheme(cfg)
    from driftlab.montecarlo.layer_driver import SeedBlocks

    blocks = SeedBlocks(arch, cfg, ds, spec.batch_size, spec.seeds)
    rows = []
    for tap in taps:
        kernels, hvps = dense_tap_kernels(spec, arch, cfg, blocks, tap)
        values, choice = drive_tap(tap, spec, kernels, hvps, progress, on_choice)
        bad = max(v["reader_error"] for v in values)
        if bad > 1e-3:
            raise ValueError(f"tap {tap!r}: h does not feed {reading_matrix(arch, cfg)[tap]} alone "
                             f"and densely (relative mismatch {bad:.2g}); "
                             f"the per-layer Stein estimator does not apply")
        seeds = [SeedValues(v["predicted"], v["measured"], v["gauss_newton"], int(v["n_pos"]))
                 for v in values]
        rows.append(with_choice(summarize(tap, seeds, n_checks or len(taps), scheme in GAUSSIAN_SCHEMES),
                                choice))
    return rows


def agreement_threshold(n_checks: int) -> float:
    """Two-sided Bonferroni z* for the predicted-vs-measured agreement checks."""
    return suite_threshold(n_checks)


__all__ = ["init_variance", "downstream_scheme", "per_seed", "SeedValues", "TapRow",
           "summarize", "sign_verdict", "paired_z", "LayersSpec", "run_layers", "tap_names",
           "agreement_threshold", "GAUSSIAN_SCHEMES"]
