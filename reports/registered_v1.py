"""The tests registered on 2026-11-24 (commit 1b27ad7, before the v1 cpu sweep's data),
applied to the same data as the exploratory claims table, so a reader sees what the
original plan would have said.

As registered: one-sided t tests over independent units, H1 in the claim's direction, no
margins and no equivalence test; Holm over all 2m one-sided p-values of the table (both
directions of each of the m rows), α = 0.05; words *holds* (the claimed direction is
significant), *reversed* / *fails* (the opposite is) or *inconclusive*. Rows, pooled as
registered (which pools cells whose signs later turned out to differ; the confirmatory plan
does not):

1a. per default per-layer variant (reports/per_layer, tiny models): every tap's measured
    E[g|p>0] > 0, intersection–union (the largest tap p; the opposite by Bonferroni);
1b. per architecture: step-0 E[g|p>0] (tap mean) of the drift preset's ReLU AdamW runs > 0;
2.  per architecture: Δmean(W_down)/std at the first logged step ≥ 10% of the run < 0, every
    ReLU run (data × optimizer × seed) one unit; 2′ the same at the end;
3.  GELU and SiLU runs on synthetic data with AdamW, pooled: the early drift < 0;
4.  GPT-nano ReLU runs of the drift preset: the largest per-layer validation sparsity > 0.85;
4′. per (arch, data, pin): paired Δsparsity unpinned − pinned > 0;
5.  per seed, the slope change c at the knee 0.70 < 0;
6.  relu² amplifies spikes, clipping lowers the val loss, gelu² is lowest (each H1 > 0).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from driftlab.reports.markdown import fmt as _f, table as _table
from driftlab.reports.verdicts import ALPHA, FAILS, REVERSED, holm, one_sided, verdict_word

REGISTERED = "2026-11-24 (commit 1b27ad7)"
THRESHOLD_4 = 0.85


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def _row(claim, quantity, values, direction, null=0.0, kind="sign", unit="run"):
    return {"claim": claim, "quantity": quantity, "values": _finite(values),
            "direction": direction, "null": null, "kind": kind, "unit": unit}


def _every_tap(rows: list[dict]) -> tuple[float, float, float]:
    """(p of "every tap > 0", p of "some tap < 0", weakest tap's mean) from per-tap
    (mean, SE, seeds): one-sample t per tap, intersection–union."""
    ps, opp = [], []
    for r in rows:
        df = max(int(r["seeds"]) - 1, 1)
        t = r["measured"] / r["measured_se"] if r["measured_se"] > 0 else math.copysign(math.inf, r["measured"])
        ps.append(float(stats.t.sf(t, df)))
        opp.append(float(stats.t.cdf(t, df)))
    i = int(np.argmax(ps))
    return ps[i], min(1.0, len(rows) * min(opp)), float(rows[i]["measured"])


def build(cells: dict, pin_rows: list, cliff: dict, spikes: dict,
          per_layer_rows: list | None = None) -> list[dict]:
    """The registered rows (module doc) from the report's collected data."""
    rows = []
    groups: dict = {}
    for r in per_layer_rows or []:
        if not r["variant"].startswith("POWER") and not any(
                w in r["variant"] for w in ("untied", "fan-in", "control")):
            groups.setdefault(r["variant"], []).append(r)
    for variant, rs in groups.items():
        p, p_opp, m = _every_tap(rs)
        rows.append({**_row(f"1a. every tap > 0 at init: {variant}", "measured E[g|p>0] (tiny)",
                            (), "greater", unit=f"init seed, n={rs[0]['seeds']}"),
                     "summary": (p, p_opp, m, int(rs[0]["seeds"]))})
    relu = {k: v for k, v in cells.items() if k[1] == "relu"}
    archs = sorted({k[0] for k in relu})
    for arch in archs:
        g0 = [d.g0 for (a, _, _, opt), ds in relu.items() if a == arch and opt == "adamw" for d in ds]
        rows.append(_row(f"1b. E[g|p>0] > 0 at init: {arch}", "step-0 E[g|p>0], tap mean", g0,
                         "greater", unit="(seed, data)"))
    for tag, attr in (("2. drift negative early", "w_rel_early"), ("2′. drift negative at the end", "w_rel")):
        for arch in archs:
            rows.append(_row(f"{tag}: {arch}", "Δmean(W_down)/std, tap mean",
                             [getattr(d, attr) for (a, _, _, _), ds in relu.items() if a == arch
                              for d in ds], "less", unit="run (data × optimizer × seed)"))
    rows.append(_row("3. drift negative early: gelu/silu", "Δmean(W_down)/std, tap mean",
                     [d.w_rel_early for (a, act, data, opt), ds in cells.items()
                      if act in ("gelu", "silu") and data == "synthetic" and opt == "adamw"
                      for d in ds], "less"))
    rows.append(_row("4. ReLU sparsity ~90% in GPT-nano", "max-layer val sparsity",
                     [d.sparsity_max for (a, _, _, _), ds in relu.items() if a == "gpt" for d in ds],
                     "greater", THRESHOLD_4, kind="threshold"))
    for r in pin_rows:
        if r["pin"] == "downstream-mean":
            rows.append(_row(f"4′. drift drives sparsity: {r['arch']} {r['data']}",
                             "Δsparsity unpinned − pinned",
                             [b - p for b, p in zip(r["sparsity_unpinned"], r["sparsity_pinned"])],
                             "greater", unit="seed pair"))
    if cliff:
        rows.append(_row("5. accuracy cliff above ~70% sparsity", "slope change c at knee 0.70",
                         cliff.get("slope_change_at_knee", []), "less", unit="seed"))
    for key, claim, quantity in (("relu2_amplifies", "6a. relu² amplifies spikes", "log p-ratio relu² − relu"),
                                 ("clip_helps", "6b. clipped relu² beats relu²", "val loss relu² − clipped")):
        if key in spikes:
            rows.append(_row(claim, quantity, spikes[key], "greater", unit="seed"))
    return [r for r in rows if "summary" in r or len(r["values"]) >= 2]


def judge(rows: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Each row's test, Holm over the 2m one-sided p-values, and its word."""
    tests = []
    for r in rows:
        if "summary" in r:
            p, p_opp, mean, n = r["summary"]
            tests.append((p, p_opp, mean, n))
        else:
            t = one_sided(r["values"], r["direction"], r["null"])
            tests.append((t.p, t.p_opposite, t.mean, t.n))
    adj = holm([t[0] for t in tests] + [t[1] for t in tests])
    m = len(rows)
    return [{**r, "n": t[3], "mean": t[2], "p_adj": adj[i], "p_opposite_adj": adj[m + i],
             "word": verdict_word(adj[i], adj[m + i], alpha,
                                  REVERSED if r["kind"] == "sign" else FAILS)}
            for i, (r, t) in enumerate(zip(rows, tests))]


def section(rows: list[dict], title: str) -> tuple[str, list[dict]]:
    """The registered tests' table (module doc) and its judged rows."""
    s = f"### {title}\n\n"
    if not rows:
        return s + "No registered test has data here.\n", []
    judged = judge(rows)
    s += (f"The tests registered on {REGISTERED}, before these data, applied to them as "
          f"registered: one-sided t tests, rows pooled as registered, Holm over all "
          f"{2 * len(judged)} one-sided p-values of this table, α = {ALPHA:g}; no margins, "
          f"so no *absent*. Shown so a reader sees what the original plan says; the "
          f"confirmatory verdicts are the frozen plan's, on fresh seeds.\n\n")
    s += _table(["registered claim", "quantity (unit)", "H1", "n", "mean", "p (Holm)", "word"],
                [[r["claim"], f"{r['quantity']} ({r['unit']})",
                  f"{'>' if r['direction'] == 'greater' else '<'} {r['null']:g}", str(r["n"]),
                  _f(r["mean"]), _f(min(r["p_adj"], r["p_opposite_adj"])), r["word"]]
                 for r in judged])
    return s, judged


def words(judged: list[dict]) -> list[dict]:
    """The judged rows as data (``registered_v1.json``)."""
    return [{"claim": r["claim"], "n": r["n"], "word": r["word"]} for r in judged]
