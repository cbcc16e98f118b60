"""Claim 1 at the decisive scale: E[g | p > 0] at the initial parameters, per tap.

The ``init`` preset trains each cell at lr 1e-12 for B = 16 steps, logging every step, so
each logged step is the initial parameters θ₀ on a fresh batch (reports/presets.py). Per
seed s and tap the engine logs, on batch b, G_b = B·E_b[g | p > 0] and A_b = B·E_b[|g| | p
> 0] (models/instrument.py, g = ∂ℓ/∂p). The unit value is the scale-free ratio

    ρ_s = Σ_b G_b / Σ_b A_b ∈ [−1, 1],

the mean gradient on positive pre-activations in units of its mean magnitude, averaged
over the batches of one initialization (so batch noise shrinks it, and seeds are the
independent units). ρ ≥ 0 is the paper's claim; a margin of 0.01 means "the mean is at most
1% of the typical |g| below zero".
"""

from __future__ import annotations

import numpy as np

PRESET = "init"


def cell_of(run) -> tuple:
    """(arch, data, norm) of an init run; norm "" for the architecture's default."""
    t = run.tags
    return (t["arch"], t.get("data", ""), t.get("norm", ""))


def rho(run) -> dict[str, float]:
    """{tap: ρ} of one init run (NaN where a tap logged no |g| scale: a v1 record)."""
    g: dict[str, list] = {}
    a: dict[str, list] = {}
    for rec in run.metrics:
        for tap, v in (rec.get("taps") or {}).items():
            if "grad_pos_mean" in v and "grad_pos_abs_mean" in v:
                g.setdefault(tap, []).append(v["grad_pos_mean"])
                a.setdefault(tap, []).append(v["grad_pos_abs_mean"])
    return {t: float(np.sum(g[t]) / np.sum(a[t])) if np.sum(a[t]) > 0 else float("nan")
            for t in sorted(g)}


def collect(runs) -> dict[tuple, dict[str, list[float]]]:
    """{(arch, data, norm): {tap: [ρ per seed, in seed order]}} over finished init runs."""
    out: dict = {}
    for r in sorted(runs, key=lambda r: int(r.tags.get("seed", 0))):
        for tap, value in rho(r).items():
            out.setdefault(cell_of(r), {}).setdefault(tap, []).append(value)
    return dict(sorted(out.items()))


def predicted_signs(per_layer_rows: list[dict], z: float = 3.0) -> dict[tuple, str]:
    """{(arch, data, norm, tap): "+"/"−"/"0"} from the per-layer theorem's prediction at
    init (tiny models, reports/per_layer/): "0" when |predicted| < z·SE. Each
    architecture's default variant, and ResNet's norm=none control."""
    out = {}
    for r in per_layer_rows:
        v = r["variant"]
        if v.startswith("POWER") or any(w in v for w in ("untied", "fan-in", "norm=group")):
            continue
        m, se = r["predicted"], r["predicted_se"]
        sign = "+" if m > z * se else ("−" if m < -z * se else "0")
        out[(r["arch"], r["data"], "none" if "norm=none" in v else "", r["tap"])] = sign
    return out


def predicted(signs: dict, arch: str, data: str, norm: str, tap: str) -> str:
    """The predicted sign of one decisive-scale cell's tap: the tiny model's on the same
    data, else on another data source (named), else "" (no tap of that name)."""
    if (arch, data, norm, tap) in signs:
        return f"{signs[(arch, data, norm, tap)]} (tiny)"
    other = [(d, s) for (a, d, n, t), s in signs.items() if (a, n, t) == (arch, norm, tap)]
    return f"{other[0][1]} (tiny, {other[0][0]})" if other else ""
