"""Per-tap Stein prediction of E[∂ℓ/∂p | p > 0] for taps read by convolutions, a pooled dense
head and identity shortcuts (ResNet), against autodiff.

Setting (theory/per_layer.py, "Conv readers"): the tap computes h = σ(p) ∈ R^{B×H×W×C}; its
readers are declared by the architecture (``Arch.readers(cfg)``, models/stein_readers):
linear readers z_r = f_r(h, W_r) + b_r with W_r i.i.d. N(0, s_r²) independent of p and of each
other, and possibly an identity shortcut into the pre-activation p⁺ of a later tap. Then

    ∂ℓ/∂h = Σ_r f_r(·, W_r)ᵀ ∂ℓ/∂z_r + ∂ℓ/∂p⁺            (f_r(·, W)ᵀ the adjoint in h)
    E[∂ℓ/∂h | h] = Σ_r s_r² E_R[ f_r(·, R)ᵀ ( ∇²_{z_r} ℓ · f_r(h, R) ) ] + E[∂ℓ/∂p⁺ | h]

for any probe R shaped like W_r with E[R_a R_b] = δ_ab (Stein on each W_r; for a conv this is
E[g^h_{x,c} | h] = s² Σ_dx Σ_y' h_{y'+dx,c} E[T_{x−dx,y'}], T_{yy'} = Σ_c' ∂²ℓ/∂z_{yc'}∂z_{y'c'}).
Per init seed (one cluster) this module computes, on one batch with the init's own W_r,

* ``measured``  = B · Σ_{p>0} g / #(p>0), g = ∂ℓ/∂p by autodiff (grad_pos_mean units);
* ``stein``     = the same ratio of σ'(p) · Σ_r s_r² f_r(·,R)ᵀ(∇²_{z_r}ℓ · f_r(h,R)), averaged
  over Rademacher probes R (or exact over W's input rows with ``row_exact``, or the full basis
  with ``exact``); ``gauss_newton`` with ∇²_z ℓ replaced by J_zᵀ∇²_y ℓ J_z (y = logits);
* ``shortcut``  = the ratio of σ'(p) · ∂ℓ/∂p⁺, computed *exactly* by autodiff (not predicted);
* ``predicted`` = stein + shortcut;
* ``kink``      = the part of ``stein`` from the Dirac mass of ReLU'' at the ReLUs downstream of
  the readers (montecarlo/relu_kink.py: σ'' = δ → N(0, τ²) density in the HVPs only), which
  autodiff's Hessian drops and Stein's weak derivative needs; it belongs to the curvature
  part (``curvature`` = stein − gauss_newton includes it). Without it the prediction is biased
  wherever a ReLU follows a reader (ResNet: conv → norm → ReLU).

∇²_{z_r} ℓ is reached through the model's ``tap.reader_out(weight path, z)`` hook, which adds
a shift e to z_r. Before trusting a tap, :func:`per_seed` checks that the declared readers are
all of h's readers, ∂ℓ/∂h = Σ_r f_r(·, W_r)ᵀ ∂ℓ/∂z_r + ∂ℓ/∂p⁺ (``reader_error``), and
:func:`run_reader_layers` refuses the tap when it fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.models.arch.params import flatten_dict
from driftlab.models.arch.init import get_init
from driftlab.models.arch.stein_readers import READER_KINDS, TapReaders
from driftlab.models.measure.per_layer import (GAUSSIAN_SCHEMES, _batched_map, LayersSpec, TapRow, _act,
                                           _config, init_variance, summarize)
from driftlab.montecarlo.relu_kink import KINK_WIDTH, relu_with_kink_kernel
from driftlab.montecarlo.stats import MCResult

READER_TOLERANCE = 1e-3  # relative max |∂ℓ/∂h − Σ_r adjoint + shortcut| accepted


def has_readers(arch) -> bool:
    """Whether the architecture declares ``Arch.readers`` (models/arch/base.py, stein_readers)."""
    return arch.readers is not None


def tap_readers(arch, cfg) -> dict[str, TapReaders] | None:
    """The architecture's ``readers(cfg)``, or None when it declares none."""
    return None if arch.readers is None else arch.readers(cfg)


