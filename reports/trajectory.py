"""Report section "Past initialization: the drift trajectory": cells, figures, 10-epoch figure.

Runs ``models.measure.trajectory.run`` for every cell of :func:`cells` (MLP on synthetic and
embedded digits at 2–3 learning rates, GPT-nano on embedded text) and the measured-only
10-epoch runs of :func:`epoch_cells` (ResNet on digits, GPT-nano on text: the figure the
paper's authors promised the referee), and writes reports/trajectory/{trajectory.json,
trajectory.md, *.png}. ``--json-only`` redraws the figures and Markdown from the JSON.

    python -m driftlab.reports.trajectory [--out reports/trajectory] [--only NAME ...]
                                          [--cifar PATH] [--tokens PATH] [--redraw]

An epoch is one pass over the training split: n_train / B steps for images (epoch
permutations, models/data/images.py) and train tokens / (B·block_size) steps for text
(random windows: an epoch is the number of windows whose tokens add up to the split).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from driftlab.atomic_io import write_bytes, write_json, write_text
from driftlab.models.measure import trajectory as mt
from driftlab.theory.trajectory import HORIZON_FRACTION

OUT = Path(__file__).resolve().parent / "trajectory"


@dataclass(frozen=True)
class Cell:
    name: str
    spec: mt.TrajectorySpec


def cells(seeds: int = 32) -> list[Cell]:
    """The predicted-vs-measured cells (the default MLP tiny, ReLU): SGD and momentum against
    the second-order expansion, AdamW and Muon against the replays at θ₀."""
    m = lambda data, lr, steps: mt.TrajectorySpec("mlp", data=data, lr=lr, steps=steps, seeds=seeds)
    return [
        Cell("mlp synthetic lr 0.01", m("synthetic", 0.01, 100)),
        Cell("mlp synthetic lr 0.05", m("synthetic", 0.05, 80)),
        Cell("mlp digits lr 0.01", m("embedded", 0.01, 100)),
        Cell("mlp digits lr 0.05", m("embedded", 0.05, 80)),
        Cell("mlp digits lr 0.002", m("embedded", 0.002, 100)),
        Cell("mlp digits momentum lr 0.002",
             mt.TrajectorySpec("mlp", data="embedded", optimizer="momentum", lr=0.002, steps=60,
                               seeds=seeds)),
        Cell("gpt-nano text lr 0.02", mt.TrajectorySpec("gpt", data="embedded", lr=0.02, steps=40,
                                                       seeds=max(8, seeds // 4), pairs=2)),
        Cell("mlp synthetic adamw lr 1e-4",
             mt.TrajectorySpec("mlp", optimizer="adamw", lr=1e-4, steps=60, seeds=seeds)),
        Cell("mlp synthetic adamw lr 1e-3",
             mt.TrajectorySpec("mlp", optimizer="adamw", lr=1e-3, steps=60, seeds=seeds)),
        Cell("mlp synthetic muon lr 0.01",
             mt.TrajectorySpec("mlp", optimizer="muon", lr=0.01, steps=60, seeds=seeds)),
    ]


def epoch_steps(spec: mt.TrajectorySpec) -> int:
    """Steps per epoch (module docstring)."""
    arch, cfg = mt.model(spec)
    cfg, ds = arch.data(spec.data, cfg, 0)
    n = ds.meta.get("n_train")
    if n is not None:
        return max(1, int(n) // spec.batch_size)
    tokens = ds.meta.get("train_tokens") or ds.meta.get("n_train_tokens")
    block = getattr(cfg, "block_size", None)
    if tokens is None or block is None:
        raise ValueError(f"{spec.arch}/{spec.data}: the data's meta has no train size "
                         f"({sorted(ds.meta)}); cannot define an epoch")
    return max(1, int(tokens) // (spec.batch_size * int(block)))


def epoch_cells(cifar: str | None = None, tokens: str | None = None, seeds: int = 4) -> list[Cell]:
    """Measured-only 10-epoch cells (steps filled in by :func:`run_epochs`)."""
    out = [Cell("resnet digits momentum lr 0.02",
                mt.TrajectorySpec("resnet", data="embedded", optimizer="momentum", lr=0.02,
                                  seeds=seeds, batch_size=32, predict=False)),
           Cell("gpt-nano text adamw lr 1e-3",
                mt.TrajectorySpec("gpt", data="embedded", optimizer="adamw", lr=1e-3,
                                  seeds=max(2, seeds // 2), batch_size=32, predict=False))]
    if cifar:
        out.append(Cell("resnet cifar10 momentum lr 0.02",
                        mt.TrajectorySpec("resnet", data=cifar, optimizer="momentum", lr=0.02,
                                          seeds=seeds, predict=False)))
    if tokens:
        out.append(Cell("gpt-nano tokens adamw lr 1e-3",
                        mt.TrajectorySpec("gpt", data=tokens, optimizer="adamw", lr=1e-3,
                                          seeds=seeds, batch_size=16, predict=False)))
    return out


def run_cell(cell: Cell) -> dict:
    rows, changes, raw = mt.run(cell.spec)
    coef = raw["coef"] or {}
    return {"name": cell.name, "spec": asdict(cell.spec), "n_train": raw["n_train"],
            "rows": [r.as_dict() for r in rows], "sign_changes": [c.as_dict() for c in changes],
            "agreement": mt.agreement(rows), "agreement_first_order": mt.agreement(rows, "z_first"),
            "check": raw.get("check"),
            "quantities": raw["problem"].quantities,
            "coefficients": {k: v.mean(0).tolist() for k, v in coef.items()},
            "coefficients_se": {k: (v.std(0, ddof=1) / math.sqrt(v.shape[0])).tolist()
                                for k, v in coef.items()}}


def run_epochs(cell: Cell, epochs: int = 10, points: int = 60) -> dict:
    per = epoch_steps(cell.spec)
    steps = epochs * per
    spec = mt.TrajectorySpec(**{**asdict(cell.spec), "steps": steps})
    every = max(1, steps // points)
    prob, meas = mt.train_ensemble(spec, record_every=every)
    out = {"name": cell.name, "spec": asdict(spec), "steps_per_epoch": per, "record_every": every,
           "series": {}}
    for q in prob.quantities:
        v = meas[q]
        keep = [t for t in range(v.shape[1]) if not np.isnan(v[:, t]).any()]
        out["series"][q] = {"step": keep, "mean": v[:, keep].mean(0).tolist(),
                            "se": (v[:, keep].std(0, ddof=1) / math.sqrt(v.shape[0])).tolist()}
    return out


# --------------------------------------------------------------------------- figures


def _plot_cell(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = res["quantities"]
    fig, axes = plt.subplots(1, len(qs), figsize=(4.2 * len(qs), 3.4), squeeze=False)
    for ax, q in zip(axes[0], qs):
        rs = [r for r in res["rows"] if r["quantity"] == q]
        t = np.array([r["step"] for r in rs])
        m = np.array([r["measured"] for r in rs])
        ms = np.array([r["measured_se"] for r in rs])
        s2 = np.array([r["second_order"] for r in rs])
        s2e = np.array([r["second_order_se"] for r in rs])
        ax.fill_between(t, m - 2 * ms, m + 2 * ms, color="0.6", alpha=0.4, label="measured ±2 SE")
        ax.plot(t, m, color="k", lw=1.2)
        ax.plot(t, [r["first_order"] for r in rs], "--", color="tab:blue", label="first order")
        ax.fill_between(t, s2 - 2 * s2e, s2 + 2 * s2e, color="tab:red", alpha=0.25)
        ax.plot(t, s2, color="tab:red", label="second order ±2 SE")
        hz = next(c["horizon"] for c in res["sign_changes"] if c["quantity"] == q)
        if hz < t.max():
            ax.axvline(hz, color="tab:green", ls=":", label=f"horizon κ={HORIZON_FRACTION}")
        lo, hi = min(m.min(), s2.min()), max(m.max(), s2.max())
        pad = 0.15 * (hi - lo + 1e-12)
        ax.set_ylim(lo - 3 * pad, hi + 3 * pad)
        ax.axhline(0, color="0.3", lw=0.5)
        ax.set_title(q, fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(res["name"], fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _plot_epochs(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.6), squeeze=False)
    for ax, res in zip(axes[0], results):
        per = res["steps_per_epoch"]
        for q, s in res["series"].items():
            if not q.startswith("g+:"):
                continue
            e = np.array(s["step"]) / per
            m, se = np.array(s["mean"]), np.array(s["se"])
            line, = ax.plot(e, m, lw=1, label=q[3:])
            ax.fill_between(e, m - 2 * se, m + 2 * se, color=line.get_color(), alpha=0.2)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("E[∂ℓ/∂p | p > 0] (×B)")
        ax.set_title(f"{res['name']} ({res['spec']['seeds']} seeds, ±2 SE)", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


# --------------------------------------------------------------------------- markdown


def markdown(data: dict) -> str:
    lines = ["## Past initialization: the drift trajectory", "",
             "Second-order expansion of E[Q(θ_t)] in η (theory/trajectory.py; SGD, momentum) and "
             "the optimizer replayed at θ₀ (montecarlo/trajectory_replay.py; AdamW, Muon) against "
             "seed-ensemble training with the engine's stream (montecarlo/trajectory.py). The "
             "check (montecarlo/trajectory_check.py, docs/trajectory.md): per seed D = prediction "
             "− measured with the first order's batch noise removed by the frozen replay on the "
             "training stream; horizon: η·T(t)·U ≤ κ = "
             f"{HORIZON_FRACTION}, T = 2W₂/W₁ (β-aware), U an upper 95% bound on |b/a|; "
             "difference: max |t| over the in-horizon rows against its sign-flip reference at "
             "α = 1e-3 (never rejects below 11 seeds); agreement: every in-horizon row within "
             "±10% of the quantity's measured drift (TOST, α = 0.05 each, intersection–union).", "",
             "| cell | seeds | in-horizon rows | max abs t | sign-flip p | critical | "
             "within ±10% (seeds needed) | verdict | old verdict (max abs z vs z*) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in data["cells"]:
        a, ch = c["agreement"], c.get("check")
        if ch is None:
            continue
        d = ch["difference"]
        crit = "unattainable" if not math.isfinite(d["critical"]) else f"{d['critical']:.2f}"
        eq = "; ".join(f"{q.split(':', 1)[1]} {'yes' if e['equivalent'] else 'no'} "
                       f"({e['seeds_needed']})" for q, e in ch["equivalence"].items())
        old = (f"{'yes' if a['agrees'] else 'NO'} ({a['max_abs_z']:.2f} vs {a['z_star']:.2f})"
               if a["n"] else "n/a")
        lines.append(f"| {c['name']} | {ch['seeds']} | {d['rows']} | {d['max_abs_t']:.2f} | "
                     f"{d['p']:.2g} | {crit} | {eq} | {ch['verdict']} | {old} |")
    if data.get("previous"):
        lines += ["", "Verdicts checked in before issue 30 (normal Bonferroni z*, horizon from the "
                  "point estimate of |b/a| without β): " + data["previous"]]
    lines += ["", "Sign changes (first step whose value has the sign opposite to the start; "
              "95% cluster-bootstrap CI; none = no change within the steps run):", "",
              "| cell | quantity | a | b | horizon (steps) | predicted | measured |",
              "|---|---|---|---|---|---|---|"]
    fmt = lambda v, ci: "none" if v is None else f"{v} (CI {ci[0]}–{ci[1] if ci[1] is not None else '>'})" \
        if ci else f"{v}"
    for c in data["cells"]:
        for s in c["sign_changes"]:
            lines.append(f"| {c['name']} | {s['quantity']} | {s['a']:.3g} | {s['b']:.3g} | "
                         f"{s['horizon']:.0f} | {fmt(s['predicted_sign_change'], s['predicted_ci'])} | "
                         f"{fmt(s['measured_sign_change'], s['measured_ci'])} |")
    for c in data["cells"]:
        lines += ["", f"![{c['name']}]({_slug(c['name'])}.png)"]
    if data.get("epochs"):
        lines += ["", "### E[∂ℓ/∂p | p > 0] over the first 10 epochs", "",
                  "| run | steps/epoch | tap | epoch 0 | epoch 1 | epoch 5 | epoch 10 | first negative epoch |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in data["epochs"]:
            per = r["steps_per_epoch"]
            for q, s in r["series"].items():
                if not q.startswith("g+:"):
                    continue
                st, m, se = np.array(s["step"]), np.array(s["mean"]), np.array(s["se"])
                at = lambda e: f"{m[np.argmin(abs(st - e * per))]:+.3g} ± {se[np.argmin(abs(st - e * per))]:.2g}"
                neg = np.nonzero(m + 2 * se < 0)[0]
                first = f"{st[neg[0]] / per:.2f}" if neg.size else "never"
                lines.append(f"| {r['name']} | {per} | {q[3:]} | {at(0)} | {at(1)} | {at(5)} | {at(10)} | {first} |")
        lines += ["", "![10 epochs](epochs.png)"]
    if data.get("answer"):
        lines += ["", data["answer"]]
    lines += ["", "Regenerate: `python -m driftlab.reports.trajectory` (from the JSON: `--redraw`)."]
    return "\n".join(lines) + "\n"


def write_all(data: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "trajectory.json", data)
    for c in data["cells"]:
        if c["rows"]:
            _plot_cell(c, out / f"{_slug(c['name'])}.png")
    if data.get("epochs"):
        _plot_epochs(data["epochs"], out / "epochs.png")
    write_text(out / "trajectory.md", markdown(data))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m driftlab.reports.trajectory")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--only", nargs="*", default=None, help="cell names to (re)run")
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--epoch-seeds", type=int, default=4)
    ap.add_argument("--cifar", default=None, help="CIFAR-10 binary directory (real-format data)")
    ap.add_argument("--tokens", default=None, help="token-shard directory (real-format data)")
    ap.add_argument("--no-epochs", action="store_true")
    ap.add_argument("--redraw", action="store_true", help="figures and Markdown from the JSON")
    args = ap.parse_args(argv)
    out = Path(args.out)
    js = out / "trajectory.json"
    data = json.loads(js.read_text()) if js.exists() else {"cells": [], "epochs": []}
    if not args.redraw:
        done = {c["name"]: c for c in data["cells"]}
        for cell in cells(args.seeds):
            if args.only is not None and cell.name not in args.only:
                continue
            print(f"running {cell.name}", file=sys.stderr, flush=True)
            done[cell.name] = run_cell(cell)
            data["cells"] = list(done.values())
            write_all(data, out)
        if not args.no_epochs:
            ep = {r["name"]: r for r in data.get("epochs", [])}
            for cell in epoch_cells(args.cifar, args.tokens, args.epoch_seeds):
                if args.only is not None and cell.name not in args.only:
                    continue
                print(f"running {cell.name} (10 epochs)", file=sys.stderr, flush=True)
                ep[cell.name] = run_epochs(cell)
                data["epochs"] = list(ep.values())
                write_all(data, out)
    write_all(data, out)
    print(out / "trajectory.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
