"""Drift over training at the decisive scale: per-run statistics and the report section.

Per engine run (a summary.json + metrics.jsonl, see models/train.py):

* ``w_rel`` — Δmean(W_down)/std(W_down at init) at the final step, averaged over the
  run's taps (output heads excluded: theory gives a head zero mean gradient, so the
  heads are reported separately, ``head_rel``, as the zero-drift control);
* ``w_rel_early`` — the same at the first logged step ≥ 10% of the run ("early in
  training", the paper's wording);
* ``g0`` — E[∂ℓ/∂p | p > 0] at step 0, averaged over every tap (the engine's
  ``grad_pos_mean``: batch size × mean over positive entries of ∂ℓ/∂p);
* ``sparsity`` — validation fraction of exact zeros at the final parameters, averaged
  over every tap (``sparsity_max``: the largest); ``val_loss``.

A cell is (arch, act, data, optimizer), the optimizer suffixed by a variant tag (``lr``,
``norm``) where the preset sets one; its seeds are its independent replicates. The
per-cell test is the one-sided t-test of mean ``w_rel`` < 0 over seeds; the claims table
(reports/claims.py) tests every cell on its own, never pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driftlab.reports import figures
from driftlab.reports.analysis import mean_ci
from driftlab.reports.markdown import figure as _figure, table as _table
from driftlab.reports.verdicts import one_sided

EARLY_FRACTION = 0.1


@dataclass(frozen=True)
class RunDrift:
    """The per-run drift statistics above (NaN where a run did not log them)."""

    cell: tuple  # (arch, act, data, optimizer)
    seed: int
    w_rel: float
    w_rel_early: float
    head_rel: float
    g0: float
    g_end: float
    sparsity: float
    sparsity_max: float
    val_loss: float
    steps: int


def _rel(entry: dict, change: float | None = None) -> float:
    std = entry.get("w_std_init")
    change = entry.get("w_mean_change") if change is None else change
    return float(change / std) if std and change is not None else float("nan")


def _nanmean(values) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def run_drift(run) -> RunDrift:
    """:class:`RunDrift` of one finished engine run (reports.report.Run)."""
    layers, heads = run.summary.get("layers", {}), run.summary.get("heads", {})
    # Sparsity and E[g|p>0] concern every tap, including those read only by a head.
    taps = run.summary.get("taps") or layers
    metrics = run.metrics
    steps = int(run.spec["config"].get("steps", 0))
    early = next((r for r in metrics if r["step"] >= EARLY_FRACTION * steps and r["step"] > 0),
                 None)
    first = metrics[0] if metrics and metrics[0]["step"] == 0 else None

    def early_rel(entry):
        if early is None or entry.get("downstream") not in early.get("weights", {}):
            return float("nan")
        return _rel(entry, early["weights"][entry["downstream"]]["mean_change"])

    def gpos(rec):
        if rec is None:
            return float("nan")
        return _nanmean(v.get("grad_pos_mean") for v in rec.get("taps", {}).values())

    tags = run.tags
    return RunDrift(
        cell=(tags["arch"], tags["act"], tags.get("data", run.spec["config"].get("data")),
              optimizer_cell(tags, run.spec["config"])),
        seed=int(tags.get("seed", 0)),
        w_rel=_nanmean(_rel(e) for e in layers.values()),
        w_rel_early=_nanmean(early_rel(e) for e in layers.values()),
        head_rel=_nanmean(_rel(e) for e in heads.values()),
        g0=gpos(first), g_end=gpos(metrics[-1] if metrics else None),
        sparsity=_nanmean(e.get("sparsity") for e in taps.values()),
        sparsity_max=max((e["sparsity"] for e in taps.values() if "sparsity" in e),
                         default=float("nan")),
        val_loss=float(run.summary.get("val_loss", float("nan"))), steps=steps)


# Tags that make a separate cell of one (arch, act, data, optimizer): the MLP's learning-rate
# factor and ResNet's norm=none control. Their predicted drift differs, so they are never pooled.
VARIANT_TAGS = ("lr", "norm")


def optimizer_cell(tags: dict, config: dict) -> str:
    """The optimizer, suffixed with any :data:`VARIANT_TAGS` (e.g. ``adamw lr=0.03``)."""
    opt = str(tags.get("optimizer", config.get("optimizer")))
    extra = [f"{k}={tags[k]}" for k in VARIANT_TAGS if k in tags]
    return " ".join([opt, *extra])


def collect_cells(runs) -> dict[tuple, list[RunDrift]]:
    """{(arch, act, data, optimizer): [RunDrift per seed]} in a stable order."""
    cells: dict[tuple, list[RunDrift]] = {}
    for r in runs:
        d = run_drift(r)
        cells.setdefault(d.cell, []).append(d)
    return {k: sorted(v, key=lambda d: d.seed) for k, v in sorted(cells.items())}


def _fmt(x, digits=3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _fmt_step(step: int | None) -> str:
    return "–" if step is None else str(step)


def _mean_ci(values) -> str:
    """"mean [t-based 95% CI]" over the finite values."""
    m, h, n = mean_ci(values)
    if n < 2:
        return _fmt(m) if n else "–"
    return f"{_fmt(m)} [{_fmt(m - h, 2)}, {_fmt(m + h, 2)}]"


def section(runs, out, title: str, provenance: str) -> tuple[str, dict]:
    """Markdown for the drift section and the cells (for the claims table)."""
    cells = collect_cells(runs)
    if not cells:
        return f"## {title}\n\nNot run (preset `drift`).\n", {}
    curves = curves_by_arch(runs)
    path = figures.drift_curves(curves, out / "drift_curves.png", f"drift preset: {provenance}")
    s = f"## {title}\n\n"
    s += ("Per run: Δmean(W)/std(W at init) of every matrix that reads a tap's activation "
          "(the paper's downstream matrices), averaged over the run's taps, with the output "
          "heads excluded and shown as the zero-drift control; *early* is the first logged "
          "step at ≥ 10% of the run. Per cell the pre-registered test is a one-sided t-test "
          "over seeds of mean Δmean/std < 0 (p unadjusted here; the claims table "
          "Holm-adjusts). E[g|p>0] is the engine's `grad_pos_mean` (batch × mean of ∂ℓ/∂p "
          "over positive pre-activations), averaged over taps. SGD is SGD with momentum "
          "0.9. *Turns at*: the first logged step at which the seed-mean E[g|p>0] (or the "
          "seed-mean downstream drift) takes the opposite sign of its first value and keeps "
          "it at the next logged step; – if it never turns. Why a sign turns within the "
          "first steps, to second order in the learning rate, is derived in "
          "theory/trajectory.py and checked against seed ensembles in "
          "reports/trajectory/trajectory.md.\n\n")
    s += _figure(path, out, f"Downstream weight-mean change (top, units of the init std, "
                 f"mean over each model's taps, heads excluded) and E[∂ℓ/∂p | p > 0] "
                 f"(bottom) over training; ReLU, one line per (data, optimizer), mean ± "
                 f"t-based 95% CI over seeds. From {provenance}.")
    rows = []
    for (arch, act, data, opt), ds in cells.items():
        c = curves.get(arch, {}).get(curve_key(act, data, opt))
        turns = ["–", "–"] if c is None else [
            _fmt_step(sign_turn(c["steps"], c[k].mean(axis=0))) for k in ("gpos", "w_rel")]
        w = [d.w_rel for d in ds]
        test = one_sided(w, "less") if sum(np.isfinite(w)) >= 2 else None
        rows.append([arch, act, data, opt, len(ds), _mean_ci([d.w_rel_early for d in ds]),
                     _mean_ci(w), _fmt(test.p, 2) if test else "–",
                     _mean_ci([d.head_rel for d in ds]), _mean_ci([d.g0 for d in ds]),
                     _mean_ci([d.g_end for d in ds]), *turns,
                     _mean_ci([d.sparsity for d in ds]), _mean_ci([d.val_loss for d in ds])])
    s += _table(["arch", "act", "data", "optimizer", "seeds", "Δmean/std early (95% CI)",
                 "Δmean/std final (95% CI)", "p (final < 0)", "heads Δmean/std",
                 "E[g|p>0] step 0", "E[g|p>0] last logged", "E[g|p>0] turns at",
                 "drift turns at", "ReLU sparsity (val)",
                 "val loss"], rows)
    return s + "\n", cells


def curve_key(act: str, data: str, optimizer_cell: str) -> str:
    """The figure's line label of a cell: act/data/optimizer (with its variant tags)."""
    return f"{act}/{data}/{optimizer_cell}"


