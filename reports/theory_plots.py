"""Empirical-vs-analytic figures for the theorems (``driftlab theory plots``).

1. gradient_vs_preactivation.png: binned Monte Carlo E[g | p] against the analytic
   curve, every activation, MSE and cross-entropy.
2. mc_convergence.png: |MC − analytic| and the standard error against the sample count,
   with the 1/√N reference line.
3. drift_vs_width.png: measured mean gradient on the hidden-to-hidden matrix against
   the semi-analytic prediction and the n → ∞ limit, across widths.
"""

from __future__ import annotations

import os
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from driftlab.montecarlo import estimators, stein_reduced  # noqa: E402
from driftlab.reports import style  # noqa: E402
from driftlab.montecarlo.estimators import Budget  # noqa: E402
from driftlab.theory import expected_grad, gaussian  # noqa: E402
from driftlab.montecarlo.checks import ACTIVATIONS, SETTING_A  # noqa: E402


def _save(fig, out: str, name: str) -> str:
    """Lay out, write ``out/name`` as PNG (reports/style.py), close the figure; return the path."""
    return style.save(fig, os.path.join(out, name))


def binned_mean(p, g, edges):
    """Per bin of ``p`` (``edges``): mean of ``g``, its standard error and the count
    (NaN where a bin is empty): the Monte Carlo E[g | p ∈ bin]."""
    p, g = np.ravel(p), np.ravel(g)
    idx = np.digitize(p, edges) - 1
    ok = (idx >= 0) & (idx < len(edges) - 1)
    counts = np.bincount(idx[ok], minlength=len(edges) - 1)
    sums = np.bincount(idx[ok], g[ok], minlength=len(edges) - 1)
    sq = np.bincount(idx[ok], g[ok] ** 2, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
        se = np.sqrt(np.maximum(sq / counts - mean**2, 0) / counts)
    return mean, se, counts


def analytic_curve(setting, p):
    """E[g | p] on the grid ``p``: k·s2²·σσ'(p) (MSE "sum"; ÷k for "mean"), exact given p;
    CE: s2²·σσ'(p)·S(t) with t = s2·√(n·E[σ²]) the mean ‖h‖ scale (not conditional on p)."""
    fn = gaussian.sigma_dsigma_numeric(setting.act)
    if setting.loss == "mse":
        k = 1.0 if setting.reduction == "mean" else setting.d_out
        return k * setting.s2**2 * fn(p)
    second = gaussian.mean_and_second_moment(setting.act, setting.s1 * np.sqrt(setting.d_in))[1]
    t = setting.s2 * np.sqrt(setting.width * second)
    return setting.s2**2 * fn(p) * expected_grad.softmax_trace_factor(t, setting.d_out)


@style.styled
def plot_gradient_for_setting(setting, path, draws: int = 1024, seed: int = 0,
                              edges=None) -> str:
    """One panel for a user's own ``setting`` (a BlockSetting): binned Monte Carlo E[g | p]
    (points ± 1 SE, bins with > 50 samples) against :func:`analytic_curve`; writes the PNG
    to ``path`` and returns it. ``edges`` default: 40 bins over ±3 SD of p."""
    from driftlab.montecarlo.dispatch import uncovered

    if uncovered(setting) or setting.w2_mean or setting.target_coupling:
        raise ValueError(uncovered(setting) or "w2_mean/target_coupling: the curve is the "
                         "theorem's (zero-mean W2, independent targets)")
    budget = Budget(draws=draws, inputs_per_draw=16, chunk=min(draws, 256), seed=seed)
    p, g = estimators.sample_preactivation_grads(setting, budget)
    if edges is None:
        sd = setting.s1 * np.sqrt(setting.d_in)
        edges = np.linspace(-3 * sd, 3 * sd, 41)
    edges = np.asarray(edges, float)
    centers = (edges[1:] + edges[:-1]) / 2
    mean, se, counts = binned_mean(np.asarray(p), np.asarray(g), edges)
    keep = counts > 50
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.errorbar(centers[keep], mean[keep], yerr=se[keep], fmt="o", ms=3, color="C0",
                label=f"Monte Carlo ({budget.draws} draws × 16 inputs)")
    ax.plot(centers, analytic_curve(setting, centers), "-", color="C3",
            label="analytic" + (" (mean softmax factor)" if setting.loss == "ce" else ""))
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="pre-activation p", ylabel="E[∂ℓ/∂p | p]", title=setting.describe())
    ax.legend(fontsize=8)
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    return style.save(fig, path)


