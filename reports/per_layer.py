"""Report section "Where the theorem holds at initialization": per-layer runs and figure.

Runs ``montecarlo.per_layer.run_layers`` for every architecture variant of issue 8 and
writes reports/per_layer/{per_layer.json, per_layer.md, per_layer.png}: one row per
(variant, tap) with predicted ± SE, measured ± SE, the paired z, the Gauss–Newton and
curvature parts, the sign verdict and the deciding term, and a predicted-vs-measured
figure with error bars. The Bonferroni z* counts every agreement row of the section.

    python -m driftlab.reports.per_layer [--out reports/per_layer] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from driftlab.models.measure.per_layer import LayersSpec, agreement_threshold, run_layers  # noqa: E402

# PyTorch's U(±1/√fan_in) has variance 1/(3·fan_in): the Gaussian with that variance.
TORCH_VARIANCE_GAUSS = (("init", "fan_in_normal"), ("gain", 1 / math.sqrt(3)))


@dataclass(frozen=True)
class Variant:
    name: str
    spec: LayersSpec
    note: str = ""


def variants(seeds: dict | None = None) -> list[Variant]:
    """Issue 8's architecture variants at size tiny (seeds per arch overridable)."""
    n = {"mlp": 64, "gpt": 64, "vit": 64, "mpsenet": 64, "resnet": 64, **(seeds or {})}
    r = lambda norm: LayersSpec("resnet", seeds=n["resnet"], batch_size=8, probes=4,
                                overrides=(("norm", norm),))
    g = lambda **kw: LayersSpec("gpt", seeds=n["gpt"], batch_size=32, probes=4, **kw)
    untied, nonorm = ("tied_head", False), ("final_norm", False)
    return [
        Variant("mlp", LayersSpec("mlp", seeds=n["mlp"], batch_size=32, exact=True)),
        Variant("gpt default, synthetic", g()),
        Variant("gpt default, embedded text", g(data="embedded")),
        Variant("gpt untied head", g(overrides=(untied,))),
        Variant("gpt untied, no final norm", g(overrides=(untied, nonorm))),
        Variant("gpt fan-in init, untied, no final norm",
                g(overrides=(untied, nonorm, ("init", "fan_in_normal")))),
        Variant("vit", LayersSpec("vit", seeds=n["vit"], batch_size=32, probes=1, row_exact=True)),
        Variant("mpsenet (Gaussian W, torch variance)",
                LayersSpec("mpsenet", seeds=n["mpsenet"], batch_size=2, probes=1, row_exact=True,
                           overrides=TORCH_VARIANCE_GAUSS),
                "PyTorch-default variance, Gaussian so Stein is exact"),
        Variant("resnet, norm=batch", r("batch"),
                "conv readers as im2col; stem.act adds the exact identity-shortcut term"),
        Variant("resnet, norm=group (control)", r("group"), "no batch coupling of T"),
        Variant("resnet, norm=none (control)", r("none"), "no norm after the readers"),
    ]


POWER = Variant("POWER: gpt default, curvature sign flipped",
                LayersSpec("gpt", seeds=64, batch_size=32, probes=4,
                           planted_curvature_sign=-1.0), "planted error: must disagree")


def deciding_term(row: dict) -> str:
    """Which part decides the predicted sign: Gauss–Newton, curvature, or neither (cancel)."""
    gn, cu, pr, se = row["gauss_newton"], row["curvature"], row["predicted"], row["predicted_se"]
    sc = row.get("shortcut") or 0.0  # ResNet: exact identity-shortcut term, part of predicted
    if sc and abs(pr) >= 2 * se and abs(sc) > abs(pr - sc) and sc * pr > 0:
        return "identity shortcut (exact)"
    kink = row.get("kink") or 0.0  # ResNet: the ReLU-kink part of the curvature
    term = _deciding_stein_term(gn, cu, pr, se, row["curvature_se"])
    if term == "curvature" and kink * cu > 0 and abs(kink) > abs(cu - kink):
        return "curvature (ReLU kinks)"
    return term


def _deciding_stein_term(gn: float, cu: float, pr: float, se: float, cu_se: float) -> str:
    if abs(pr) < 2 * se:
        return "GN and curvature cancel" if abs(cu) > 2 * cu_se else "both ≈ 0"
    if abs(cu) < 2 * cu_se or abs(gn) > abs(cu):
        return "Gauss–Newton" if math.copysign(1, gn) == math.copysign(1, pr) else "curvature"
    return "curvature"