def sign_turn(steps, mean) -> int | None:
    """The first logged step s > 0 at which the seed-mean series has the opposite sign of
    its first non-zero value and keeps it at the next logged step (a lone noisy point is
    not a turn); None if it never turns."""
    steps, mean = np.asarray(steps), np.asarray(mean, float)
    nz = np.flatnonzero(np.isfinite(mean) & (mean != 0))
    if nz.size == 0:
        return None
    first = np.sign(mean[nz[0]])
    flipped = np.sign(mean) == -first
    for i in range(nz[0] + 1, len(mean) - 1):
        if flipped[i] and flipped[i + 1]:
            return int(steps[i])
    return None


def curves_by_arch(runs) -> dict:
    """{arch: {"act/data/optimizer": {"steps", "w_rel" (seeds × T), "gpos"}}} for the
    figure: per logged step the tap-mean Δmean/std (heads excluded) and E[g|p>0]."""
    groups: dict = {}
    for r in runs:
        layers = r.summary.get("layers", {})
        steps, w, g = [], [], []
        for rec in r.metrics:
            ws = [_rel(e, rec["weights"][e["downstream"]]["mean_change"])
                  for e in layers.values() if e.get("downstream") in rec.get("weights", {})]
            gs = [v["grad_pos_mean"] for v in rec.get("taps", {}).values()
                  if "grad_pos_mean" in v]
            if ws and gs:
                steps.append(rec["step"])
                w.append(_nanmean(ws))
                g.append(_nanmean(gs))
        t = r.tags
        key = curve_key(t.get("act", ""), t.get("data", ""), optimizer_cell(t, r.spec["config"]))
        groups.setdefault(t["arch"], {}).setdefault(key, []).append(
            (np.array(steps), np.array(w), np.array(g)))
    out: dict = {}
    for arch, keys in groups.items():
        for key, cs in keys.items():
            common = sorted(set.intersection(*(set(c[0].tolist()) for c in cs)))
            if not common:
                continue
            pick = [np.searchsorted(c[0], common) for c in cs]
            out.setdefault(arch, {})[key] = {
                "steps": np.array(common),
                "w_rel": np.stack([c[1][i] for c, i in zip(cs, pick)]),
                "gpos": np.stack([c[2][i] for c, i in zip(cs, pick)])}
    return out
