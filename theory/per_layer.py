"""The per-layer expected-gradient theorem for any network, with its SymPy derivation.

Statement. A tap computes h = σ(p) ∈ R^{P×H} (P positions that share one matrix: tokens,
patches, frames, and the B examples of the batch). A matrix W ∈ R^{H×D} reads it densely,
z_t = h_t W for every position t, and the loss ℓ depends on (W, h) only through z (h feeds
nothing else). Assume W has i.i.d. N(0, s_W²) entries, independent of p (W is not used
before the tap). Then for every entry (t, i), with g = ∂ℓ/∂p,

    E[∂ℓ/∂h_{t,i} | p] = s_W² Σ_{t'} h_{t',i} E[T_{tt'} | p],      T_{tt'} = Σ_k ∂²ℓ/∂z_{tk} ∂z_{t'k},
    E[g_{t,i} | p]     = s_W² σ'(p_{t,i}) Σ_{t'} h_{t',i} E[T_{tt'} | p].

The diagonal term is s_W² σσ'(p_{t,i}) E[T_tt | p]. T_{tt'} is a sum over the D outputs of
one (t, t') block of the Hessian ∇²_z ℓ, so:

* positions that share W but not the loss's coupling (different examples of a batch-mean
  loss without batch statistics) have T_{tt'} = 0 for t ≠ t'; within a sequence (attention)
  or with batch-statistics normalisation after W, T_{tt'} ≠ 0 off the diagonal;
* ∇²_z ℓ = J_zᵀ ∇²_y ℓ_out J_z (Gauss–Newton, positive semi-definite when ℓ_out is convex
  in the outputs y) + Σ_m ∂ℓ/∂y_m ∇²_z y_m (curvature: norms, attention, a tied head, any
  nonlinearity after W). Only the Gauss–Newton *matrix* is PSD: the diagonal T_tt of its
  part is ≥ 0, the off-diagonal T_{tt'} and the curvature part have either sign.

Derivation (checked symbolically by :func:`check_dense_stein`): ∂ℓ/∂h_{t,i} =
Σ_k W_{ik} ∂ℓ/∂z_{tk}; Stein's lemma E[W_{ik} F(W)] = s_W² E[∂F/∂W_{ik}] with
F = ∂ℓ/∂z_{tk}; ∂/∂W_{ik} ∂ℓ/∂z_{tk} = Σ_{t'} ∂²ℓ/∂z_{tk}∂z_{t'k} h_{t',i}
(the chain rule through z_{t'k} = Σ_i h_{t',i} W_{ik}). In operator form:
E[∂ℓ/∂h | h] = s_W² E_R[L(R,·)ᵀ ∇²_z ℓ L(R,h)] for R with E[R_{ik}R_{i'k'}] = δδ
(Rademacher, or exact over the H·D basis); models/measure/per_layer.py estimates this.

Canonical block (docs/theory.md): one position, z = f = W2 h. MSE ½‖f − y‖² summed: ∇²_f ℓ = I_k,
T = k, so E[g_i | p] = k s2² σσ'(p_i), the existing result; cross-entropy: ∇²_f ℓ =
diag(s) − s sᵀ, s = softmax(f), T = 1 − ‖s‖² (theory/expected_grad.softmax_trace_factor).

Conv readers (ResNet; checked symbolically by :func:`check_conv_stein`). A conv z = conv(h, W)
is a dense reader of the im2col patches P (P_{y,(dx,c)} = h_{y+dx,c}, 0 in the padding) with W
reshaped (K²C, C'); y ranges over batch × output positions, all sharing W. The statement above
with h → P and the chain rule ∂P_{y,(dx,c)}/∂h_{x,c} = 1[x = y + dx] give

    E[g^h_{x,c} | h] = s² Σ_dx Σ_{y'} h_{y'+dx,c} E[T_{x−dx,y'} | h],  T_{yy'} = Σ_c' ∂²ℓ/∂z_{yc'}∂z_{y'c'},

in operator form s² E_R[conv_hᵀ(∇²_z ℓ · conv(h, R); R)] for E[R_a R_b] = δ_ab (conv_hᵀ the
adjoint of h ↦ conv(h, R); models/measure/conv_readers.py). Several independent Gaussian readers
(conv1 and a 1×1 projection shortcut) add their Stein terms. A global-average-pool + dense head
is a dense reader of mean_x h, so T carries the pool's 1/(HW)². An identity shortcut (h added
to a later pre-activation p⁺) has no weight: its term ∂ℓ/∂p⁺ enters E[g | p] as it is.

Kinks. Stein needs the weak derivative of ∂ℓ/∂z in W. A ReLU σ(p_u) downstream of z makes
∂ℓ/∂z contain 1[p_u > 0], whose weak derivative adds Σ_u (∂ℓ/∂σ_u) δ(p_u) ∇_z p_u ∇_z p_uᵀ to
∇²_z ℓ; autodiff (σ'' = 0 a.e.) drops it. It is part of the curvature term, finite in
expectation, and decisive in ResNet, where conv → norm → ReLU follow each other directly
(montecarlo/relu_kink.py estimates it with δ → N(0, τ²) density).

Batch-statistics norm after the reader (BatchNorm, training mode). ℓ is invariant to shifting
z_{·,c} by a constant over the whole batch, and (up to ε) to scaling it. Differentiating
ℓ(z + t·1_c) = ℓ(z) twice: Σ_y ∂ℓ/∂z_{yc} = 0 and Σ_{y'} ∂²ℓ/∂z_{yc'}∂z_{y'c} = 0 for all
y, c', hence Σ_{y'} T_{yy'} = 0 for every y. The conv prediction becomes

    E[g^h_{x,c} | h] = s² Σ_dx Σ_{y'} (h_{y'+dx,c} − h̄_{dx,c}) E[T_{x−dx,y'} | h],

h̄_{dx,c} the batch mean of the (shifted, zero-padded) patch column: the h·E[T_yy] drift term
is cancelled by the off-diagonal T, and only h's deviation from its batch mean drives
E[g | p > 0]. Scale invariance ℓ(z + t z⊙1_c) = ℓ(z) adds, differentiating once in t and then
in z_{yc'}: Σ_{y'} ∂²ℓ/∂z_{yc'}∂z_{y'c} z_{y'c} = −δ_{cc'} ∂ℓ/∂z_{yc}, i.e. ∇²_z ℓ · z = −∇_z ℓ:
along the reader's own output the curvature is minus the gradient, so the Hessian has no
fixed sign and the Gauss–Newton T_yy ≥ 0 is no guide. GroupNorm (per example) keeps the
scale identity but not the batch row sums; no norm keeps neither.

Non-Gaussian W (PyTorch's U(±1/√fan_in)): Stein's identity does not hold exactly; the
zero-bias transform replaces W by W* in ∂F/∂W, so the prediction is approximate. The
agreement checks use a Gaussian W of the same variance 1/(3·fan_in).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp


def gaussian_expectation(expr, variables, s2):
    """E over independent N(0, s2) ``variables`` of a polynomial ``expr`` (exact moments)."""
    poly = sp.Poly(sp.expand(expr), *variables)
    total = 0
    for monom, coeff in poly.terms():
        term = coeff
        for n in monom:
            term *= 0 if n % 2 else s2 ** (n // 2) * sp.factorial2(n - 1)
        total += term
    return sp.expand(total)


def generic_cubic_loss(zs):
    """A generic polynomial of degree 3 in ``zs`` with symbolic coefficients (a few cubic
    terms: enough to make ∇²ℓ depend on z, hence on W)."""
    coeffs = iter(sp.symbols(f"c0:{1 + len(zs) + len(zs) ** 2 + 4}"))
    loss = next(coeffs)
    for a in zs:
        loss += next(coeffs) * a
    for a in zs:
        for b in zs:
            loss += next(coeffs) * a * b
    for a in zs[:2]:
        for b in zs[:2]:
            loss += next(coeffs) * a * b * zs[-1]
    return loss


@lru_cache(maxsize=None)
def check_dense_stein(positions: int = 2, width: int = 2, outputs: int = 2,
                      diagonal_only: bool = False) -> bool:
    """SymPy: E_W[∂ℓ/∂h_{t,i}] = s² Σ_{t'} h_{t',i} E_W[T_{tt'}] for z = hW and a cubic ℓ(z).

    The left side differentiates ℓ(hW) in h (the chain rule) and takes the exact Gaussian
    expectation over W; the right side builds T_{tt'} = Σ_k ∂²ℓ/∂z_{tk}∂z_{t'k} from ℓ as a
    function of free z, substitutes z = hW, and takes the same expectation. ℓ is cubic, so
    ∇²ℓ depends on W and the identity is not a constant-curvature special case.
    Returns True when both sides agree identically in h, s² and ℓ's coefficients.
    ``diagonal_only`` drops the t' ≠ t terms (a planted error: it must return False).
    """
    s2 = sp.Symbol("s2", positive=True)
    h = sp.Matrix(positions, width, lambda t, i: sp.Symbol(f"h_{t}_{i}"))
    W = sp.Matrix(width, outputs, lambda i, k: sp.Symbol(f"W_{i}_{k}"))
    zf = sp.Matrix(positions, outputs, lambda t, k: sp.Symbol(f"z_{t}_{k}"))
    loss_z = generic_cubic_loss(list(zf))
    z_of_w = {zf[t, k]: (h * W)[t, k] for t in range(positions) for k in range(outputs)}
    loss_w = loss_z.subs(z_of_w, simultaneous=True)
    wvars = list(W)
    for t in range(positions):
        for i in range(width):
            lhs = gaussian_expectation(sp.diff(loss_w, h[t, i]), wvars, s2)
            rhs = 0
            for t2 in ([t] if diagonal_only else range(positions)):
                T = sum(sp.diff(loss_z, zf[t, k], zf[t2, k]) for k in range(outputs))
                rhs += h[t2, i] * gaussian_expectation(T.subs(z_of_w, simultaneous=True), wvars, s2)
            if sp.expand(lhs - s2 * rhs) != 0:
                return False
    return True


@lru_cache(maxsize=None)
def check_conv_stein(length: int = 3, kernel: int = 2, channels_in: int = 1,
                     channels_out: int = 2, unshifted: bool = False) -> bool:
    """SymPy: the conv-reader form E_W[∂ℓ/∂h_{x,c}] = s² Σ_dx Σ_{y'} h_{y'+dx,c} E_W[T_{x−dx,y'}].

    A 1-D valid convolution z_{y,c'} = Σ_{dx,c} h_{y+dx,c} W_{dx,c,c'} (y = 0..length−kernel,
    every y sharing W), a generic cubic ℓ(z), T_{yy'} = Σ_c' ∂²ℓ/∂z_{yc'}∂z_{y'c'}; terms with
    x − dx outside the output range are 0 (that patch does not contain h_x). Exact Gaussian
    expectation over W ~ N(0, s²) on both sides. ``unshifted`` uses T_{x,y'} in place of
    T_{x−dx,y'} (a planted error: it must return False).
    """
    s2 = sp.Symbol("s2", positive=True)
    n_out = length - kernel + 1
    h = sp.Matrix(length, channels_in, lambda x, c: sp.Symbol(f"h_{x}_{c}"))
    W = {(d, c, k): sp.Symbol(f"W_{d}_{c}_{k}") for d in range(kernel)
         for c in range(channels_in) for k in range(channels_out)}
    zf = sp.Matrix(n_out, channels_out, lambda y, k: sp.Symbol(f"z_{y}_{k}"))
    loss_z = generic_cubic_loss(list(zf))
    z_of_w = {zf[y, k]: sum(h[y + d, c] * W[d, c, k] for d in range(kernel)
                            for c in range(channels_in))
              for y in range(n_out) for k in range(channels_out)}
    loss_w = loss_z.subs(z_of_w, simultaneous=True)
    wvars = list(W.values())
    ET = {(y, y2): gaussian_expectation(
        sum(sp.diff(loss_z, zf[y, k], zf[y2, k]) for k in range(channels_out)).subs(
            z_of_w, simultaneous=True), wvars, s2)
        for y in range(n_out) for y2 in range(n_out)}
    for x in range(length):
        for c in range(channels_in):
            lhs = gaussian_expectation(sp.diff(loss_w, h[x, c]), wvars, s2)
            rhs = 0
            for d in range(kernel):
                y = x if unshifted else x - d
                if not 0 <= y < n_out:
                    continue
                rhs += sum(h[y2 + d, c] * ET[y, y2] for y2 in range(n_out))
            if sp.expand(lhs - s2 * rhs) != 0:
                return False
    return True


def check_stein_lemma(max_degree: int = 5) -> bool:
    """SymPy: E[W·W^n] = s² E[n·W^{n−1}] for W ~ N(0, s²), n = 0..max_degree (Stein)."""
    s2, w = sp.Symbol("s2", positive=True), sp.Symbol("w")
    return all(sp.simplify(gaussian_expectation(w * w**n, [w], s2)
                           - s2 * gaussian_expectation(sp.diff(w**n, w), [w], s2)) == 0
               for n in range(max_degree + 1))


def canonical_T(loss: str, k: int):
    """T = tr ∇²_f ℓ for the canonical block's loss, symbolically, in the logits f_1..f_k.

    ``mse``: ℓ = ½‖f − y‖² summed over k outputs → k. ``ce``: ℓ = −log softmax(f)_c →
    1 − Σ_m softmax(f)_m² (returned as an expression in f; independent of c).
    """
    if loss not in ("mse", "ce"):
        raise ValueError(f"loss={loss!r} invalid; allowed: mse, ce")
    f = sp.symbols(f"f0:{k}")
    if loss == "mse":
        y = sp.symbols(f"y0:{k}")
        ell = sum((a - b) ** 2 for a, b in zip(f, y)) / 2
    else:
        ell = -f[0] + sp.log(sum(sp.exp(a) for a in f))
    return sp.simplify(sum(sp.diff(ell, a, a) for a in f)), f


def check_canonical_reduction(k: int = 3) -> bool:
    """SymPy: T = k (MSE, summed) and T = 1 − ‖softmax(f)‖² (CE) for the canonical block."""
    t_mse, _ = canonical_T("mse", k)
    t_ce, f = canonical_T("ce", k)
    soft = [sp.exp(a) / sum(sp.exp(b) for b in f) for a in f]
    return sp.simplify(t_mse - k) == 0 and sp.simplify(t_ce - (1 - sum(x**2 for x in soft))) == 0


def canonical_prediction_mse(setting) -> float:
    """The general statement in the canonical MSE block: s2²·T·E[σσ'(p)|p>0] with T = k.

    Equals theory.expected_grad.expected_grad_positive_mse (the reduction).
    """
    from driftlab.theory.expected_grad import positive_preactivation_moment

    T = float(setting.d_out) if setting.reduction == "sum" else 1.0  # "mean": ∇²ℓ = I/k
    return setting.s2**2 * T * positive_preactivation_moment(setting.act, setting.d_in,
                                                             setting.s1).value


__all__ = ["gaussian_expectation", "check_dense_stein", "check_conv_stein", "check_stein_lemma", "canonical_T",
           "check_canonical_reduction", "canonical_prediction_mse", "generic_cubic_loss"]
