"""The paper's claims as pre-registered tests (reports/verdicts.py), Holm over the table.

Each row: the claim, the quantity (one value per independent unit, usually a training
run = a seed of one configuration), the one-sided alternative H1, and the verdict word
from the Holm-adjusted test. The tests, fixed before the runs:

1. E[g|p>0] ≥ 0 at init, per architecture, twice: (a) from the per-layer theorem's
   measurement at init (reports/per_layer/, tiny models, 8–64 init seeds): every tap's
   measured E[g|p>0] > 0, a t-test per tap from its mean and clustered SE, combined by the
   intersection–union rule (holds only if every tap holds; reversed if any tap is
   significantly negative, Bonferroni over taps), for each architecture's default variant
   and data source, with the predicted signs quoted; (b) at the decisive scale:
   step-0 ``grad_pos_mean`` averaged over taps, one value per (seed, data source) of the
   drift preset's ReLU runs (one optimizer: the step-0 gradient does not depend on it);
   H1 > 0.
2. Downstream weights drift negative early in training, per architecture: Δmean/std of
   the downstream matrices at the first logged step ≥ 10% of the run, averaged over taps
   (heads excluded), one value per ReLU run (every data × optimizer cell × seed); H1 < 0.
   2′ the same at the end of the run (does the drift persist?).
3. Generality: the intersection–union test of the per-architecture rows of claim 2 (it
   holds only if every architecture's row holds; reversed if any row is reversed), plus a
   row for GELU and SiLU pooled over MLP/ResNet/ViT (synthetic data, AdamW).
4. ReLU sparsity up to ~90% in GPT-nano: per ReLU run the largest per-layer validation
   sparsity; H1 > 0.85 (threshold claim: "fails" when significantly below).
   4′ drift drives it: paired Δsparsity (unpinned − ``downstream-mean`` pinned), per
   (arch, data) of the pins preset; H1 > 0. The reader pin is driftlab's competing
   hypothesis and gets its own row.
5. The cliff above ~70%: per seed, the slope change c at a fixed knee 0.70 (reports/cliff.py);
   H1 < 0.
6. Spikes (reports/spikes.py): relu² amplifies pre-activation spikes (H1 > 0 on the log
   ratio); clipped relu² has lower validation loss than relu² (H1 > 0); gelu² has the
   lowest validation loss (H1 > 0 on min(others) − gelu²).
"""

from __future__ import annotations

import numpy as np

from driftlab.reports.verdicts import (FAILS, HOLDS, INCONCLUSIVE, REVERSED, ClaimTest,
                                       claims_markdown, every_unit, from_summary, judge)

GPT_SPARSITY_THRESHOLD = 0.85


def _finite(values) -> tuple:
    return tuple(float(v) for v in values if v is not None and np.isfinite(v))


def _sign(mean: float, se: float, z: float = 3.0) -> str:
    """+, − or 0 (indistinguishable from 0 at |mean/SE| < z)."""
    return "+" if mean > z * se else ("−" if mean < -z * se else "0")


def _is_default_variant(name: str) -> bool:
    """The per-layer variants that are an architecture's default (not the diagnostics)."""
    return not name.startswith("POWER") and not any(w in name for w in ("untied", "fan-in", "control"))


def per_layer_claims(rows: list[dict]) -> list[ClaimTest]:
    """Claim 1 (a): one intersection–union test over taps per default variant."""
    groups: dict = {}
    for r in rows:
        if _is_default_variant(r["variant"]):
            groups.setdefault(r["variant"], []).append(r)
    tests = []
    for variant, rs in groups.items():
        res = every_unit([from_summary(r["measured"], r["measured_se"], int(r["seeds"]))
                          for r in rs])
        signs = ", ".join(f"{r['tap']} {_sign(r['predicted'], r['predicted_se'])}"
                          f"{'' if r.get('agree', True) else ' (disagrees)'}" for r in rs)
        tests.append(ClaimTest(f"1a. E[g|p>0] ≥ 0 at init, every tap: {variant}",
                               "measured E[g|p>0] at init (tiny model)", (), "greater",
                               unit=f"init seed, n={rs[0]['seeds']}",
                               note=f"predicted sign (|z| ≥ 3) {signs}", result=res))
    return tests


