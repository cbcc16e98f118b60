"""theory/trajectory.py: the expansion's weights (SGD, momentum, SymPy) and its polynomial on a
model where the exact trajectory is known, with planted errors in b that must be caught."""

import numpy as np
import pytest

from driftlab.theory import trajectory as th
from driftlab.testing import assert_close


def test_sgd_weights_are_t_and_pairs():
    w = th.weights(7, 0.0)
    t = np.arange(8)
    np.testing.assert_array_equal(w["W1"], t)
    np.testing.assert_array_equal(w["W2"], t * (t - 1) / 2)
    np.testing.assert_array_equal(w["S2"], t)


def test_momentum_weights_match_sympy_and_unrolled_recursion():
    beta = th.optimizer_beta("momentum")
    w = th.weights(9, beta)
    sym = th.symbolic_weights()
    for t in range(1, 10):
        for k in ("W1", "W2", "S2"):
            got = float(sym[k].subs({sym["t"]: t, sym["beta"]: beta}))
            # tol: SymPy substitutes a float β and evaluates with 15-digit Floats (2e-13 seen)
            assert got == pytest.approx(w[k][t], rel=1e-9), (k, t)
    # the unrolled heavy-ball recursion: θ_t − θ₀ = −η Σ_r w_r(t) g_r with m_r = g_r + β m_{r−1}
    g = np.random.default_rng(0).standard_normal(9)
    m, theta = 0.0, 0.0
    for r in range(9):
        m = g[r] + beta * m
        theta -= m
    assert_close(theta, -np.dot(th.step_weights(9, beta), g), kind="ops")


def test_symbolic_weights_reduce_to_sgd():
    import sympy as sp

    sym = th.symbolic_weights()
    t, b = sym["t"], sym["beta"]
    for k, sgd in (("W1", t), ("W2", t * (t - 1) / 2), ("S2", t)):
        expr = sym[k].args[-1][0] if isinstance(sym[k], sp.Piecewise) else sym[k]
        while isinstance(expr, sp.Piecewise):
            expr = expr.args[-1][0]
        assert sp.simplify(sp.limit(expr, b, 0) - sgd) == 0, k


def test_adamw_is_refused():
    with pytest.raises(ValueError, match="not linear"):
        th.optimizer_beta("adamw")


def _quadratic(lr, steps, beta=0.0):
    """ℓ(θ; x) = ½θᵀAθ − xᵀθ, E x = m: g = Aθ − x, H = A. Exact E θ_t by the recursion."""
    rng = np.random.default_rng(1)
    n = 6
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = Q @ np.diag(np.linspace(0.5, 3.0, n)) @ Q.T
    theta0, mvec = rng.standard_normal(n), rng.standard_normal(n)
    th_, mom, exact = theta0.copy(), np.zeros(n), [0.0]
    for _ in range(steps):
        mom = (A @ th_ - mvec) + beta * mom
        th_ = th_ - lr * mom
        exact.append(float(np.mean(th_ - theta0)))
    gbar = A @ theta0 - mvec
    coef = {"c0": 0.0, "c1": float(np.mean(gbar)), "c2": float(np.mean(A @ gbar))}
    return np.array(exact), coef


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_second_order_exact_within_horizon_and_planted_b_caught(beta):
    lr, steps = 0.004, 60
    exact, coef = _quadratic(lr, steps, beta)
    wts = th.weights(steps, beta)
    pred = th.polynomial(coef, lr, wts)
    horizon = th.horizon_steps(coef["c1"], coef["c2"], 0.0, lr)
    t = np.arange(steps + 1)
    inside = (t >= 1) & (t <= min(horizon, steps)) & (wts["W1"] * lr * abs(coef["c2"] / coef["c1"])
                                                       <= th.HORIZON_FRACTION)
    assert inside.sum() >= 5
    scale = np.abs(exact[inside])
    err2 = np.abs(pred["second_order"][inside, 0] - exact[inside]) / scale
    err1 = np.abs(pred["first_order"][inside, 0] - exact[inside]) / scale
    # the remainder is third order: a fraction of the second-order term's share (≤ κ/2)
    assert err2.max() < 0.3 * err1.max()
    # a planted error in b: the sign flip is 3× the remainder everywhere it matters; the 10%
    # one dominates the remainder early (it is O(η²t²), the remainder O(η³t³)), not at the edge
    flip = th.polynomial(coef, lr, wts, second_scale=-1.0)["second_order"][inside, 0]
    assert (np.abs(flip - exact[inside]) / scale).max() > 3 * err2.max()
    ten = th.polynomial(coef, lr, wts, second_scale=1.1)["second_order"][inside, 0]
    assert (np.abs(ten - exact[inside]) / np.maximum(np.abs(pred["second_order"][inside, 0]
                                                            - exact[inside]), 1e-300)).max() > 2


def test_overlap_weights_vanish_within_one_epoch():
    over = th.overlap_weights(20, 0.0, 8, n=1000)  # 125 steps per epoch
    assert not over["V1"].any() and not over["V2"].any()
    over = th.overlap_weights(12, 0.0, 8, n=40)  # 5 steps per epoch
    # step 10 is in epoch 2: pairs with the 10 earlier batches of epochs 0, 1 share B/n each
    assert_close(over["V1"][10], 10 * 8 / 40)


def test_sign_change():
    assert th.sign_change(np.array([0.0, -1, -2, -1, 0.5]), 1) == 4
    assert th.sign_change(np.array([1.0, 0.5, 0.2]), 0) is None


