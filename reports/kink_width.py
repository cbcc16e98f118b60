"""How the ReLU-kink part of the ResNet per-layer prediction depends on its kernel width τ.

The kink term replaces ReLU'' = δ(p) by the N(0, τ²) density (montecarlo/relu_kink.py); its
bias vanishes as τ → 0 (O(τ²) when the density of p_u and the conditional mean are smooth at
0) while its variance grows like 1/τ. Here, at one fixed p (params and batch held, the tap's
reader weights redrawn: ``conv_readers.fixed_p_draws``, where the kink term is large), every
width in ``WIDTHS`` is run on the same draws, so the differences between widths are paired:

* per width: the kink part, the prediction and the measured value (mean ± SE over draws), and
  the agreement z of predicted against measured (paired over draws);
* per step from one width to the next: the change of the kink part, its SE, z, and the
  smallest change the test would detect (99% power); ``no change detected`` when |z| ≤ z*
  (two-sided, Bonferroni over every agreement and step test of every case).

    python -m driftlab.reports.kink_width [--draws 1000] [--out reports/kink_width]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.models.arch.base import get_arch
from driftlab.models.measure.conv_readers import fixed_p_draws
from driftlab.models.measure.per_layer import agreement_threshold
from driftlab.montecarlo.stats import detectable_shift

CASES = (("none", "stage1.block0.act1"), ("batch", "stage2.block0.act1"))  # (norm, tap)
WIDTHS = (0.2, 0.1, 0.05)  # τ, in units of p (O(1) at init); the rows use 0.1


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))


def case_rows(norm: str, tap: str, draws: int, widths=None, z_star: float | None = None):
    """(width rows, step rows) for one ResNet tiny tap at one fixed p (init seed 0, batch 8)."""
    widths = WIDTHS if widths is None else widths
    arch = get_arch("resnet")
    cfg, ds = arch.data("synthetic", arch.config("tiny", "relu", norm=norm), 0)
    params = arch.init(jax.random.PRNGKey(0), cfg)
    batch = {k: jnp.asarray(v) for k, v in ds.sample("train", 0, 8, 0).items()}
    n_tests = 2 * len(widths) - 1  # an agreement per width, a change per step
    z_star = agreement_threshold(n_tests) if z_star is None else z_star
    runs = {w: fixed_p_draws(arch, cfg, params, batch, tap, draws, kink_width=w) for w in widths}
    width_rows, step_rows = [], []
    for w, v in runs.items():
        d_mean, d_se = _mean_se(v["predicted"] - v["measured"])
        width_rows.append({"norm": norm, "tap": tap, "tau": w, "draws": draws,
                           "kink": _mean_se(v["kink"]), "predicted": _mean_se(v["predicted"]),
                           "measured": _mean_se(v["measured"]), "agreement_z": d_mean / d_se,
                           "agrees": abs(d_mean / d_se) <= z_star})
    for a, b in zip(widths, widths[1:]):
        change, se = _mean_se(runs[b]["kink"] - runs[a]["kink"])
        step_rows.append({"norm": norm, "tap": tap, "from_tau": a, "to_tau": b, "draws": draws,
                          "change": change, "se": se, "z": change / se, "z_star": z_star,
                          "detectable": detectable_shift(se, z_star),
                          "verdict": "no change detected" if abs(change / se) <= z_star
                          else "changes"})
    return width_rows, step_rows


def _fmt(ms) -> str:
    return f"{ms[0]:+.3e} ± {ms[1]:.1e}"


def markdown(width_rows: list[dict], step_rows: list[dict]) -> str:
    lines = ["# ReLU-kink term against its kernel width τ (ResNet tiny, one fixed p)", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "", __doc__.split("\n\n")[2], "",
             f"Made by `python -m driftlab.reports.kink_width --draws {width_rows[0]['draws']}`.",
             "",
             "| norm | tap | τ | draws | kink part | predicted | measured | agreement z |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['norm']} | {r['tap']} | {r['tau']} | {r['draws']} | {_fmt(r['kink'])} | "
              f"{_fmt(r['predicted'])} | {_fmt(r['measured'])} | {r['agreement_z']:+.2f} |"
              for r in width_rows]
    lines += ["", "| norm | tap | τ step | change of the kink part (paired) | z | z* | detectable "
              "(99% power) | verdict |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['norm']} | {r['tap']} | {r['from_tau']} → {r['to_tau']} | "
              f"{r['change']:+.2e} ± {r['se']:.1e} | {r['z']:+.2f} | {r['z_star']:.2f} | "
              f"{r['detectable']:.1e} | {r['verdict']} |" for r in step_rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftlab.reports.kink_width",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=1000, help="reader-weight draws per case")
    parser.add_argument("--out", default=os.path.join("reports", "kink_width"))
    args = parser.parse_args(argv)
    if args.draws < 2:
        parser.error(f"--draws={args.draws} invalid; allowed: an integer >= 2")
    z_star = agreement_threshold(len(CASES) * (2 * len(WIDTHS) - 1))
    width_rows, step_rows = [], []
    for norm, tap in CASES:
        w, s = case_rows(norm, tap, args.draws, z_star=z_star)
        width_rows += w
        step_rows += s
        print(markdown(w, s), file=sys.stderr, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "kink_width.json"), "w") as fh:
        json.dump({"widths": width_rows, "steps": step_rows}, fh, indent=1)
    with open(os.path.join(args.out, "kink_width.md"), "w") as fh:
        fh.write(markdown(width_rows, step_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
