"""The symbolic derivation: Stein's lemma, the chain-rule step, Hessian traces, closed forms."""

import math

import numpy as np
import pytest
import sympy as sp

from driftlab.theory import gaussian, stein, symbolic
from driftlab.theory.expected_grad import _clipped_relu2_H
from driftlab.testing import assert_close


@pytest.mark.parametrize("G", [stein.w**3 + 2 * stein.w, sp.exp(stein.w / 3), sp.sin(stein.w), stein.w**4])
def test_stein_lemma_both_sides_integrate_equal(G):
    lhs, rhs = stein.stein_lemma(G)
    assert sp.simplify(lhs - rhs) == 0


def test_stein_lemma_distinguishes_wrong_variance():
    lhs, rhs = stein.stein_lemma(stein.w**3)
    assert sp.simplify(lhs - rhs / stein.s) != 0  # s instead of s² would be caught


def test_integration_by_parts_kernel_vanishes():
    assert stein.stein_density_identity() == 0


@pytest.mark.parametrize("loss_name", ["mse", "ce"])
def test_chain_rule_step_gives_hessian_trace(loss_name):
    k = 3
    y = sp.Matrix(sp.symbols("y0:3", real=True))
    loss = (lambda f: stein.mse_loss(f, y)) if loss_name == "mse" else (lambda f: stein.cross_entropy_loss(f, 1))
    assert stein.chain_rule_step(loss, n=2, k=k) == 0


@pytest.mark.parametrize("k", [2, 3, 4])
def test_cross_entropy_hessian_trace_is_softmax_norm_deficit(k):
    f = sp.Matrix(sp.symbols(f"f0:{k}", real=True))
    for label in range(k):
        trace = stein.hessian_trace(stein.cross_entropy_loss(f, label), f)
        assert sp.simplify(trace - stein.softmax_norm_deficit(f)) == 0


def test_mse_hessian_trace_is_k():
    f, y = sp.Matrix(sp.symbols("f0:4", real=True)), sp.Matrix(sp.symbols("y0:4", real=True))
    assert stein.hessian_trace(stein.mse_loss(f, y), f) == 4
    assert stein.hessian_trace(stein.mse_loss(f, y, "mean"), f) == 1


@pytest.mark.parametrize("n,k", [(1, 1), (2, 3), (3, 2)])
def test_exact_moment_algebra_reproduces_theorem(n, k):
    s2 = sp.Symbol("s2", positive=True)
    for reduction, factor in (("sum", k), ("mean", 1)):
        got = stein.expected_dl_dh_mse_exact(n, k, reduction)
        for i in range(n):
            h_i = sp.Symbol(f"h_{i}_0", real=True)
            assert sp.simplify(got[i] - factor * s2**2 * h_i) == 0


def test_nonzero_mean_couples_units():
    got = stein.expected_dl_dh_nonzero_mean(n=2, k=3)
    s2, mu = sp.Symbol("s2", positive=True), sp.Symbol("mu", real=True)
    h0, h1 = sp.Symbol("h_0_0", real=True), sp.Symbol("h_1_0", real=True)
    assert sp.simplify(got - 3 * (s2**2 * h0 + mu**2 * (h0 + h1))) == 0


def test_gaussian_expectation_moments():
    x = sp.Symbol("x", real=True)
    assert stein.gaussian_expectation(x**4 + x**3 + x**2, {x: sp.Integer(2)}) == 3 * 4 + 2


@pytest.mark.parametrize("name", ["tanh", "identity"])
def test_odd_activations_have_no_drift_moment(name):
    assert symbolic.is_odd(symbolic.sigma_dsigma(name))
    assert symbolic.closed_form_m(name) == 0


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "relu2", "gelu2"])
def test_positively_biased_are_not_odd(name):
    assert not symbolic.is_odd(symbolic.sigma_dsigma(name))


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "tanh", "relu2", "clipped_relu2:1", "gelu2",
                                  "clipped_gelu2:1"])
def test_sigma_dsigma_nonnegative_on_positive_preactivations(name):
    """The pointwise fact behind the sign theorem: σσ'(z) ≥ 0 for z > 0 (dense grid)."""
    z = np.linspace(1e-6, 12, 20001)
    assert np.all(gaussian.sigma_dsigma_numeric(name)(z) >= 0)
    assert np.any(gaussian.sigma_dsigma_numeric(name)(z) > 0)


@pytest.mark.parametrize("name", ["relu", "relu2", "identity"])
@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_closed_form_H_matches_quadrature(name, tau):
    closed = float(symbolic.closed_form_H(name).subs(symbolic.tau, tau))
    # tol: H by quadrature against the closed form: the quadrature rule's error, not rounding
    assert gaussian.H(name, tau) == pytest.approx(closed, rel=1e-10)


@pytest.mark.parametrize("tau,clip", [(0.5, 1.0), (1.0, 1.0), (2.0, 15.0), (0.7, 0.2)])
def test_clipped_relu2_closed_form(tau, clip):
    sym = float(symbolic.closed_form_H("clipped_relu2").subs({symbolic.tau: tau, symbolic.c: clip}))
    assert_close(_clipped_relu2_H(tau, clip), sym, kind="ops")
    # tol: H by quadrature (a kinked integrand at the clip) against the closed form
    assert gaussian.H(f"clipped_relu2:{clip:g}", tau) == pytest.approx(sym, rel=1e-9)


@pytest.mark.parametrize("name", ["relu", "relu2"])
def test_m_is_half_H_for_the_relu_family(name):
    assert sp.simplify(symbolic.closed_form_m(name) - symbolic.closed_form_H(name) / 2) == 0
    # tol: m and H are two separate quadratures
    assert gaussian.m(name, 0.9) == pytest.approx(gaussian.H(name, 0.9) / 2, rel=1e-10)


@pytest.mark.parametrize("a,d", [(1, 1), (1, 32), (3, 16), (2, 7)])
def test_chi_moment_symbolic_numeric_and_quadrature(a, d):
    sym = float(symbolic.chi_moment().subs({sp.Symbol("a", positive=True): a, sp.Symbol("d", positive=True): d}))
    assert_close(gaussian.chi_moment(a, d), sym, kind="ops")
    # tol: E over the χ_d law by quadrature against the Gamma-function closed form
    assert gaussian.chi_expectation(lambda r: r**a, d) == pytest.approx(sym, rel=1e-9)


def test_relu_theorem_closed_form_from_theory_md():
    """E[g|p>0] = k·s2²·s1·E‖x‖·√(2/π), E‖x‖ = √2 Γ((d+1)/2)/Γ(d/2)."""
    from driftlab.theory.expected_grad import expected_grad_positive_mse
    from driftlab.theory.setting import BlockSetting

    s = BlockSetting(d_in=32, width=64, d_out=10, gain=1.3)
    e_norm = math.sqrt(2) * math.gamma(16.5) / math.gamma(16)
    expect = 10 * s.s2**2 * s.s1 * e_norm * math.sqrt(2 / math.pi)
    assert_close(expected_grad_positive_mse(s).value, expect, kind="ops")