def build(cells: dict, pin_rows: list, cliff: dict, spikes: dict,
          per_layer_rows: list | None = None, step0_optimizer: str = "adamw") -> list:
    """ClaimTests (unjudged) from the sections' collected data (see the module doc).

    ``cells``: reports.drift.collect_cells output; ``pin_rows``: reports.causal.pin_effects;
    ``cliff``: reports.cliff.analyse; ``spikes``: reports.spikes.comparisons;
    ``per_layer_rows``: reports/per_layer/per_layer.json rows.
    """
    tests = per_layer_claims(per_layer_rows or [])
    relu = {k: v for k, v in cells.items() if k[1] == "relu"}
    archs = sorted({k[0] for k in relu})
    for arch in archs:
        g0 = [d.g0 for (a, _, _, opt), ds in relu.items() if a == arch
              and opt == step0_optimizer for d in ds]
        if len(_finite(g0)) >= 2:
            tests.append(ClaimTest(f"1b. E[g|p>0] ≥ 0 at init: {arch} (decisive scale)",
                                   "step-0 E[g|p>0], tap mean", _finite(g0), "greater",
                                   unit="(seed, data)"))
    for tag, attr in (("2. drift negative early", "w_rel_early"),
                      ("2′. drift negative at the end", "w_rel")):
        for arch in archs:
            w = [getattr(d, attr) for (a, _, _, opt), ds in relu.items() if a == arch
                 and " " not in opt for d in ds]  # base cells only: variants are not pooled
            if len(_finite(w)) >= 2:
                tests.append(ClaimTest(f"{tag}: {arch}", "Δmean(W_down)/std, tap mean",
                                       _finite(w), "less", unit="run (data × optimizer × seed)"))
    smooth_archs = sorted({a for (a, act, _, opt) in cells if act in ("gelu", "silu")
                           and opt == "adamw"})
    for arch in smooth_archs:  # one row per arch: their predicted signs differ (per-layer)
        smooth = [d.w_rel_early for (a, act, _, opt), ds in cells.items() if a == arch
                  and act in ("gelu", "silu") and opt == "adamw" for d in ds]
        if len(_finite(smooth)) >= 2:
            tests.append(ClaimTest(f"3. drift negative early: gelu/silu, {arch}",
                                   "Δmean(W_down)/std, tap mean", _finite(smooth), "less",
                                   unit="run (act × seed)"))
    gpt_sp = [d.sparsity_max for (a, _, _, _), ds in relu.items() if a == "gpt" for d in ds]
    if len(_finite(gpt_sp)) >= 2:
        tests.append(ClaimTest("4. ReLU sparsity ~90% in GPT-nano", "max-layer val sparsity",
                               _finite(gpt_sp), "greater", GPT_SPARSITY_THRESHOLD,
                               kind="threshold", unit="run"))
    for r in pin_rows:
        d = [b - p for b, p in zip(r["sparsity_unpinned"], r["sparsity_pinned"])]
        if len(_finite(d)) < 2:
            continue
        who = {"downstream-mean": "drift drives sparsity",
               "sham": "(control) sham pin changes nothing"}.get(
                   r["pin"], "(driftlab) reader alignment drives sparsity")
        tests.append(ClaimTest(f"4′. {who}: {r['arch']} {r['data']}",
                               f"Δsparsity unpinned − `{r['pin']}`", _finite(d), "greater",
                               unit="seed pair"))
    if cliff and len(_finite(cliff.get("slope_change_at_knee", []))) >= 2:
        tests.append(ClaimTest("5. accuracy cliff above ~70% sparsity",
                               "slope change c at knee 0.70", _finite(
                                   cliff["slope_change_at_knee"]), "less", unit="seed"))
    labels = {"relu2_amplifies": ("6a. relu² amplifies spikes", "log p-ratio relu² − relu"),
              "clip_helps": ("6b. clipped relu² beats relu²", "val loss relu² − clipped"),
              "gelu2_lowest": ("6c. gelu² lowest val loss", "min(others) − gelu² val loss")}
    for key, (claim, quantity) in labels.items():
        if len(_finite(spikes.get(key, []))) >= 2:
            tests.append(ClaimTest(claim, quantity, _finite(spikes[key]), "greater",
                                   unit="seed"))
    return tests


def generality(judged: list) -> str:
    """Claim 3's intersection–union verdict over the per-architecture rows of claim 2."""
    rows = [c for c in judged if c.claim.startswith("2. drift negative early")]
    rows += [c for c in judged if c.claim.startswith("3. ")]
    if not rows:
        return ""
    if all(c.verdict == HOLDS for c in rows):
        word = HOLDS
    elif any(c.verdict == REVERSED for c in rows):
        word = REVERSED
    else:
        word = INCONCLUSIVE
    per = ", ".join(f"{c.claim.split(': ')[-1]} {c.verdict}" for c in rows)
    return (f"**3. Generality (intersection–union over the rows above: holds only if every "
            f"row holds, reversed if any is reversed): {word}** ({per}).\n")


def section(tests: list, title: str) -> tuple[str, list]:
    """Judge the tests (Holm over the whole table) and render the table."""
    s = f"## {title}\n\n"
    if not tests:
        return s + "No claim could be tested from these runs.\n", []
    judged = judge(tests)
    s += ("Pre-registered one-sided tests (t over independent units; reports/claims.py "
          "states each test), Holm-adjusted over all "
          f"{2 * len(judged)} one-sided p-values of this table (both directions of each of "
          f"the {len(judged)} rows), α = 0.05. *holds*: the claimed direction is "
          f"significant; *{REVERSED}* / *{FAILS}*: the opposite direction is; "
          f"*{INCONCLUSIVE}*: neither.\n\n")
    s += claims_markdown(judged) + "\n" + generality(judged)
    return s, judged
