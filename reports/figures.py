"""The report's figures (PNG, matplotlib Agg), one function per experiment.

Each function takes data already collected by ``reports/report.py`` and a path, draws
one figure, saves it and returns the path. One style for all figures (reports/style.py):
measured values as points/lines with their uncertainty, theory as solid lines, a
zero line where a sign is the claim.
"""

from __future__ import annotations

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from driftlab.reports.analysis import CliffFit, t_band  # noqa: E402
from driftlab.reports.style import BASE_COLORS, colors_for, save as _save, styled  # noqa: E402

_COLORS = BASE_COLORS


@styled
def drift_curves(curves: dict, path, title: str) -> str:
    """curves: {arch: {cell: {"steps": (T,), "w_rel": (seeds, T), "gpos": (seeds, T)}}},
    cell = "act/data/optimizer[ variant]" (reports/drift.py ``curve_key``).

    Top row: downstream weight-mean change in units of its init std (mean over taps);
    bottom row: mean ∂ℓ/∂p over positive pre-activations (mean over taps). Lines are
    seed means, bands t-based 95% CIs over seeds.
    """
    archs = list(curves)
    colors = colors_for(list(dict.fromkeys(a for arch in archs for a in curves[arch])))
    fig, axes = plt.subplots(2, max(1, len(archs)), figsize=(3.6 * max(1, len(archs)), 6.2),
                             squeeze=False)
    for j, arch in enumerate(archs):
        for i, (act, c) in enumerate(curves[arch].items()):
            for row, key in ((0, "w_rel"), (1, "gpos")):
                ax = axes[row, j]
                mean, lo, hi = t_band(c[key])
                ax.plot(c["steps"], mean, color=colors[act],
                        label=f"{act} (n={np.asarray(c[key]).shape[0]})")
                ax.fill_between(c["steps"], lo, hi, color=colors[act], alpha=0.2, lw=0)
        axes[0, j].set_title(arch)
        for row in range(2):
            axes[row, j].axhline(0, color="k", lw=0.5)
        axes[1, j].set_xlabel("step")
        axes[1, j].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        axes[0, j].legend(fontsize=6)  # every panel: the cells differ by architecture
    if archs:
        axes[0, 0].set_ylabel("Δ mean(W_down) / std(W_down at init)")
        axes[1, 0].set_ylabel("E[∂ℓ/∂p | p > 0] (per example)")
    fig.suptitle(title)
    return _save(fig, path)


@styled
def first_step(rows: list[dict], path, title: str) -> str:
    """rows: {act, width, measured, measured_se, predicted, predicted_large_width}.

    −ΔW2 mean after one SGD step (points ± 2 SE) against −lr·E[∂ℓ/∂W2] at finite width
    (semi-analytic, solid) and n → ∞ (dashed), per activation, log width axis.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    acts = sorted({r["act"] for r in rows}, key=lambda a: list(_COLORS).index(a)
                  if a in _COLORS else 99)
    colors = colors_for(acts)
    for i, act in enumerate(acts):
        rs = sorted((r for r in rows if r["act"] == act), key=lambda r: r["width"])
        w = np.array([r["width"] for r in rs])
        ax.errorbar(w, [-r["measured"] for r in rs], yerr=[2 * r["measured_se"] for r in rs],
                    fmt="o", color=colors[act], label=f"{act} measured ± 2 SE", clip_on=False)
        ax.plot(w, [-r["predicted"] for r in rs], "-", color=colors[act], lw=1.2,
                label=f"{act} theory (finite n)")
        ax.plot(w, [-r["predicted_large_width"] for r in rs], "--", color=colors[act],
                lw=1.0, label=f"{act} theory (n → ∞)")
    widths = sorted({r["width"] for r in rows})
    ax.set_xscale("log")
    # One labelled tick per measured width, no minor labels: they overlapped.
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.margins(x=0.08, y=0.1)  # keep the end markers inside the axes
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("width n")
    ax.set_ylabel("−mean ΔW2 after one SGD step")
    ax.legend(ncol=2)
    ax.set_title(title)
    return _save(fig, path)


@styled
def sparsity_law(points: list[dict], path, title: str) -> str:
    """points: {predicted, measured, lr, step, layer}: scatter with the y = x line."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    lrs = sorted({p["lr"] for p in points})
    for i, lr in enumerate(lrs):
        ps = [p for p in points if p["lr"] == lr]
        sc = ax.scatter([p["predicted"] for p in ps], [p["measured"] for p in ps],
                        c=[p["step"] for p in ps], cmap="viridis", s=18,
                        marker="os^Dv"[i % 5], label=f"lr={lr:g}")
    if points:
        fig.colorbar(sc, ax=ax, label="step")
    lo = min([0.3] + [min(p["predicted"], p["measured"]) for p in points])
    hi = max([0.7] + [max(p["predicted"], p["measured"]) for p in points])
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="y = x")
    ax.set_xlabel("predicted Φ(−μΣh / (s‖h‖))")
    ax.set_ylabel("measured ReLU sparsity")
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


@styled
def tradeoff(points: list[dict], cliff: CliffFit | None, path, title: str) -> str:
    """points: {sparsity, accuracy, act, diverged?}: dots, crosses for diverged runs; the
    hinge fit and the knee's CI band if given."""
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    acts = sorted({p["act"] for p in points})
    colors = colors_for(acts)
    for act in acts:
        for diverged in (False, True):
            ps = [p for p in points if p["act"] == act and bool(p.get("diverged")) == diverged]
            if ps:
                ax.scatter([p["sparsity"] for p in ps], [p["accuracy"] for p in ps], s=20,
                           marker="x" if diverged else "o", color=colors[act],
                           label=act + (" (diverged)" if diverged else ""))
    if cliff is not None:
        xs = np.linspace(0, 1, 200)
        ax.plot(xs, cliff.fit.predict(xs), "k-", lw=1, label="hinge fit")
        ax.axvspan(cliff.knee_lo, cliff.knee_hi, color="C3", alpha=0.15,
                   label=f"knee {cliff.fit.knee:.2f} [{cliff.knee_lo:.2f}, {cliff.knee_hi:.2f}]")
    ax.axvline(0.7, color="C3", ls=":", lw=0.8, label="paper's ~70%")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("activation sparsity (exact zeros, mean over layers, validation)")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


@styled
def spikes(rows: list[dict], path, title: str) -> str:
    """rows: {act, spike_ratio (seeds,), val_loss (seeds,)}: two bar panels, mean ± 95% CI."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    acts = [r["act"] for r in rows]
    colors = colors_for(acts)  # one distinct colour per activation label
    x = np.arange(len(acts))
    for ax, key, label, log in ((axes[0], "spike_ratio", "max|h| / median|h| (max over layers)",
                                 True),
                                (axes[1], "val_loss", "validation loss", False)):
        means, lower, upper = [], [], []
        for r in rows:
            m, lo, hi = t_band(np.asarray(r[key], float)[:, None])
            means.append(m[0])
            upper.append(hi[0] - m[0])
            # On the log axis a CI reaching ≤ 0 is cut at half the mean (marked by the
            # caption) rather than running off the axis.
            lower.append(min(m[0] - lo[0], 0.5 * m[0]) if log else m[0] - lo[0])
        ax.bar(x, means, yerr=[lower, upper], color=[colors[a] for a in acts], capsize=3)
        ax.set_xticks(x, acts, rotation=40, ha="right")
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
            ax.set_title("bars: mean ± 95% CI over seeds (lower end cut at mean/2)",
                         fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
