"""The one way tests compare numbers: bit-identical, float-close, or Monte Carlo agreement.

* ``assert_same(a, b)``: a and b are the same pytree with bit-identical leaves (shape,
  dtype, bytes; NaN equals NaN). For determinism claims: same seed → same result.
* ``assert_close(a, b, dtype=None, kind="rounding")``: |a − b| ≤ rtol·|b| + atol·‖b‖∞ leaf by
  leaf, with (rtol, atol) read from ``TOLERANCES``, one per-dtype table derived from each
  dtype's machine epsilon ε. For two computations of the same mathematical quantity that
  differ only by rounding.
* ``assert_mc_agrees(estimate, se, target)``: |m − t| / √(se² + se_t²) ≤ z*, with z* the
  suite's own Bonferroni threshold (montecarlo/stats.suite_threshold) spent over
  ``TEST_MC_CHECKS`` Monte Carlo assertions, so the whole test suite keeps the false-alarm
  budget α = 10⁻³ of the theorem suite (README, "Decision rule").

A comparison that needs another tolerance (a quadrature error bound, a float32 accumulation
over N terms, a statistical margin that is not a standard error) passes it explicitly and
says why in a ``# tol:`` comment on that line or the line above;
tests/test_float_comparisons.py fails on a float comparison without one.

It lives inside the installed package (not tests/) because tests/ and theory/tests/ run
under ``--import-mode=importlib`` and cannot import each other's helpers.
"""

from __future__ import annotations

import numpy as np

from driftlab.montecarlo.stats import SUITE_FALSE_ALARM, suite_threshold, z_score

# Machine epsilon 2^-(mantissa bits) of each float dtype the suite computes in.
EPS = {"float64": 2.0 ** -52, "float32": 2.0 ** -23, "bfloat16": 2.0 ** -7}

# (dtype, kind) → (rtol, atol) as multiples of that dtype's ε. ``atol`` is relative to the
# largest |b| in the leaf: rounding error is proportional to the operands' magnitude, which
# for an element that cancels to ≈ 0 is the array's scale, not the element's own.
TOLERANCES_IN_EPS = {
    # "rounding": the same operations up to a couple of roundings (a cast, one reordered
    # sum of a few terms, jit vs eager of an elementwise formula): each rounding costs ≤ ½ ε,
    # so 4 ε; a 10 ε error already fails.
    ("float64", "rounding"): (4, 4),         # ≈ 8.9e-16
    ("float32", "rounding"): (4, 4),         # ≈ 4.8e-7
    ("bfloat16", "rounding"): (1, 1),        # ≈ 7.8e-3: one rounding to 8 significant bits
    # "ops": the same formula through a chain of operations in another order or library
    # (a layer vs its NumPy reference, fused vs unfused, a transcendental from scipy vs
    # jax): a few dozen roundings with modest condition numbers stay below 64 ε.
    ("float64", "ops"): (64, 64),            # ≈ 1.4e-14
    ("float32", "ops"): (64, 64),            # ≈ 7.6e-6
    # bfloat16 is rounded once from a float32 accumulator, and the reference's own cast
    # is a second rounding: 2 ε.
    ("bfloat16", "ops"): (2, 2),             # ≈ 1.6e-2
    # "reduction": sums over many terms in another order (matmul vs einsum, a mean of
    # 10³–10⁶ values, attention's softmax-weighted sums): worst-case error grows like n·ε,
    # typically √n·ε; 2^10 ε covers √n·ε for n up to 10⁶ and n·ε for n up to 10³.
    ("float64", "reduction"): (2 ** 10, 2 ** 10),   # ≈ 2.3e-13
    ("float32", "reduction"): (2 ** 10, 2 ** 10),   # ≈ 1.2e-4
    # bfloat16 reductions accumulate in float32 and round the result: the cast dominates,
    # plus one more ε for inputs that were themselves rounded to bfloat16.
    ("bfloat16", "reduction"): (4, 4),       # ≈ 3.1e-2
}
TOLERANCES = {key: (r * EPS[key[0]], a * EPS[key[0]]) for key, (r, a) in TOLERANCES_IN_EPS.items()}
KINDS = ("rounding", "ops", "reduction")

# Upper bound on the number of Monte Carlo assertions in the test suite (tests/ and
# theory/tests/), counting an array estimate as one per element; tests/test_float_comparisons.py
# checks the count of assert_mc_agrees calls stays below it. Bonferroni over this many checks
# keeps P(any false alarm in one suite run) ≤ SUITE_FALSE_ALARM when every claim holds.
TEST_MC_CHECKS = 200


def _leaves(tree):
    """(path, leaf) pairs and the tree structure, through jax when it is importable."""
    import jax

    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in flat], treedef


