"""The report's figures (PNG, matplotlib Agg), one function per experiment.

Each function takes data already collected by ``reports/report.py`` and a path, draws
one figure, saves it and returns the path. Style follows ``reports/theory_plots.py``:
measured values as points/lines with their uncertainty, theory as solid lines, a
zero line where a sign is the claim.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from driftlab.reports.analysis import CliffFit, t_band  # noqa: E402

_COLORS = {"relu": "C0", "gelu": "C1", "silu": "C2", "tanh": "C7", "relu2": "C3",
           "gelu2": "C4"}


def _color(act: str, i: int) -> str:
    return _COLORS.get(act, f"C{(i % 10)}")


def _save(fig, path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def drift_curves(curves: dict, path, title: str) -> str:
    """curves: {arch: {act: {"steps": (T,), "w_rel": (seeds, T), "gpos": (seeds, T)}}}.

    Top row: downstream weight-mean change in units of its init std (mean over taps);
    bottom row: mean ∂ℓ/∂p over positive pre-activations (mean over taps). Lines are
    seed means, bands t-based 95% CIs over seeds.
    """
    archs = list(curves)
    fig, axes = plt.subplots(2, max(1, len(archs)), figsize=(3.6 * max(1, len(archs)), 6.2),
                             squeeze=False)
    for j, arch in enumerate(archs):
        for i, (act, c) in enumerate(curves[arch].items()):
            for row, key in ((0, "w_rel"), (1, "gpos")):
                ax = axes[row, j]
                mean, lo, hi = t_band(c[key])
                ax.plot(c["steps"], mean, color=_color(act, i),
                        label=f"{act} (n={np.asarray(c[key]).shape[0]})")
                ax.fill_between(c["steps"], lo, hi, color=_color(act, i), alpha=0.2, lw=0)
        axes[0, j].set_title(arch)
        for row in range(2):
            axes[row, j].axhline(0, color="k", lw=0.5)
        axes[1, j].set_xlabel("step")
        axes[1, j].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if archs:
        axes[0, 0].set_ylabel("Δ mean(W_down) / std(W_down at init)")
        axes[1, 0].set_ylabel("E[∂ℓ/∂p | p > 0] (per example)")
        axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def first_step(rows: list[dict], path, title: str) -> str:
    """rows: {act, width, measured, measured_se, predicted, predicted_large_width}.

    −ΔW2 mean after one SGD step (points ± 2 SE) against −lr·E[∂ℓ/∂W2] at finite width
    (semi-analytic, solid) and n → ∞ (dashed), per activation, log width axis.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    acts = sorted({r["act"] for r in rows}, key=lambda a: list(_COLORS).index(a)
                  if a in _COLORS else 99)
    for i, act in enumerate(acts):
        rs = sorted((r for r in rows if r["act"] == act), key=lambda r: r["width"])
        w = np.array([r["width"] for r in rs])
        ax.errorbar(w, [-r["measured"] for r in rs], yerr=[2 * r["measured_se"] for r in rs],
                    fmt="o", ms=4, color=_color(act, i), label=f"{act} measured")
        ax.plot(w, [-r["predicted"] for r in rs], "-", color=_color(act, i), lw=1.2,
                label=f"{act} theory (finite n)")
        ax.plot(w, [-r["predicted_large_width"] for r in rs], "--", color=_color(act, i),
                lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("width n")
    ax.set_ylabel("−mean ΔW2 after one SGD step")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


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
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


def tradeoff(points: list[dict], cliff: CliffFit | None, path, title: str) -> str:
    """points: {sparsity, accuracy, act, diverged?}: dots, crosses for diverged runs; the
    hinge fit and the knee's CI band if given."""
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    acts = sorted({p["act"] for p in points})
    for i, act in enumerate(acts):
        for diverged in (False, True):
            ps = [p for p in points if p["act"] == act and bool(p.get("diverged")) == diverged]
            if ps:
                ax.scatter([p["sparsity"] for p in ps], [p["accuracy"] for p in ps], s=20,
                           marker="x" if diverged else "o", color=_color(act.split(":")[0], i),
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
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    return _save(fig, path)


def spikes(rows: list[dict], path, title: str) -> str:
    """rows: {act, spike_ratio (seeds,), val_loss (seeds,)}: two bar panels, mean ± 95% CI."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    acts = [r["act"] for r in rows]
    x = np.arange(len(acts))
    for ax, key, label in ((axes[0], "spike_ratio", "max|h| / median|h| (max over layers)"),
                           (axes[1], "val_loss", "validation loss")):
        means, errs = [], []
        for r in rows:
            m, lo, hi = t_band(np.asarray(r[key], float)[:, None])
            means.append(m[0])
            errs.append(hi[0] - m[0])
        ax.bar(x, means, yerr=errs, color=[_color(a.split(":")[0], i) for i, a in enumerate(acts)],
               capsize=3)
        ax.set_xticks(x, acts, rotation=40, ha="right", fontsize=7)
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)