@style.styled
def plot_gradient_vs_preactivation(out: str, seed: int, quick: bool) -> str:
    """Panel per activation: MC E[g|p] (points ± SE) vs k·s2²·σσ'(p) (MSE) and
    s2²·σσ'(p)·E[S(s2‖h‖)] (CE, with the softmax factor at its mean: an approximation
    that ignores the weak dependence of ‖h‖ on one unit)."""
    budget = Budget(draws=256 if quick else 8192, inputs_per_draw=16, chunk=256, seed=seed)
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), sharex=True)
    edges = np.linspace(-3, 3, 41)
    centers = (edges[1:] + edges[:-1]) / 2
    acts = ACTIVATIONS[:1] if quick else ACTIVATIONS
    for ax, act in tqdm(list(zip(axes.ravel(), acts)), desc="gradient vs p", leave=False):
        fn = gaussian.sigma_dsigma_numeric(act)
        for loss, color in (("mse", "C0"), ("ce", "C3")):
            s = replace(SETTING_A, act=act, loss=loss)
            p, g = estimators.sample_preactivation_grads(s, budget)
            mean, se, counts = binned_mean(p, g, edges)
            keep = counts > 50
            if loss == "mse":
                curve = s.d_out * s.s2**2 * fn(centers)
            else:
                t = s.s2 * np.sqrt(s.width * gaussian.mean_and_second_moment(act, s.s1 * np.sqrt(s.d_in))[1])
                curve = s.s2**2 * fn(centers) * expected_grad.softmax_trace_factor(t, s.d_out)
            ax.errorbar(centers[keep], mean[keep], yerr=se[keep], fmt="o", ms=3, color=color,
                        label=f"MC {loss}")
            # CE: the softmax factor at its mean over ‖h‖, not conditional on p — it
            # departs from the conditional MC at large |p| by construction.
            ax.plot(centers, curve, "-", color=color, lw=1.2,
                    label="analytic mse" if loss == "mse" else
                    "analytic ce, mean softmax factor\n(not conditional on p)")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(act)
        ax.set_yscale("symlog", linthresh=1e-2)
    axes[0, 0].legend()
    for ax in axes[1]:
        ax.set_xlabel("pre-activation p")
    for ax in axes[:, 0]:
        ax.set_ylabel("E[∂ℓ/∂p | p]")
    fig.suptitle(f"E[g | p] at initialization: Monte Carlo vs theory (d={SETTING_A.d_in}, n={SETTING_A.width}, "
                 f"k={SETTING_A.d_out}, G={SETTING_A.gain:g}; CE curve uses the mean softmax factor; "
                 f"{budget.draws} draws × {budget.inputs_per_draw} inputs, seed {seed})")
    return _save(fig, out, "gradient_vs_preactivation.png")