def _pairs(a, b):
    la, ta = _leaves(a)
    lb, tb = _leaves(b)
    if ta != tb:
        raise AssertionError(f"pytree structures differ:\n  {ta}\n  {tb}")
    return [(path or "<root>", x, y) for (path, x), (_, y) in zip(la, lb)]


def _float_dtype(x) -> str:
    """The name of x's dtype; Python scalars count as float64 (how NumPy promotes them)."""
    if isinstance(x, (bool, int, float)):
        return "float64"
    return str(np.asarray(x).dtype)


def assert_same(a, b, err_msg: str = "") -> None:
    """a and b are bit-identical pytrees: same structure, and every leaf has the same shape,
    dtype and bytes, except that NaN equals NaN (any payload). 0.0 and −0.0 differ.

    No tolerance: this is for claims that a computation is deterministic or that two paths
    run the same float operations (same seed, resume vs uninterrupted, worker count)."""
    for path, x, y in _pairs(a, b):
        where = f"{path}{': ' + err_msg if err_msg else ''}"
        if not (hasattr(x, "shape") or hasattr(y, "shape")) and not isinstance(x, float):
            if type(x) is not type(y) or x != y:
                raise AssertionError(f"{where}: {x!r} != {y!r}")
            continue
        xa, ya = np.asarray(x), np.asarray(y)
        if xa.shape != ya.shape or xa.dtype != ya.dtype:
            raise AssertionError(f"{where}: shape/dtype {xa.shape} {xa.dtype} != {ya.shape} {ya.dtype}")
        if np.issubdtype(xa.dtype, np.inexact) or xa.dtype.kind == "V" or "float" in str(xa.dtype):
            nx, ny = np.isnan(xa.astype(np.float64)), np.isnan(ya.astype(np.float64))
            if not np.array_equal(nx, ny):
                raise AssertionError(f"{where}: NaN at different positions")
            xa, ya = np.where(nx, 0, xa).astype(xa.dtype), np.where(ny, 0, ya).astype(ya.dtype)
        xb = np.ascontiguousarray(xa).tobytes()
        yb = np.ascontiguousarray(ya).tobytes()
        if xb != yb:
            xv = np.ascontiguousarray(xa).view(np.uint8).reshape(xa.size, -1)
            yv = np.ascontiguousarray(ya).view(np.uint8).reshape(ya.size, -1)
            bad = np.flatnonzero((xv != yv).any(-1))
            first = np.unravel_index(int(bad[0]), xa.shape) if xa.ndim else ()
            raise AssertionError(f"{where}: not bit-identical ({bad.size} of {xa.size} elements "
                                 f"differ; first at {tuple(int(i) for i in first)}: "
                                 f"{xa[first]!r} vs {ya[first]!r})")


def tolerance(dtype: str, kind: str = "rounding") -> tuple[float, float]:
    """(rtol, atol) of ``TOLERANCES`` for a dtype name and a kind; a wrong one is named."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: allowed {KINDS}")
    if (dtype, kind) not in TOLERANCES:
        raise ValueError(f"dtype={dtype!r}: allowed {sorted({d for d, _ in TOLERANCES})}")
    return TOLERANCES[dtype, kind]


def _coarsest(*dtypes: str) -> str:
    known = [d for d in dtypes if d in EPS]
    if not known:
        raise ValueError(f"no float dtype among {dtypes}: pass dtype= (allowed {sorted(EPS)})")
    return max(known, key=EPS.__getitem__)


def assert_close(a, b, dtype: str | None = None, kind: str = "rounding", *, scale: float | None = None,
                 rtol: float | None = None, atol: float | None = None, err_msg: str = "") -> None:
    """|a − b| ≤ rtol·|b| + atol·max|b| for every leaf of the pytrees a and b (b the reference).

    (rtol, atol) come from ``TOLERANCES[dtype, kind]``: ``dtype`` defaults to the coarser of
    the two leaves' float dtypes (Python floats count as float64; integer leaves must match
    exactly), ``kind`` is "rounding" (a couple of roundings apart, 4 ε), "ops" (a chain of
    operations in another order or library, 64 ε) or "reduction" (sums over many terms in
    another order, 2^10 ε). ``scale`` replaces max|b| as the operands' magnitude where the
    reference is ≈ 0 by cancellation (a normalized mean: the operands are O(1), b is 0). Explicit ``rtol``/``atol`` replace the table's, for a tolerance that
    is not rounding (a quadrature bound, a printed precision); the caller says why in a
    ``# tol:`` comment. ``atol`` given explicitly is absolute, not scaled by max|b|."""
    for path, x, y in _pairs(a, b):
        xa, ya = np.asarray(x), np.asarray(y)
        where = f"{path}{': ' + err_msg if err_msg else ''}"
        if xa.shape != ya.shape and ya.size != 1:
            raise AssertionError(f"{where}: shape {xa.shape} != {ya.shape}")
        if not (np.issubdtype(xa.dtype, np.inexact) or np.issubdtype(ya.dtype, np.inexact)
                or "float" in str(xa.dtype) + str(ya.dtype)) and dtype is None and rtol is None:
            if not np.array_equal(xa, ya):
                raise AssertionError(f"{where}: integer leaves differ: {xa!r} vs {ya!r}")
            continue
        d = dtype or _coarsest(_float_dtype(x), _float_dtype(y))
        r, at = tolerance(d, kind)
        xf, yf = xa.astype(np.float64), ya.astype(np.float64)
        mag = scale if scale is not None else (float(np.max(np.abs(yf))) if yf.size else 0.0)
        r = r if rtol is None else rtol
        at = at * mag if atol is None else atol
        if rtol is not None and atol is None:
            at = 0.0
        err = np.abs(xf - yf)
        bound = r * np.abs(yf) + at
        ok = (err <= bound) | ((xf == yf) & np.isfinite(yf)) | (np.isnan(xf) & np.isnan(yf))
        if not np.all(ok):
            bad = np.argwhere(~np.broadcast_to(ok, np.broadcast_shapes(ok.shape, xf.shape)))
            i = tuple(int(k) for k in bad[0]) if bad.size else ()
            xi = xf[i] if xf.ndim else xf
            yi = np.broadcast_to(yf, xf.shape)[i] if xf.ndim else yf
            raise AssertionError(
                f"{where}: {len(bad)} of {max(xf.size, 1)} elements not close at "
                f"{d}/{kind} (rtol={r:.3g}, atol={at:.3g}); first at {i}: {xi!r} vs {yi!r}, "
                f"|diff|={abs(xi - yi):.3g}")