class _ReaderTap:
    """Tap adding ``p_probes[name]`` to p, ``h_shifts[name]`` to σ(p) and ``z_shifts[path]``
    to reader outputs; records every p and every reader output z."""

    def __init__(self, p_probes=None, h_shifts=None, z_shifts=None, act=None):
        self.p_probes, self.h_shifts, self.z_shifts = p_probes or {}, h_shifts or {}, z_shifts or {}
        self.act = act  # replaces the model's σ at every tap (the kink-kernel ReLU)
        self.p, self.z = {}, {}

    def __call__(self, name, p, act):
        act = self.act or act
        if name in self.p_probes:
            p = p + self.p_probes[name].astype(p.dtype)
        self.p[name] = p
        h = act(p)
        if name in self.h_shifts:
            h = h + self.h_shifts[name].astype(h.dtype)
        return h

    def reader_out(self, path, z):
        if path in self.z_shifts:
            z = z + self.z_shifts[path].astype(z.dtype)
        self.z[path] = z
        return z


# Activations whose σ' is continuous (σ'' has no Dirac part), so autodiff's Hessian is the
# weak one Stein needs; "relu" gets the kink kernel (montecarlo/relu_kink.py).
SMOOTH_DERIVATIVE_ACTS = ("gelu", "silu", "tanh", "relu2", "gelu2", "identity")


def _hessian_act(cfg, kink_width: float):
    """The σ to use in Hessian-vector products: the kink-kernel ReLU for relu, None (the
    model's own) for activations with continuous σ'; ValueError for other kinked ones."""
    name = _act(cfg).name
    if name == "relu":
        return relu_with_kink_kernel(kink_width)
    if name in SMOOTH_DERIVATIVE_ACTS:
        return None
    raise ValueError(f"act={cfg.act!r}: its kink (the clip) puts a Dirac term in ∇²ℓ that the "
                     f"conv-reader estimator does not estimate; allowed: relu, "
                     f"{', '.join(SMOOTH_DERIVATIVE_ACTS)}")


def _check_declared(tap: str, decl: TapReaders) -> None:
    if not decl.readers:
        raise ValueError(f"tap {tap!r}: no linear reader declared; the Stein estimator needs one")
    for r in decl.readers:
        if r.kind not in READER_KINDS:
            raise ValueError(f"tap {tap!r}: reader {r.weight} has kind {r.kind!r}; the estimator "
                             f"handles {', '.join(READER_KINDS)}")


def shapes(arch, cfg, params, batch) -> tuple[dict, dict]:
    """({tap: p shape}, {reader weight path: z shape}) by abstract evaluation."""
    def run():
        t = _ReaderTap()
        arch.apply(params, batch, cfg, t)
        return t.p, t.z

    return jax.eval_shape(run)


def _probe_rows(mode: str, key, w_shape, probes: int):
    """(number of HVPs, probe(i) → R): Rademacher R (``hutchinson``), R = e_j ⊗ r with r
    Rademacher over outputs (``row_exact``, exact over the input rows j) or the basis (``exact``)."""
    rows = 1
    for d in w_shape[:-1]:
        rows *= int(d)
    cout = int(w_shape[-1])
    if mode == "hutchinson":
        keys = jax.random.split(key, probes)
        return probes, lambda i: jax.random.rademacher(keys[i], w_shape, jnp.float32), 1.0 / probes
    if mode == "row_exact":
        keys = jax.random.split(key, probes)

        def probe(i):
            j, k = i % rows, i // rows
            r = jax.random.rademacher(keys[k], (cout,), jnp.float32)
            return (jax.nn.one_hot(j, rows)[:, None] * r[None, :]).reshape(w_shape)
        return rows * probes, probe, 1.0 / probes
    if mode == "exact":
        return rows * cout, lambda i: jax.nn.one_hot(i, rows * cout).reshape(w_shape), 1.0
    raise ValueError(f"mode={mode!r} invalid; allowed: hutchinson, row_exact, exact")