def test_effective_time_sgd_and_momentum():
    """T(t) = 2W₂/W₁ is t − 1 for SGD and ≈ t/(1 − β) − O(β/(1 − β)²) for heavy ball."""
    # tol: 2·(t(t−1)/2)/t is exact in float64 for these small integers
    np.testing.assert_allclose(th.effective_time(20, 0.0)[1:], np.arange(20), rtol=1e-15)
    T = th.effective_time(2000, 0.9)
    # slope 1/(1 − β) after the transient: the effective step is η/(1 − β)
    # tol: the transient's β^t terms are < 1e-40 here; the offset changes by 1.4 steps in 1000
    assert T[2000] - T[1000] == pytest.approx(1000 / 0.1, rel=2e-4)
    assert 0 < 2000 / 0.1 - T[2000] < 3 / 0.1 ** 2  # a constant lag, O(β/(1 − β)²)


def test_momentum_horizon_includes_beta():
    """MLP digits at η = 0.002 with point estimates a = 0.0173, b = 0.0943 (issue 30): the
    SGD horizon is 1 + κ/(η|b/a|) ≈ 47 steps; with β = 0.9 it is 16, not the 46 that η t gave."""
    r = 0.0943 / 0.0173
    # tol: the same closed form evaluated twice, float64 rounding
    assert th.horizon_beta(r, 0.002, 0.0) == pytest.approx(1 + 0.5 / (0.002 * r), rel=1e-12)
    assert th.horizon_beta(r, 0.002, 0.9) == 16
    # and the criterion it encodes: at the horizon the second order is ≤ κ/2 of the first
    w = th.weights(20, 0.9)
    assert 0.002 * w["W2"][16] / w["W1"][16] * r <= 0.25 < 0.002 * w["W2"][17] / w["W1"][17] * r


def test_ratio_upper_bound_uses_the_uncertainty():
    """b zero within noise (GPT-nano's block0 tap: b = −6e-4 ± 5e-3, a = 1.42e-3 ± 1.4e-4):
    the bound is ~8× the point ratio, so its horizon is short; a zero within noise: no horizon."""
    q = 2.36  # t_{0.975} at 7 df
    U = th.ratio_upper_bound(1.42e-3, 1.4e-4, -6e-4, 5e-3, q)
    assert U > 8 * 6e-4 / 1.42e-3
    assert th.horizon_beta(U, 0.02, 0.0) < 0.1 * th.horizon_beta(6e-4 / 1.42e-3, 0.02, 0.0)
    assert th.ratio_upper_bound(1e-3, 1e-3, 1.0, 0.1, q) == np.inf
    assert th.horizon_beta(np.inf, 0.01, 0.0) == 0.0


def test_d2_cross_epoch_correction():
    """½ η² V₃ (e₂ − d₂): V₃ counts the ordered pairs q ≠ r of different epochs (B/n each);
    with e₂ = d₂ the correction vanishes, and within one epoch V₃ = 0."""
    over = th.overlap_weights(10, 0.0, 8, n=40)  # 5 steps per epoch
    # t = 6: batch 5 (epoch 1) with batches 0 … 4 (epoch 0), both orders, 8/40 each
    assert_close(over["V3"][6], 2 * 5 * 8 / 40)
    assert not over["V3"][:6].any()
    wts = th.weights(10, 0.0)
    coef = {"c0": 0.0, "c1": 1.0, "c2": 0.5, "d2": 0.2, "e2": 0.7}
    with_ = th.polynomial(coef, 0.1, wts, over)["second_order"][:, 0]
    without = th.polynomial(coef, 0.1, wts, {k: over[k] for k in ("V1", "V2")})["second_order"][:, 0]
    assert_close(with_ - without, 0.5 * 0.01 * over["V3"] * (0.7 - 0.2), kind="ops")


def test_adam_first_step_is_the_sign_and_amplifies_a_small_bias():
    """theory/trajectory_adam.py: E[u₁] = 2Φ(μ/σ) − 1 (simulated recursion, 20000 coordinates:
    SE ≤ 1/√20000 = 0.0071, 4 SE allowed), whatever the gradient's scale; for μ = 0.002,
    σ = 0.01 that is 0.158, 79× SGD's μ (its slope √(2/π)/σ at μ → 0)."""
    from driftlab.theory import trajectory_adam as ta

    mu, sigma, tol = 0.002, 0.01, 4 * 0.0071
    u = ta.adam_mean_update(mu, sigma, 30)
    # tol: 4 SE of the 20000-coordinate simulated mean (SE ≤ 1/√20000)
    assert abs(u[0] - ta.sign_mean(mu, sigma)) < tol
    # scale-free: the same μ/σ at 1000× the scale gives the same first step
    # tol: ε = 1e-8 against |g| ~ 0.01 breaks the invariance at ~1e-6 per coordinate
    assert ta.adam_mean_update(1000 * mu, 1000 * sigma, 1)[0] == pytest.approx(u[0], abs=1e-4)
    # tol: the slope at 0 against the secant at μ/σ = 0.2 (Φ's curvature: −0.7%)
    assert ta.sign_mean(mu, sigma) / mu == pytest.approx(ta.small_bias_gain(sigma), rel=0.01)
    # planted error: SGD's step (the mean μ) in place of the sign is caught by far
    assert abs(u[0] - mu) > 5 * tol