@style.styled
def plot_convergence(out: str, seed: int, quick: bool) -> str:
    """|m − a| and SE against samples for E[g|p>0] (ReLU and GELU, MSE), log-log."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sizes = [2**k for k in range(8, 10 if quick else 17)]
    for act, color in (("relu", "C0"),) if quick else (("relu", "C0"), ("gelu", "C1")):
        s = replace(SETTING_A, act=act)
        a = expected_grad.expected_grad_positive_mse(s).value
        errs, ses, samples = [], [], []
        for draws in tqdm(sizes, desc=f"convergence {act}", leave=False):
            r = estimators.estimate_grad_positive(s, Budget(draws=draws, inputs_per_draw=16, chunk=min(draws, 4096),
                                                            seed=seed))
            errs.append(abs(r.mean - a) / a)
            ses.append(r.stderr / a)
            samples.append(r.samples)
        ax.loglog(samples, errs, "o", color=color, label=f"|MC − analytic|/analytic, {act}")
        ax.loglog(samples, ses, "-", color=color, label=f"SE/analytic, {act}")
    ns = np.array(samples, dtype=float)
    ax.loglog(ns, ses[0] * np.sqrt(ns[0] / ns), "k--", lw=0.8, label="∝ 1/√N")
    ax.set_xlabel("samples N (draws × 16 inputs)")
    ax.set_ylabel("relative error")
    ax.set_title(f"Monte Carlo convergence, E[g | p>0], MSE, d={SETTING_A.d_in}, n={SETTING_A.width}, "
                 f"k={SETTING_A.d_out}", fontsize=9)
    ax.legend()
    return _save(fig, out, "mc_convergence.png")


@style.styled
def plot_drift_vs_width(out: str, seed: int, quick: bool) -> str:
    """Mean E[∂ℓ/∂W2] against width n: raw MC, semi-analytic, n → ∞ limit (MSE)."""
    widths = [8, 32] if quick else [8, 16, 32, 64, 128, 256]
    # Positively biased activations on a log axis (their drift is > 0 and shrinks with n);
    # the tanh control on its own linear axis around 0, so its noise cannot read as signal
    # (a symlog axis made it look like the ReLU curve).
    fig, (ax, ax0) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    names = ("relu", "tanh") if quick else ("relu", "gelu", "silu", "tanh")
    colors = style.colors_for(names)
    acts = [(a, colors[a]) for a in names]
    for act, color in acts:
        mc, semi, limit = [], [], []
        for n in tqdm(widths, desc=f"drift {act}", leave=False):
            s = replace(SETTING_A, act=act, width=n)
            b = Budget(draws=1024 if quick else 8192, inputs_per_draw=8, chunk=1024, seed=seed)
            mc.append(estimators.estimate_drift(s, b)["W2"])
            semi.append(stein_reduced.drift(s, b).value)
            limit.append(expected_grad.drift_large_width(s).value)
        target = ax0 if act == "tanh" else ax
        means = np.array([m.mean for m in mc])
        bars = np.array([2 * m.stderr for m in mc])
        # on the log axis a ±2 SE bar reaching ≤ 0 is cut at mean/2
        lower = bars if target is ax0 else np.minimum(bars, 0.5 * np.abs(means))
        target.errorbar(widths, means, yerr=[lower, bars], fmt="o", color=color,
                        label=f"MC {act} (±2 SE)")
        target.plot(widths, semi, "-", color=color, label=f"semi-analytic {act}")
        target.plot(widths, limit, ":", color=color, label=f"n→∞ limit {act}")
    for a in (ax, ax0):
        a.set_xscale("log", base=2)
        a.set_xlabel("width n")
    ax.set_yscale("log")
    ax.set_ylabel("mean E[∂ℓ/∂W2_ij]  (> 0: SGD drives W2 negative)")
    ax.set_title(f"Downstream drift at init, 3-layer block, MSE, d={SETTING_A.d_in}, "
                 f"k={SETTING_A.d_out}")
    ax.legend(ncol=2, fontsize=7)
    ax0.axhline(0, color="k", lw=0.5)
    ax0.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax0.set_title("control: tanh (linear axis; expected 0)")
    ax0.legend(fontsize=7)
    return _save(fig, out, "drift_vs_width.png")


def make_all(out: str, seed: int = 0, quick: bool = False) -> list[str]:
    os.makedirs(out, exist_ok=True)
    return [plot_gradient_vs_preactivation(out, seed, quick), plot_convergence(out, seed, quick),
            plot_drift_vs_width(out, seed, quick)]
