"""Activation spikes in GPT-nano: relu² against relu, clipped relu², gelu² and clipped gelu².

Per run and MLP tap (validation batches at the final parameters, models/instrument.py):
the output spike ratio max|h| / median of the non-zero |h|, the pre-activation spike ratio
max|p| / median|p|, max|h| and the massive-activation count (|h| > 100 and > 1000 × the
median, the literature's criterion). For ReLU² the output ratio is the *square* of the
positive pre-activation ratio, so comparisons across activations use the pre-activation
ratio. *Intermediate* layers are the taps other than the first and the last.

Pre-registered comparisons (paired by seed; unadjusted p here, Holm in the claims table):
relu² amplifies spikes: log p-ratio(relu²) − log p-ratio(relu) > 0 (max over intermediate
layers); clipping helps: val loss(relu²) − val loss(clipped relu², the 99%-quantile clip)
> 0; gelu² is lowest: pairwise, for every other activation a, val loss(a) − val
loss(gelu²) > 0 (the claims table decides "lowest" by intersection–union over the pairs).
"""

from __future__ import annotations

import numpy as np

from driftlab.reports import figures
from driftlab.reports.markdown import ci as _ci, fmt as _f, figure as _figure, table as _table
from driftlab.reports.verdicts import two_sample

# Per-tap summary keys written by the engine (models/train.py, summary["taps"]).
H_RATIO, P_RATIO, H_MAX, MASSIVE = "spike_ratio", "spike_ratio_p", "max_abs", "massive_count"


def _layers(run) -> dict:
    """Every tap's validation statistics (older summaries: the mapped layers)."""
    return run.summary.get("taps") or run.summary.get("layers", {})


def _intermediate(names: list[str]) -> list[str]:
    names = sorted(names)
    return names[1:-1] if len(names) > 2 else names


def _max_over(run, key: str, names=None) -> float:
    layers = _layers(run)
    vals = [layers[n].get(key) for n in (names or layers) if n in layers]
    vals = [v for v in vals if v is not None and np.isfinite(v)]
    return float(max(vals)) if vals else float("nan")


def _clip_of(act: str) -> float:
    return float(act.split(":")[1]) if ":" in act else float("nan")


def collect(runs, order: list[str]) -> list[dict]:
    """Per activation (in ``order``, others after): per-seed values, seeds aligned."""
    groups: dict = {}
    for r in runs:
        groups.setdefault(r.tags["act"], []).append(r)
    acts = [a for a in order if a in groups] + sorted(a for a in groups if a not in order)
    rows = []
    for act in acts:
        rs = sorted(groups[act], key=lambda r: r.tags.get("seed", 0))
        names = sorted(_layers(rs[0]))
        mid = _intermediate(names)
        rows.append({
            "act": act, "n": len(rs), "seeds": [int(r.tags.get("seed", 0)) for r in rs],
            "h_ratio": [_max_over(r, H_RATIO) for r in rs],
            "p_ratio_mid": [_max_over(r, P_RATIO, mid) for r in rs],
            "h_ratio_mid": [_max_over(r, H_RATIO, mid) for r in rs],
            "max_abs": [_max_over(r, H_MAX) for r in rs],
            "massive": [float(sum(_layers(r)[n].get(MASSIVE, 0) or 0 for n in names))
                        for r in rs],
            "val_loss": [float(r.summary.get("val_loss", float("nan"))) for r in rs],
            "sparsity": [float(np.mean([_layers(r)[n].get("sparsity", np.nan) for n in names]))
                         for r in rs],
            "clip_reached": [_max_over(r, H_MAX) / _clip_of(act) for r in rs],
            "per_layer_p_ratio": {n: float(np.mean([_layers(r)[n].get(P_RATIO, np.nan)
                                                    for r in rs])) for n in names},
            "spike_ratio": [_max_over(r, H_RATIO) for r in rs]})  # figures.spikes
    return rows


def _by_seed(row: dict, key: str) -> dict:
    return dict(zip(row["seeds"], row[key]))


def _paired(a: dict, b: dict) -> tuple[list, list]:
    common = sorted(set(a) & set(b))
    return [a[s] for s in common], [b[s] for s in common]


