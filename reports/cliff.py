"""The sparsity–accuracy trade-off and the cliff, with diverged runs flagged.

A run is *diverged* when training stopped on a non-finite loss (sweep status
"diverged") or its last logged training loss is above its step-0 loss. Diverged runs
with a finite end state are points in the figure but are fitted only in the "with
diverged" fit; non-finite runs are listed.

Pre-registered test of the paper's cliff "above ~70% sparsity": per seed, the least-squares
fit accuracy = a + b·x + c·max(x − 0.70, 0) over that seed's non-diverged configurations
(x = mean validation sparsity over taps); H1: c < 0 (accuracy falls faster above 70%),
one-sided t over seeds; and, since configurations rather than seeds carry the curve's
shape, the same c over the configurations' seed-mean points with a bootstrap that
resamples configurations (:func:`configuration_bootstrap`), with and without the
near-dead configurations (accuracy below half the base configuration's). Beside it, the free-knee hinge against a straight line by ΔBIC
(reports/analysis.py): a cliff is claimed only when ΔBIC > 10 and the after-knee slope is
negative and at least twice as steep as before.
"""

from __future__ import annotations

import numpy as np

from driftlab.reports import figures
from driftlab.reports.analysis import fit_cliff, hinge_vs_line_bic, slope_change_at
from driftlab.reports.markdown import fmt as _f, figure as _figure, table as _table

PAPER_KNEE = 0.70
NEAR_DEAD_FRACTION = 0.5
BOOTSTRAP_DRAWS = 2000
BIC_THRESHOLD = 10.0
KNOBS = ("act", "lr", "weight_decay", "gain", "depth", "act_l1")


def run_point(run) -> dict:
    """One run: tags, mean validation sparsity, accuracy and the divergence flag."""
    s = run.summary
    taps = (s.get("taps") or s.get("layers", {})).values()
    sp = [t["sparsity"] for t in taps if "sparsity" in t]
    losses = [r["loss"] for r in run.metrics if "loss" in r]
    final = s.get("final_loss")
    nonfinite = s.get("status") == "diverged" or final is None or not np.isfinite(final)
    above_init = bool(losses and np.isfinite(losses[-1]) and losses[-1] > losses[0])
    return {**{k: run.tags.get(k) for k in KNOBS if k in run.tags},
            "seed": int(run.tags.get("seed", 0)),
            "sparsity": float(np.mean(sp)) if sp else float("nan"),
            "accuracy": float(s.get("val_accuracy", float("nan"))),
            "diverged": bool(nonfinite or above_init), "non_finite": bool(nonfinite)}


