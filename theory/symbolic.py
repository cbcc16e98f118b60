"""SymPy forms of every activation and the Gaussian closed forms derived from them.

Notation (docs/theory.md): σ is the activation, σ' its derivative, φ and Φ the standard
normal density and distribution function. Two Gaussian moments of σσ' carry every
theorem:

    H(τ) = E[σ(τZ)σ'(τZ) | Z > 0]     (positive pre-activations, Z ~ N(0, 1))
    m(τ) = E[σ(τZ)σ'(τZ)]             (all pre-activations)

``closed_form_H`` / ``closed_form_m`` return SymPy expressions in τ (and the clip c)
where SymPy's integrator finds one; the numeric tier in ``theory.gaussian`` covers the
rest by quadrature of the same SymPy expressions.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

z = sp.Symbol("z", real=True)
tau = sp.Symbol("tau", positive=True)
c = sp.Symbol("c", positive=True)

Phi = (1 + sp.erf(z / sp.sqrt(2))) / 2
phi = sp.exp(-z**2 / 2) / sp.sqrt(2 * sp.pi)
_gelu = z * Phi
_relu = sp.Piecewise((z, z > 0), (0, True))


def activation_expr(name: str, clip: float | None = None) -> sp.Expr:
    """σ(z) as a SymPy expression; clipped forms use the symbol c unless ``clip`` is given."""
    cc = c if clip is None else sp.nsimplify(clip)
    forms = {
        "relu": _relu,
        "gelu": _gelu,
        "silu": z / (1 + sp.exp(-z)),
        "tanh": sp.tanh(z),
        "identity": z,
        "relu2": sp.Piecewise((z**2, z > 0), (0, True)),
        # min(ReLU(z)², c): zero gradient where the clip is active, as in the paper's code.
        "clipped_relu2": sp.Piecewise((0, z <= 0), (z**2, z < sp.sqrt(cc)), (cc, True)),
        "gelu2": _gelu**2,
        "clipped_gelu2": sp.Min(_gelu**2, cc),
    }
    if name not in forms:
        raise ValueError(f"no symbolic form for activation {name!r}; valid: {', '.join(forms)}")
    return forms[name]


def sigma_dsigma(name: str, clip: float | None = None) -> sp.Expr:
    """σ(z)·σ'(z), the function whose Gaussian moments give E[g | p] (Stein's lemma)."""
    s = activation_expr(name, clip)
    return sp.piecewise_fold(s * sp.diff(s, z))


def is_odd(expr: sp.Expr) -> bool:
    """True when expr(−z) = −expr(z) identically (then m(τ) = 0: no drift)."""
    return sp.simplify(expr.subs(z, -z) + expr) == 0


# Activations whose H and m SymPy integrates in closed form (verified against quadrature
# in theory/tests). GELU, SiLU and the squared GELUs have none: quadrature tier.
CLOSED_FORM = ("relu", "relu2", "clipped_relu2", "identity", "tanh")


@lru_cache(maxsize=None)
def closed_form_H(name: str) -> sp.Expr:
    """H(τ) = 2∫₀^∞ σ(τz)σ'(τz) φ(z) dz in closed form (clip threshold symbol c)."""
    if name not in CLOSED_FORM or name == "tanh":
        raise ValueError(f"H(τ) has no closed form here for {name!r}")
    pos = {"relu": z, "relu2": 2 * z**3, "identity": z}.get(name)
    if pos is not None:  # on z > 0 the Piecewise reduces to one branch
        return sp.simplify(2 * sp.integrate(pos.subs(z, tau * z) * phi, (z, 0, sp.oo)))
    # clipped ReLU²: σσ' = 2z³ on 0 < z < √c, 0 beyond (σ' = 0 where clipped)
    a = sp.sqrt(c) / tau
    return sp.simplify(2 * sp.integrate(2 * (tau * z)**3 * phi, (z, 0, a)))


@lru_cache(maxsize=None)
def closed_form_m(name: str) -> sp.Expr:
    """m(τ) = ∫ σ(τz)σ'(τz) φ(z) dz in closed form (clip threshold symbol c)."""
    if name not in CLOSED_FORM:
        raise ValueError(f"m(τ) has no closed form here for {name!r}")
    if is_odd(sigma_dsigma(name)):
        return sp.Integer(0)
    # σσ' vanishes on z ≤ 0 for the ReLU family, so m = H/2.
    return sp.simplify(closed_form_H(name) / 2)


@lru_cache(maxsize=None)
def chi_moment(a: int | sp.Expr = None) -> sp.Expr:
    """E[r^a] for r = ‖x‖, x ~ N(0, I_d): derived by integrating the χ_d density.

    Returns a SymPy expression in the symbols d and a (a = None keeps a symbolic).
    """
    d = sp.Symbol("d", positive=True)
    aa = sp.Symbol("a", positive=True) if a is None else a
    r = sp.Symbol("r", positive=True)
    density = r**(d - 1) * sp.exp(-r**2 / 2) / (2**(d / 2 - 1) * sp.gamma(d / 2))
    return sp.simplify(sp.integrate(r**aa * density, (r, 0, sp.oo), conds="none"))