def comparisons(rows: list[dict], main_clip: str, gelu2_clip: str) -> dict:
    """Per-seed values of the three pre-registered comparisons (see the module doc)."""
    d = {r["act"]: r for r in rows}
    out: dict = {}
    if "relu" in d and "relu2" in d:
        a, b = _paired(_by_seed(d["relu2"], "p_ratio_mid"), _by_seed(d["relu"], "p_ratio_mid"))
        out["relu2_amplifies"] = [float(np.log(x) - np.log(y)) for x, y in zip(a, b)
                                  if x > 0 and y > 0]
    if "relu2" in d and main_clip in d:
        a, b = _paired(_by_seed(d["relu2"], "val_loss"), _by_seed(d[main_clip], "val_loss"))
        out["clip_helps"] = [x - y for x, y in zip(a, b)]
    for act in (a for a in d if "gelu2" in d and a != "gelu2"):
        a, b = _paired(_by_seed(d[act], "val_loss"), _by_seed(d["gelu2"], "val_loss"))
        out[f"gelu2_below:{act}"] = [x - y for x, y in zip(a, b)]
    if "gelu2" in d and gelu2_clip in d:
        a, b = _paired(_by_seed(d["gelu2"], "val_loss"), _by_seed(d[gelu2_clip], "val_loss"))
        out["gelu2_vs_clipped"] = [x - y for x, y in zip(a, b)]
    return out


def section(runs, out, title: str, provenance: str, order: list[str], main_clip: str,
            gelu2_clip: str) -> tuple[str, list, dict]:
    s = f"## {title}\n\n"
    if not runs:
        return s + "Not run (preset `spikes`).\n", [], {}
    rows = collect(runs, order)
    comp = comparisons(rows, main_clip, gelu2_clip)
    path = figures.spikes(rows, out / "spikes.png", f"spikes: {provenance}")
    s += ("GPT-nano on the embedded stdlib text, AdamW; statistics on validation batches at "
          "the final parameters. Output ratio = max|h| / median of the non-zero |h|; "
          "pre-activation ratio = max|p| / median|p| (for ReLU² the output ratio is the "
          "square of the positive pre-activation ratio, so activations are compared on "
          "p); *mid* = intermediate layers (not the first or last block); massive = "
          "entries with |h| > 100 and > 1000 × median. A clip *binds* when max|h| reaches "
          "it (max|h| / clip = 1). Clip thresholds come from the measured distribution of "
          "relu² outputs (reports/spike_clips/).\n\n")
    s += _figure(path, out, f"Output spike ratio (max over layers) and validation loss per "
                 f"activation, mean ± t-based 95% CI over seeds. From {provenance}.")
    s += _table(["act", "seeds", "p-ratio mid (max)", "h-ratio mid (max)", "h-ratio all (max)",
                 "max|h|", "max|h| / clip", "massive", "val loss", "sparsity"],
                [[r["act"], r["n"], _ci(r["p_ratio_mid"]), _ci(r["h_ratio_mid"]),
                  _ci(r["h_ratio"]), _ci(r["max_abs"]),
                  _ci(r["clip_reached"]) if ":" in r["act"] else "–", _ci(r["massive"]),
                  _ci(r["val_loss"]), _ci(r["sparsity"])] for r in rows])
    s += "\n\nPaired comparisons over seeds (one-sided t, unadjusted):\n\n"
    names = {"relu2_amplifies": "log p-ratio mid: relu² − relu (> 0: relu² amplifies)",
             "clip_helps": f"val loss: relu² − {main_clip} (> 0: clipping helps)",
             "gelu2_vs_clipped": f"val loss: gelu² − {gelu2_clip} (> 0: clipping helps gelu²)"}
    trows = []
    for key, values in comp.items():
        if len(values) >= 2:
            t = two_sample(values, [0.0] * len(values), "greater", paired=True)
            name = names.get(key) or f"val loss: {key.split(':', 1)[1]} − gelu² (> 0: gelu² lower)"
            trows.append([name, t.n, f"{_f(t.mean)} [{_f(t.ci_low, 2)}, "
                          f"{_f(t.ci_high, 2)}]", _f(t.p, 2)])
    s += _table(["comparison", "n", "mean [95% CI]", "p"], trows)
    return s + "\n", rows, comp
