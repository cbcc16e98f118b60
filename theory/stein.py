"""Symbolic derivation of the expected-gradient theorem (Stein's lemma), with SymPy.

The chain, for the block x → W1 → p → σ → h → W2 → f → ℓ with W2 ~ N(0, s2²) i.i.d.
and W2 independent of h and of the target:

1. Stein's lemma. For W ~ N(0, s²), w·φ_s(w) = −s²·φ_s'(w); integrating by parts
   (the boundary term vanishes) gives E[W·G(W)] = s²·E[G'(W)]            (stein_lemma)
2. ∂ℓ/∂h_i = Σ_k W2_ki ∂ℓ/∂f_k(W2 h), and ∂/∂W2_ki [∂ℓ/∂f_k(W2 h)] = h_i ∂²ℓ/∂f_k²,
   so E[∂ℓ/∂h_i | h] = s2²·h_i·E[tr ∇²_f ℓ | h]                          (chain_rule_step)
3. MSE (ℓ = ½‖f − y‖², sum over outputs): tr ∇²_f ℓ = k; cross-entropy
   (ℓ = −log softmax(f)_c): tr ∇²_f ℓ = 1 − ‖softmax(f)‖²                (hessian_trace)
4. g_i = σ'(p_i)·∂ℓ/∂h_i, hence E[g_i | p] = k·s2²·σ(p_i)σ'(p_i) (MSE).
   ``expected_dl_dh_mse_exact`` re-derives step 2-3 for small widths without Stein,
   by exact Gaussian moment algebra (Isserlis) over W2 and y.
"""

from __future__ import annotations

import sympy as sp

w = sp.Symbol("w", real=True)
s = sp.Symbol("s", positive=True)


def gaussian_density(var: sp.Symbol, sd: sp.Expr) -> sp.Expr:
    return sp.exp(-var**2 / (2 * sd**2)) / (sd * sp.sqrt(2 * sp.pi))


def stein_lemma(G: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """(E[W·G(W)], s²·E[G'(W)]) for W ~ N(0, s²), each integrated by SymPy.

    The two agree for every G with E|G'(W)| < ∞; theory/tests checks it for
    polynomial, exponential and trigonometric G.
    """
    dens = gaussian_density(w, s)
    lhs = sp.integrate(w * G * dens, (w, -sp.oo, sp.oo))
    rhs = s**2 * sp.integrate(sp.diff(G, w) * dens, (w, -sp.oo, sp.oo))
    return sp.simplify(lhs), sp.simplify(rhs)


def stein_density_identity() -> sp.Expr:
    """w·φ_s(w) + s²·φ_s'(w), which is identically 0: the integration-by-parts kernel."""
    dens = gaussian_density(w, s)
    return sp.simplify(w * dens + s**2 * sp.diff(dens, w))


def _symbols(prefix: str, *shape: int):
    return sp.Matrix(*shape, lambda *ij: sp.Symbol(f"{prefix}_{'_'.join(map(str, ij))}", real=True))


def mse_loss(f: sp.Matrix, y: sp.Matrix, reduction: str = "sum") -> sp.Expr:
    """ℓ = ½‖f − y‖² ("sum") or ½‖f − y‖²/k ("mean" over the k outputs)."""
    loss = sp.Rational(1, 2) * sum((fk - yk) ** 2 for fk, yk in zip(f, y))
    return loss / len(f) if reduction == "mean" else loss


def cross_entropy_loss(f: sp.Matrix, label: int) -> sp.Expr:
    """ℓ = −log softmax(f)_c."""
    return -f[label] + sp.log(sum(sp.exp(fk) for fk in f))


def hessian_trace(loss: sp.Expr, f: sp.Matrix) -> sp.Expr:
    """tr ∇²_f ℓ."""
    return sp.simplify(sum(sp.diff(loss, fk, 2) for fk in f))


def softmax_norm_deficit(f: sp.Matrix) -> sp.Expr:
    """1 − ‖softmax(f)‖², the claimed cross-entropy Hessian trace."""
    Z = sum(sp.exp(fk) for fk in f)
    return 1 - sum(sp.exp(fk) ** 2 for fk in f) / Z**2


def chain_rule_step(loss_of_f, n: int, k: int) -> sp.Expr:
    """Σ_k ∂/∂W_ki [∂ℓ/∂f_k(W h)] − h_i tr ∇²_f ℓ(W h) for i = 0; identically 0.

    ``loss_of_f`` maps a k-vector of SymPy expressions to ℓ.
    """
    W, h = _symbols("W", k, n), _symbols("h", n, 1)
    fsym = _symbols("f", k, 1)
    f_of_W = W * h
    loss = loss_of_f(fsym)
    at = dict(zip(fsym, f_of_W))
    lhs = sum(sp.diff(sp.diff(loss, fsym[kk]).subs(at), W[kk, 0]) for kk in range(k))
    rhs = h[0] * sum(sp.diff(loss, fk, 2) for fk in fsym).subs(at)
    return sp.simplify(lhs - rhs)


def gaussian_expectation(poly: sp.Expr, variances: dict[sp.Symbol, sp.Expr]) -> sp.Expr:
    """E[poly] for independent zero-mean Gaussians with the given variances (Isserlis).

    Exact: each monomial Π v^{a_v} is replaced by Π E[v^{a_v}], E[v^{2j}] = σ^{2j}(2j−1)!!.
    """
    gens = list(variances)
    result = sp.Integer(0)
    for monom, coeff in sp.Poly(sp.expand(poly), *gens).terms():
        term = coeff
        for v, a in zip(gens, monom):
            term *= 0 if a % 2 else variances[v] ** (a // 2) * sp.factorial2(a - 1)
        result += term
    return sp.simplify(result)


def expected_dl_dh_mse_exact(n: int, k: int, reduction: str = "sum") -> list[sp.Expr]:
    """[E[∂ℓ/∂h_i | h] for i < n] by exact moment algebra over W2 ~ N(0, s2²), y ~ N(0, 1).

    No Stein's lemma is used; the result is k·s2²·h_i ("sum") or s2²·h_i ("mean").
    """
    s2 = sp.Symbol("s2", positive=True)
    W, h, y = _symbols("W", k, n), _symbols("h", n, 1), _symbols("y", k, 1)
    loss = mse_loss(W * h, y, reduction)
    variances = {**{wij: s2**2 for wij in W}, **{yk: sp.Integer(1) for yk in y}}
    return [gaussian_expectation(sp.diff(loss, h[i]), variances) for i in range(n)]


def expected_dl_dh_nonzero_mean(n: int, k: int) -> sp.Expr:
    """E[∂ℓ/∂h_0 | h] (MSE, sum) when W2 = μ + N(0, s2²): the theorem's assumption broken.

    Equals k·(s2²·h_0 + μ²·Σ_j h_j): the extra μ² term couples every unit.
    """
    s2, mu = sp.Symbol("s2", positive=True), sp.Symbol("mu", real=True)
    Z, h, y = _symbols("Z", k, n), _symbols("h", n, 1), _symbols("y", k, 1)
    W = Z + mu * sp.ones(k, n)
    loss = mse_loss(W * h, y)
    variances = {**{zij: s2**2 for zij in Z}, **{yk: sp.Integer(1) for yk in y}}
    return gaussian_expectation(sp.diff(loss, h[0]), variances)