def mc_threshold(one_sided: bool = False, elements: int = 1) -> float:
    """z* for one Monte Carlo assertion of the test suite (``elements`` checks in one call)."""
    return suite_threshold(TEST_MC_CHECKS * elements, one_sided=one_sided, alpha=SUITE_FALSE_ALARM)


def assert_mc_agrees(estimate, se=None, target=0.0, target_se=0.0, *, side: str = "both",
                     err_msg: str = "") -> None:
    """A Monte Carlo estimate m ± se agrees with a target t ± se_t at the suite's threshold:
    z = (m − t)/√(se² + se_t²) satisfies |z| ≤ z* (``side="both"``), z ≤ z* ("below": m is
    not above t), or z ≥ −z* ("above": m is not below t).

    z* = montecarlo/stats.suite_threshold over ``TEST_MC_CHECKS`` assertions: with every
    claim true the test suite fails by chance with probability ≤ α = 10⁻³, the theorem
    suite's own budget. ``estimate`` may be an ``MCResult`` (its stderr is the se) or an
    array with an array of SEs, each element one check (z* spends the call's share of α
    over them). se must be an honest standard error (clustered over independent draws,
    montecarlo/stats.py); a margin that is not one is no job for this function."""
    if side not in ("both", "above", "below"):
        raise ValueError(f"side={side!r}: allowed ('both', 'above', 'below')")
    if se is None:
        if not hasattr(estimate, "stderr"):
            raise ValueError("se is required unless estimate is an MCResult")
        estimate, se = estimate.mean, estimate.stderr
    m, s, t, st = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (estimate, se, target, target_se)))
    if np.any(s < 0) or np.any(st < 0) or not np.all(np.isfinite(s)):
        raise ValueError(f"standard errors must be finite and ≥ 0: se={se!r}, target_se={target_se!r}")
    z_star = mc_threshold(one_sided=side != "both", elements=max(m.size, 1))
    z = np.array([z_score(float(a), float(b), float(c), float(d))
                  for a, b, c, d in zip(m.ravel(), s.ravel(), t.ravel(), st.ravel())]).reshape(m.shape)
    bad = {"both": np.abs(z) > z_star, "below": z > z_star, "above": z < -z_star}[side]
    bad = bad | np.isnan(z)
    if np.any(bad):
        i = tuple(int(k) for k in np.argwhere(bad)[0]) if m.ndim else ()
        raise AssertionError(
            f"Monte Carlo disagrees with its target ({side}){' at ' + str(i) if i else ''}"
            f"{': ' + err_msg if err_msg else ''}: estimate={m[i]:.6g}, se={s[i]:.3g}, "
            f"target={t[i]:.6g}, target_se={st[i]:.3g}, z={z[i]:.3g}, threshold z*={z_star:.3f} "
            f"(α={SUITE_FALSE_ALARM:g} over {TEST_MC_CHECKS} test checks)")


__all__ = ["assert_same", "assert_close", "assert_mc_agrees", "mc_threshold", "tolerance",
           "TOLERANCES", "TOLERANCES_IN_EPS", "EPS", "KINDS", "TEST_MC_CHECKS"]