def configurations(points) -> list[dict]:
    """Seed means per configuration (non-diverged runs): knobs, sparsity, accuracy, n."""
    groups: dict = {}
    for p in points:
        if not p["diverged"]:
            groups.setdefault(tuple(p.get(k) for k in KNOBS), []).append(p)
    return [{**dict(zip(KNOBS, key)), "n": len(ps),
             "sparsity": float(np.nanmean([p["sparsity"] for p in ps])),
             "accuracy": float(np.nanmean([p["accuracy"] for p in ps]))}
            for key, ps in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def base_accuracy(configs: list[dict]) -> float:
    """The base configuration's accuracy (reports/presets.py ``TRADEOFF_BASE``), or the
    best configuration's where the grid has no base (other scales)."""
    from driftlab.reports.presets import TRADEOFF_BASE

    base = [c["accuracy"] for c in configs
            if all(c.get(k) == v for k, v in TRADEOFF_BASE.items() if k in KNOBS)]
    return base[0] if base else max((c["accuracy"] for c in configs), default=float("nan"))


def configuration_bootstrap(configs: list[dict], draws: int = BOOTSTRAP_DRAWS,
                            seed: int = 0) -> tuple[float, np.ndarray]:
    """c at the knee over the configurations' points, and its bootstrap replicates from
    resampling configurations with replacement (NaN replicates, with fewer than 2 points
    on a side of the knee, are dropped)."""
    x = np.array([c["sparsity"] for c in configs])
    y = np.array([c["accuracy"] for c in configs])
    point = slope_change_at(x, y, PAPER_KNEE)
    rng = np.random.default_rng(seed)
    reps = np.array([slope_change_at(x[i], y[i], PAPER_KNEE)
                     for i in rng.integers(0, len(x), (draws, len(x)))]) if len(x) else np.array([])
    return point, reps[np.isfinite(reps)]


def _fit(points) -> dict | None:
    pts = [p for p in points if np.isfinite(p["sparsity"]) and np.isfinite(p["accuracy"])]
    if len({round(p["sparsity"], 6) for p in pts}) < 4:
        return None
    x = [p["sparsity"] for p in pts]
    y = [p["accuracy"] for p in pts]
    dbic, _ = hinge_vs_line_bic(x, y)
    cliff = fit_cliff(x, y)
    return {"n": len(pts), "delta_bic": dbic, "fit": cliff,
            "is_cliff": bool(dbic > BIC_THRESHOLD and cliff.fit.slope_after < 0
                             and abs(cliff.fit.slope_after) >= 2 * abs(cliff.fit.b))}


def analyse(runs) -> dict:
    """Points, fits with and without diverged runs, and per-seed slope changes at 0.70."""
    pts = [run_point(r) for r in runs]
    stable = [p for p in pts if not p["diverged"]]
    seeds = sorted({p["seed"] for p in pts})
    per_seed = [slope_change_at([p["sparsity"] for p in stable if p["seed"] == s],
                                [p["accuracy"] for p in stable if p["seed"] == s], PAPER_KNEE)
                for s in seeds]
    configs = configurations(pts)
    alive = [c for c in configs if c["accuracy"] >= NEAR_DEAD_FRACTION * base_accuracy(configs)]
    return {"points": pts, "with_diverged": _fit(pts), "without_diverged": _fit(stable),
            "configurations": configs, "alive": alive,
            "by_configuration": {"all configurations": configuration_bootstrap(configs),
                                 "without near-dead": configuration_bootstrap(alive)},
            "slope_change_at_knee": per_seed, "seeds": seeds,
            "max_sparsity": max((p["sparsity"] for p in stable), default=float("nan"))}


def _fit_line(name: str, f: dict | None) -> str:
    if f is None:
        return f"- {name}: too few distinct sparsity values for a hinge fit.\n"
    c = f["fit"]
    return (f"- {name} ({f['n']} runs): knee {c.fit.knee:.2f} (95% bootstrap CI "
            f"{c.knee_lo:.2f}–{c.knee_hi:.2f}), slope before {c.fit.b:.3g}, after "
            f"{c.fit.slope_after:.3g} accuracy per unit sparsity, ΔBIC(line − hinge) = "
            f"{f['delta_bic']:.1f}; cliff (ΔBIC > {BIC_THRESHOLD:g} and a ≥ 2× steeper "
            f"negative slope after the knee): **{'yes' if f['is_cliff'] else 'no'}**.\n")


def section(runs, out, title: str, provenance: str) -> tuple[str, dict]:
    s = f"## {title}\n\n"
    if not runs:
        return s + "Not run (preset `tradeoff`).\n", {}
    a = analyse(runs)
    fit = a["without_diverged"] or a["with_diverged"]
    path = figures.tradeoff(a["points"], fit["fit"] if fit else None, out / "tradeoff.png",
                            f"tradeoff: {provenance}")
    n_div = sum(p["diverged"] for p in a["points"])
    n_nan = sum(p["non_finite"] for p in a["points"])
    s += ("MLP on the embedded real 8×8 digits, AdamW. Knobs that move sparsity without "
          "instability (init gain, decoupled weight decay, an L1 penalty on the "
          "activations, clipped-ReLU² thresholds) around a stable base, plus a "
          "learning-rate ladder whose top rungs may diverge. A run is flagged *diverged* "
          "when it stopped on a non-finite loss or its last training loss is above its "
          "step-0 loss.\n\n")
    s += _figure(path, out, f"Validation accuracy vs mean activation sparsity per run "
                 f"(crosses: diverged), hinge fit without diverged runs and its knee's 95% "
                 f"bootstrap CI. From {provenance}.")
    s += f"{n_div} of {len(a['points'])} runs diverged ({n_nan} non-finite).\n\n"
    s += _fit_line("without diverged runs", a["without_diverged"])
    s += _fit_line("with diverged runs", a["with_diverged"])
    cs = ", ".join(_f(c) for c in a["slope_change_at_knee"])
    s += (f"- slope change c at the paper's knee 0.70, per seed (non-diverged runs): {cs} "
          f"(NaN: fewer than 2 runs above 0.70). Highest non-diverged sparsity reached: "
          f"{_f(a['max_sparsity'])}.\n")
    dead = [c for c in a["configurations"] if c not in a["alive"]]
    for name, (point, reps) in a["by_configuration"].items():
        ci = (f"95% bootstrap CI [{_f(np.quantile(reps, 0.025))}, "
              f"{_f(np.quantile(reps, 0.975))}] over {len(reps)} resamples of the "
              f"configurations" if len(reps) >= 100 else "too few configurations to resample")
        s += f"- c over the configurations' seed means, {name}: {_f(point)} ({ci}).\n"
    s += (f"- near-dead configurations (accuracy < {NEAR_DEAD_FRACTION:g} × the base's): "
          + (", ".join(f"{'/'.join(f'{k}={c[k]}' for k in KNOBS)} (accuracy {_f(c['accuracy'])},"
                       f" sparsity {_f(c['sparsity'])})" for c in dead) or "none") + ".\n\n")
    groups: dict = {}
    for p in a["points"]:
        groups.setdefault(tuple(p.get(k) for k in KNOBS), []).append(p)
    rows = []
    for key, ps in sorted(groups.items(), key=lambda kv: np.nanmean(
            [p["sparsity"] for p in kv[1]])):
        rows.append(list(key) + [len(ps), _f(np.nanmean([p["sparsity"] for p in ps])),
                                 _f(np.nanmean([p["accuracy"] for p in ps])),
                                 sum(p["diverged"] for p in ps)])
    s += _table(list(KNOBS) + ["seeds", "sparsity (mean)", "accuracy (mean)", "diverged"],
                rows)
    return s + "\n", a