def per_seed(arch, cfg, params, batch, tap: str, decl: TapReaders, probes: int = 4, key=None,
             mode: str = "hutchinson", planted_scale: float = 1.0,
             planted_curvature_sign: float = 1.0, kink_width: float = KINK_WIDTH):
    """Measured, predicted (stein + shortcut), Gauss–Newton, kink and shortcut ratios for one
    tap at one init (jit-friendly). ``kink`` is the part of the Stein term from δ(p_u) of the
    ReLUs downstream of the readers (kernel width ``kink_width``; 0 for smooth σ'), included
    in the curvature part. ``planted_scale`` / ``planted_curvature_sign`` corrupt the Stein
    term only (power tests). Returns a dict of jax scalars, ``reader_error`` included."""
    _check_declared(tap, decl)
    kink_act = _hessian_act(cfg, kink_width)
    flat = {k: v.astype(jnp.float32) for k, v in flatten_dict(params).items()}
    p_shapes, z_shapes = shapes(arch, cfg, params, batch)
    B = int(jax.tree_util.tree_leaves(batch)[0].shape[0])
    taps_probed = [tap] + ([decl.identity_into] if decl.identity_into else [])
    zero_p = {t: jnp.zeros(p_shapes[t].shape, jnp.float32) for t in taps_probed}
    zero_z = {r.weight: jnp.zeros(z_shapes[r.weight].shape, jnp.float32) for r in decl.readers}

    def run(p_probes, z_shifts, kink=True):
        t = _ReaderTap(p_probes, None, z_shifts, kink_act if kink else None)
        return arch.apply(params, batch, cfg, t), t

    def loss_of(p_probes, z_shifts, kink=True):
        out, t = run(p_probes, z_shifts, kink)
        return arch.loss(out, batch, cfg)[0], t.p[tap]

    (gp, gz), p = jax.grad(loss_of, argnums=(0, 1), has_aux=True)(zero_p, zero_z)
    p = jax.lax.stop_gradient(p)
    act_fn = _act(cfg)
    h = act_fn(p)
    dsig = jax.jvp(act_fn, (p,), (jnp.ones_like(p),))[1]
    out0 = run(zero_p, zero_z)[0]
    loss_y = lambda y: arch.loss(y, batch, cfg)[0]

    groups = 1 if mode == "exact" else probes  # per-probe estimates (their mean: the prediction)
    zeros = jnp.zeros((groups,) + h.shape, h.dtype)
    q_tot, q_gn, q_smooth = zeros, zeros, zeros
    for i_r, r in enumerate(decl.readers):
        w = flat[r.weight]
        s2 = init_variance(r.scheme, r.gain, *r.fans(w.shape))
        shift = lambda e, r=r: {**zero_z, r.weight: e}
        grad_e = lambda e, shift=shift, kink=True: jax.grad(
            lambda ee: loss_of(zero_p, shift(ee), kink)[0])(e)
        hvp = lambda v, r=r, grad_e=grad_e: jax.jvp(grad_e, (zero_z[r.weight],), (v,))[1]
        smooth_hvp = lambda v, r=r, grad_e=grad_e: jax.jvp(
            lambda e: grad_e(e, kink=False), (zero_z[r.weight],), (v,))[1]
        y_of = lambda e, shift=shift: run(zero_p, shift(e))[0]

        def gn_hvp(v, r=r, y_of=y_of):
            jv = jax.jvp(y_of, (zero_z[r.weight],), (v,))[1]
            hjv = jax.jvp(jax.grad(loss_y), (out0,), (jv,))[1]
            return jax.vjp(y_of, zero_z[r.weight])[1](hjv)[0]

        n, probe, _ = _probe_rows(mode, jax.random.fold_in(key, i_r), w.shape, probes)

        def one(i, r=r, hvp=hvp, gn_hvp=gn_hvp, smooth_hvp=smooth_hvp, probe=probe):
            R = probe(i)
            v, adjoint = jax.vjp(lambda hh: r.apply(hh, R), h)
            tot = adjoint(hvp(v))[0]
            smooth = adjoint(smooth_hvp(v))[0] if kink_act is not None else tot
            return tot, adjoint(gn_hvp(v))[0], smooth

        per_probe = lambda x: x.reshape((groups, n // groups) + x.shape[1:]).sum(1)
        tot, gn, smooth = map(per_probe, _batched_map(one, jnp.arange(n)))
        q_tot = q_tot + s2 * tot
        q_gn = q_gn + s2 * gn
        q_smooth = q_smooth + s2 * smooth

    pos = (p > 0).astype(jnp.float32)
    n_pos = jnp.maximum(pos.sum(), 1.0)
    ratio = lambda x: B * jnp.sum(x * pos) / n_pos
    probe_ratio = jax.vmap(lambda x: ratio(dsig * x))
    stein, stein_gn = probe_ratio(q_tot), probe_ratio(q_gn)
    kink = (planted_scale * planted_curvature_sign * (stein - probe_ratio(q_smooth)).mean()
            if kink_act is not None else jnp.float32(0.0))
    stein = planted_scale * (stein_gn + planted_curvature_sign * (stein - stein_gn))
    stein_probes, stein, stein_gn = stein, stein.mean(), stein_gn.mean()
    shortcut = ratio(dsig * gp[decl.identity_into]) if decl.identity_into else jnp.float32(0.0)

    # Completeness: ∂ℓ/∂h must be the declared readers' adjoints plus the shortcut.
    gh = jax.grad(lambda hs: arch.loss(arch.apply(params, batch, cfg, _ReaderTap(None, {tap: hs})),
                                       batch, cfg)[0])(jnp.zeros_like(h))
    rebuilt = sum(jax.vjp(lambda hh, r=r: r.apply(hh, flat[r.weight]), h)[1](gz[r.weight])[0]
                  for r in decl.readers)
    if decl.identity_into:
        rebuilt = rebuilt + gp[decl.identity_into]
    err = jnp.max(jnp.abs(gh - rebuilt)) / jnp.maximum(jnp.max(jnp.abs(gh)), 1e-30)
    return {"predicted": stein + shortcut, "measured": ratio(gp[tap]),
            "gauss_newton": planted_scale * stein_gn, "shortcut": shortcut, "kink": kink,
            "n_pos": pos.sum(), "reader_error": err, "predicted_probes": stein_probes + shortcut}


@dataclass(frozen=True)
class ReaderSeedValues:
    """One cluster (init seed): ratios in grad_pos_mean units; curvature = Stein − GN."""

    predicted: float
    measured: float
    gauss_newton: float
    shortcut: float
    kink: float
    n_pos: int

    @property
    def curvature(self) -> float:
        return self.predicted - self.shortcut - self.gauss_newton


@dataclass(frozen=True)
class ReaderTapRow(TapRow):
    """A ``TapRow`` plus the identity-shortcut term (exact autodiff, part of ``predicted``)
    and the ReLU-kink part of the curvature term (part of ``curvature``)."""

    shortcut: float = 0.0
    shortcut_se: float = 0.0
    kink: float = 0.0
    kink_se: float = 0.0
    kink_width: float = 0.0
    readers: str = ""


def run_reader_layers(spec: LayersSpec, n_checks: int | None = None,
                      taps: list[str] | None = None, progress=None,
                      on_choice=None) -> list[ReaderTapRow]:
    """Every tap of an architecture that declares ``readers(cfg)``: predicted vs measured,
    clustered over ``spec.seeds`` inits (seed s: PRNGKey(s) init, ``ds.sample("train", s, B, s)``).

    ``spec.probes`` Rademacher probes per reader (``"auto"``: chosen per tap by the pilot of
    montecarlo/layer_probes.py); ``spec.row_exact`` exact over the rows of each W (K²C HVPs
    per probe); ``spec.exact`` the full basis. The init's own W_r are used (``w_draws`` > 1
    is refused). Seeds run in vmapped blocks (montecarlo/layer_driver.py).
    """
    from driftlab.montecarlo.layer_driver import SeedBlocks, TapKernels, call_key
    from driftlab.models.measure.per_layer import drive_tap, with_choice

    if spec.seeds < 2:
        raise ValueError(f"seeds must be at least 2 (clustered SE), got {spec.seeds}")
    if spec.batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {spec.batch_size}")
    if spec.w_draws != 1:
        raise ValueError(f"w_draws={spec.w_draws} invalid for {spec.arch}; allowed: 1 (conv "
                         f"readers use the init's own weights)")
    arch, cfg = _config(spec)
    cfg, ds = arch.data(spec.data, cfg, 0)
    decls = tap_readers(arch, cfg)
    if decls is None:
        raise ValueError(f"arch {spec.arch!r} declares no readers(cfg); the conv-reader "
                         f"estimator does not apply")
    taps = list(decls) if taps is None else taps
    for t in taps:
        if t not in decls:
            raise ValueError(f"unknown tap {t!r}; valid: {', '.join(decls)}")
        _check_declared(t, decls[t])
    _hessian_act(cfg, KINK_WIDTH)  # refuses activations with an unestimated kink
    w_shapes = flatten_dict(jax.eval_shape(lambda: arch.init(jax.random.PRNGKey(0), cfg)))
    blocks = SeedBlocks(arch, cfg, ds, spec.batch_size, spec.seeds)
    rows = []
    for tap in taps:
        decl = decls[tap]

        def seed_fn(params, batch, key, call, mode, block, decl=decl, tap=tap):
            return per_seed(arch, cfg, params, batch, tap, decl, block, call_key(key, call), mode,
                            spec.planted_scale, spec.planted_curvature_sign)

        kernels = TapKernels(seed_fn, blocks, ("predicted_probes", "gauss_newton", "shortcut", "kink"))
        dims = [(int(np.prod(w_shapes[r.weight].shape[:-1])), int(w_shapes[r.weight].shape[-1]))
                for r in decl.readers]
        hvps = {"hutchinson": len(dims), "row_exact": sum(r for r, _ in dims),
                "exact": sum(r * c for r, c in dims)}
        values, choice = drive_tap(tap, spec, kernels, hvps, progress, on_choice)
        bad = max(v["reader_error"] for v in values)
        if bad > READER_TOLERANCE:
            raise ValueError(
                f"tap {tap!r}: h is read by more than the declared readers "
                f"({', '.join(r.weight for r in decl.readers)}"
                f"{', identity into ' + decl.identity_into if decl.identity_into else ''}; "
                f"relative mismatch {bad:.2g}); "
                f"the per-layer Stein estimator does not apply")
        values = [ReaderSeedValues(v["predicted"], v["measured"], v["gauss_newton"], v["shortcut"],
                                   v["kink"], int(v["n_pos"])) for v in values]
        gaussian = all(r.scheme in GAUSSIAN_SCHEMES for r in decl.readers)
        base = with_choice(summarize(tap, values, n_checks or len(taps), gaussian), choice)
        sc = MCResult.from_clusters([v.shortcut for v in values])
        kk = MCResult.from_clusters([v.kink for v in values])
        names = ", ".join(r.weight.removesuffix("/w") for r in decl.readers)
        if decl.identity_into:
            names += f", identity → {decl.identity_into}"
        rows.append(ReaderTapRow(**base.__dict__, shortcut=sc.mean, shortcut_se=sc.stderr,
                                 kink=kk.mean, kink_se=kk.stderr,
                                 kink_width=KINK_WIDTH if _act(cfg).name == "relu" else 0.0,
                                 readers=names))
    return rows


__all__ = ["has_readers", "tap_readers", "per_seed", "fixed_p_draws", "shapes", "ReaderSeedValues", "ReaderTapRow",
           "run_reader_layers", "READER_TOLERANCE", "norm_invariance_residuals"]


def norm_invariance_residuals(arch, cfg, params, batch, reader: str, key=None) -> dict:
    """How far ∇²_z ℓ at one reader's output z (B·H·W positions y × C' channels) is from the
    identities of a batch-statistics norm right after the reader (theory/per_layer.py):

    * shift invariance  Σ_{y'} H_{(y,c),(y',c')} = 0 for all c, c' (H·1_c = 0), hence the row sums
      Σ_{y'} T_{yy'} = Σ_c (H·1_c)_{y,c} = 0 and Σ_y ∂ℓ/∂z_{y,c} = 0;
    * scale invariance  Σ_{y'} H_{(y,c),(y',c)} z_{y',c} = −∂ℓ/∂z_{y,c}, i.e. H·z = −∇_z ℓ (up to
      the norm's ε, which breaks it at O(ε / Var z)).

    Returned as relative residuals: ``row_sum`` = max_y |Σ_{y'} T_{yy'}| over the same quantity with
    the all-ones direction of each channel replaced by Rademacher signs (a scale-matched
    reference, O(1) without the invariance), ``grad_sum`` = max_c |Σ_y ∂ℓ/∂z_{yc}| / Σ_y |∂ℓ/∂z_{yc}|,
    ``scale`` = max |H·z + ∇_z ℓ| / max |∇_z ℓ|. Row sums are computed by C' Hessian-vector
    products, one per channel's all-ones direction.
    """
    _, z_shapes = shapes(arch, cfg, params, batch)
    zero = jnp.zeros(z_shapes[reader].shape, jnp.float32)

    @jax.jit
    def residuals(params, batch, key):
        def loss_and_z(e):
            t = _ReaderTap(None, None, {reader: e})
            return arch.loss(arch.apply(params, batch, cfg, t), batch, cfg)[0], t.z[reader]

        grad_e = lambda e: jax.grad(lambda ee: loss_and_z(ee)[0])(e)
        hvp = lambda v: jax.jvp(grad_e, (zero,), (v,))[1]
        g = grad_e(zero)
        z = jax.lax.stop_gradient(loss_and_z(zero)[1])
        C = zero.shape[-1]
        signs = jax.random.rademacher(key, zero.shape, jnp.float32)

        def channel(c):
            onehot = jax.nn.one_hot(c, C)
            return hvp(jnp.ones_like(zero) * onehot)[..., c], hvp(signs * onehot)[..., c]

        ones_c, signs_c = jax.lax.map(channel, jnp.arange(C))
        row_sum = ones_c.sum(0)
        reference = (signs_c * jnp.moveaxis(signs, -1, 0)).sum(0)
        axes = tuple(range(g.ndim - 1))
        return {"row_sum": jnp.max(jnp.abs(row_sum)) / jnp.max(jnp.abs(reference)),
                "grad_sum": jnp.max(jnp.abs(g.sum(axes)) / jnp.abs(g).sum(axes)),
                "scale": jnp.max(jnp.abs(hvp(z) + g)) / jnp.max(jnp.abs(g))}

    out = residuals(params, batch, jax.random.PRNGKey(0) if key is None else key)
    return {k: float(v) for k, v in out.items()}


def fixed_p_draws(arch, cfg, params, batch, tap: str, draws: int, probes: int = 2,
                  first_key: int = 100, **per_seed_kw) -> dict:
    """:func:`per_seed` over ``draws`` fresh draws of the tap's reader weights W_r (the init
    scheme's, keys ``first_key`` …) at one fixed p: params other than the W_r and the batch
    are held, so every draw's ``predicted`` and ``measured`` have the same mean E_W[· | p].
    This is the conditional setting where the ReLU-kink term is large. Returns
    {field: float64 array of length ``draws``}."""
    decl = tap_readers(arch, cfg)[tap]
    w_init = get_init(cfg.init, cfg.gain)

    def one(key):
        redrawn = jax.tree_util.tree_map(lambda x: x, params)
        for i, r in enumerate(decl.readers):
            *parents, leaf = r.weight.split("/")
            node = redrawn
            for part in parents:
                node = node[part]
            node[leaf] = w_init(jax.random.fold_in(key, i), node[leaf].shape,
                                *r.fans(node[leaf].shape))
        return per_seed(arch, cfg, redrawn, batch, tap, decl, probes,
                        jax.random.fold_in(key, 99), **per_seed_kw)

    fn = jax.jit(one)
    outs = [jax.device_get(fn(jax.random.PRNGKey(first_key + k))) for k in range(draws)]
    return {k: np.array([o[k] for o in outs], np.float64) for k in outs[0]}
