"""Numeric tier: the Gaussian moments H(τ), m(τ) and the χ_d mixture, by quadrature.

Every function here integrates the SymPy expressions of ``theory.symbolic`` (lambdified),
so the closed forms and the quadrature share one definition of σ. Quadrature splits the
range at every kink (0 and the clip point) and is converged to ~1e-12 relative; tests
compare it with the closed forms where those exist.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy as sp
from scipy import integrate, optimize, special

from driftlab.activations import parse_activation
from driftlab.theory import symbolic

_QUAD = dict(epsabs=1e-300, epsrel=1e-12, limit=200)
# φ(t) < 1e-347 beyond |t| = 40: truncating there is exact in double precision and keeps
# σσ'(τt) away from the overflow of exp(−z) in the SymPy form of SiLU.
_T_MAX = 40.0


@lru_cache(maxsize=None)
def sigma_dsigma_numeric(act: str):
    """σσ' as a NumPy ufunc-like callable for activation spec ``act`` (e.g. 'clipped_relu2:1')."""
    a = parse_activation(act)
    expr = symbolic.sigma_dsigma(a.name, a.clip)
    fn = sp.lambdify(symbolic.z, expr, modules=[{"erf": special.erf}, "numpy"])
    return lambda x: np.asarray(fn(np.asarray(x, dtype=float)), dtype=float) * np.ones_like(x, dtype=float)


@lru_cache(maxsize=None)
def kinks(act: str) -> tuple[float, ...]:
    """Points where σσ' is not smooth (0, and ±clip points); quadrature splits there."""
    a = parse_activation(act)
    points = [0.0]
    if a.name == "clipped_relu2":
        points.append(math.sqrt(a.clip))
    elif a.name == "clipped_gelu2":
        gelu = lambda x: x * 0.5 * (1 + math.erf(x / math.sqrt(2)))
        points.append(optimize.brentq(lambda x: gelu(x) ** 2 - a.clip, 0.0, 10 * math.sqrt(a.clip) + 10))
    return tuple(points)


def _integrate_against_normal(fn, tau: float, lo: float, hi: float, breaks) -> float:
    """∫_lo^hi fn(τz) φ(z) dz, split at the given kinks (in units of the pre-activation)."""
    if tau == 0.0:
        return float(fn(0.0)) * float(special.ndtr(hi) - special.ndtr(lo))
    edges = [lo] + sorted(b / tau for b in breaks if lo < b / tau < hi) + [hi]
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        val, _ = integrate.quad(lambda t: fn(tau * t) * math.exp(-0.5 * t * t), a, b, **_QUAD)
        total += val
    return total / math.sqrt(2 * math.pi)


def H(act: str, tau: float) -> float:
    """H(τ) = E[σ(τZ)σ'(τZ) | Z > 0], Z ~ N(0,1), by quadrature."""
    return 2.0 * _integrate_against_normal(sigma_dsigma_numeric(act), tau, 0.0, _T_MAX, kinks(act))


def m(act: str, tau: float) -> float:
    """m(τ) = E[σ(Z)σ'(Z)], Z ~ N(0, τ²), by quadrature."""
    fn, br = sigma_dsigma_numeric(act), kinks(act)
    return (_integrate_against_normal(fn, tau, -_T_MAX, 0.0, br)
            + _integrate_against_normal(fn, tau, 0.0, _T_MAX, br))


def chi_expectation(fn, d: int) -> float:
    """E[fn(r)] for r = ‖x‖, x ~ N(0, I_d) (χ_d law), by quadrature in r."""
    log_norm = (d / 2 - 1) * math.log(2) + math.lgamma(d / 2)
    density = lambda r: math.exp((d - 1) * math.log(r) - r * r / 2 - log_norm) if r > 0 else 0.0
    # χ_d has mean ≈ √d and s.d. < 0.75: ±20 s.d. loses nothing at double precision.
    lo, hi = max(0.0, math.sqrt(d) - 15.0), math.sqrt(d) + 15.0
    val, _ = integrate.quad(lambda r: fn(r) * density(r), lo, hi, epsabs=0.0, epsrel=1e-11, limit=200)
    return val


def chi_moment(a: float, d: int) -> float:
    """E[r^a] = 2^{a/2} Γ((d+a)/2) / Γ(d/2) (derived symbolically in symbolic.chi_moment)."""
    return math.exp(a / 2 * math.log(2) + math.lgamma((d + a) / 2) - math.lgamma(d / 2))


@lru_cache(maxsize=None)
def activation_numeric(act: str):
    """σ as a NumPy callable, lambdified once from its SymPy form."""
    a = parse_activation(act)
    fn = sp.lambdify(symbolic.z, symbolic.activation_expr(a.name, a.clip),
                     modules=[{"erf": special.erf}, "numpy"])
    return lambda x: float(fn(x))


def mean_and_second_moment(act: str, tau: float) -> tuple[float, float]:
    """(E[σ(τZ)], E[σ(τZ)²]), Z ~ N(0,1): the per-unit mean and second moment of h."""
    f, br = activation_numeric(act), kinks(act)
    halves = ((-_T_MAX, 0.0), (0.0, _T_MAX))
    mean = sum(_integrate_against_normal(f, tau, lo, hi, br) for lo, hi in halves)
    sq = sum(_integrate_against_normal(lambda x: f(x) ** 2, tau, lo, hi, br) for lo, hi in halves)
    return mean, sq