def collect(out_dir: str, only: list[str] | None = None, seeds: dict | None = None) -> list[dict]:
    """Run every variant (cached per variant in ``out_dir/raw``), return the rows."""
    raw = os.path.join(out_dir, "raw")
    os.makedirs(raw, exist_ok=True)
    vs = variants(seeds) + [POWER]
    n_checks = sum(1 for _ in vs)  # crude count before taps are known; refined below
    rows = []
    for v in vs:
        path = os.path.join(raw, v.name.replace(" ", "_").replace(",", "").replace(":", "") + ".json")
        if only and v.name not in only and os.path.exists(path):
            rows += json.load(open(path))
            continue
        if only and v.name not in only:
            continue
        print(f"running {v.name} ...", file=sys.stderr, flush=True)
        res = [dict(r.as_dict(), variant=v.name, arch=v.spec.arch, data=v.spec.data,
                    note=v.note) for r in run_layers(v.spec, n_checks=max(n_checks, 2))]
        json.dump(res, open(path, "w"), indent=1)
        rows += res
    return rows


def finalize(rows: list[dict]) -> list[dict]:
    """Recompute z* over all agreement rows (power rows excluded) and add verdicts."""
    n = max(2, sum(1 for r in rows if not r["variant"].startswith("POWER")))
    z_star = agreement_threshold(n)
    for r in rows:
        r["z_star"] = z_star
        r["agree"] = abs(r["z"]) <= z_star
        r["deciding_term"] = deciding_term(r)
    return rows


def _sign(mean: float, se: float, z_one: float) -> str:
    return "+" if mean >= z_one * se else ("−" if -mean >= z_one * se else "0")


def readme_table(rows: list[dict]) -> str:
    """arch × layer → predicted sign, measured sign, deciding term (docs/per-layer.md table)."""
    from driftlab.montecarlo.stats import suite_threshold

    n = max(2, sum(1 for r in rows if not r["variant"].startswith("POWER")))
    z_one = suite_threshold(n, one_sided=True)
    lines = ["| variant | tap | seeds | predicted sign | measured sign | agree (z) | deciding term |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["variant"].startswith("POWER"):
            continue
        lines.append(f"| {r['variant']} | {r['tap']} | {r['seeds']} | "
                     f"{_sign(r['predicted'], r['predicted_se'], z_one)} | "
                     f"{_sign(r['measured'], r['measured_se'], z_one)} | "
                     f"{'yes' if r['agree'] else 'NO'} ({r['z']:.2f}) | {r['deciding_term']} |")
    return "\n".join(lines)


def write_markdown(rows: list[dict], path: str) -> None:
    lines = ["## Where the theorem holds at initialization", "",
             "Per tap: Stein prediction s_W²·E[σ'(p)·Σ_t' h T_tt' | p>0] against the autodiff "
             "E[g|p>0] over the same seeds and batches (B·E, training-metric units), mean ± "
             f"clustered SE over init seeds; agreement |z| ≤ z* = {rows[0]['z_star']:.2f} "
             "(Bonferroni over the section's rows).", "",
             "| variant | tap | seeds | predicted ± SE | measured ± SE | z | agree | Gauss–Newton "
             "| curvature | sign (measured) | deciding term |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['tap']} | {r['seeds']} | {r['predicted']:.3g} ± "
                     f"{r['predicted_se']:.2g} | {r['measured']:.3g} ± {r['measured_se']:.2g} | "
                     f"{r['z']:.2f} | {'yes' if r['agree'] else 'NO'} | {r['gauss_newton']:.3g} | "
                     f"{r['curvature']:.3g} | {r['sign_verdict']} | {r['deciding_term']} |")
    lines += ["", "Signs at one-sided z*₁ (+, −, 0 = indistinguishable):", "",
              readme_table(rows), "", "![predicted vs measured](per_layer.png)", ""]
    open(path, "w").write("\n".join(lines))


def plot(rows: list[dict], path: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 6))
    for i, r in enumerate(rows):
        scale = max(abs(r["measured"]), abs(r["predicted"]), r["measured_se"], 1e-30)
        ax.errorbar(r["predicted"] / scale, r["measured"] / scale, xerr=r["predicted_se"] / scale,
                    yerr=r["measured_se"] / scale, fmt="o", color=f"C{i % 10}",
                    label=f"{r['variant']}: {r['tap']}", ms=4, capsize=2)
    ax.plot([-1.2, 1.2], [-1.2, 1.2], "k-", lw=0.8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("predicted E[g|p>0] (÷ row scale)")
    ax.set_ylabel("measured E[g|p>0] (÷ row scale)")
    ax.set_title("Per-tap Stein prediction vs autodiff at init (±1 SE)")
    ax.legend(fontsize=5, loc="upper left")
    fig.tight_layout()
    import io

    from driftlab.atomic_io import write_bytes

    buf = io.BytesIO()  # one atomic write: no half-written PNG
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m driftlab.reports.per_layer")
    ap.add_argument("--out", default="reports/per_layer")
    ap.add_argument("--only", action="append", default=None, help="rerun only this variant")
    args = ap.parse_args(argv)
    rows = finalize(collect(args.out, args.only))
    json.dump(rows, open(os.path.join(args.out, "per_layer.json"), "w"), indent=1)
    write_markdown(rows, os.path.join(args.out, "per_layer.md"))
    plot(rows, os.path.join(args.out, "per_layer.png"))
    print(os.path.join(args.out, "per_layer.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
