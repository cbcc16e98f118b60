"""The paper's claims as pre-registered claim families (reports/families.py).

Each claim is tested on its own family of cells, never pooled, with Holm within the claim
and the four words holds / reversed (fails) / absent / inconclusive. Seeds are the units.
These margins δ, the TOST and the union rule were set after the v1 data they judge (issue
29), so the table is exploratory (the report says so); the confirmatory tests are the frozen
plan's (reports/plans/, reports/confirm.py):

1. E[g | p > 0] ≥ 0 at init (paper). Cell: (arch, data, tap) of the ``init`` preset; unit
   value ρ_s = ΣG/ΣA over 16 batches at θ₀ (reports/init_grad.py). Non-inferiority, δ =
   0.01 (the mean at most 1% of the typical |g| below zero). Predicted sign: the per-layer
   theorem's at the tiny scale, where the tap exists there.
2. Downstream weights drift negative early (paper). Cell: each ReLU (arch, data,
   optimizer[, lr, norm]) of the ``drift`` preset; Δmean(W_down)/std at the first logged
   step ≥ 10% of the run, tap mean (reports/drift.py). H1 < 0, δ = 0.01 init-std (the
   drift→sparsity law turns it into about 3 points of sparsity at these widths).
2′. … and still at the end (driftlab: does the drift persist?), the same cells at the
   final step.
3. Generality to GELU/SiLU (paper): claim 2 on the GELU and SiLU cells, per (arch, act).
4. ReLU sparsity reaches ~90% in GPT-nano (paper): per optimizer (``drift`` and
   ``optimizers`` presets), the largest per-layer validation sparsity; H1 > 0.85 (fails
   when significantly below), δ = 0.02. "Up to" is an existence claim: it holds if some
   optimizer's cell holds (union), and each optimizer's word is printed.
4′. The drift drives the sparsity (paper): paired Δsparsity unpinned − ``downstream-mean``
   pinned per (arch, data) of the ``pins`` preset, δ = 0.02. The direction follows the
   cell's own measured drift: negative drift predicts that pinning lowers sparsity (H1 Δ >
   0), positive drift that it raises it (H1 Δ < 0).
   driftlab's reader-alignment pin (exploratory) and the sham pin (control, expected
   *absent*) are their own families.
5. An accuracy cliff above ~70% sparsity (paper): the slope change c at the knee 0.70
   (reports/cliff.py), bootstrapped over configurations, with and without the near-dead
   ones; H1 c < 0, δ = 0.5 accuracy per unit sparsity.
6a. relu² amplifies spikes (paper): paired log p-ratio(relu²) − log p-ratio(relu), H1 > 0,
   δ = ln 1.1. 6b clipping relu² lowers the validation loss (paper), δ = 0.01 nats.
   6c gelu² has the lowest validation loss (paper): pairwise against every other
   activation, δ = 0.01 nats.

Within a claim the chance of any false word is ≤ α = 0.05 (Holm, valid under any
dependence between cells); over the table's K claims it is ≤ K·α (union bound), stated
in the section.
"""

from __future__ import annotations

import math

import numpy as np

from driftlab.reports import init_grad
from driftlab.reports.cliff import BOOTSTRAP_DRAWS, PAPER_KNEE
from driftlab.reports.families import (Cell, Claim, bootstrap_result, decide, markdown,
                                       plan_markdown)
from driftlab.reports.plan import COSTLY_SEEDS, CPU_SEEDS, PLANNED
from driftlab.reports.verdicts import ALPHA

GPT_SPARSITY_THRESHOLD = 0.85
RHO_MARGIN = 0.01
DRIFT_MARGIN = 0.01
SPARSITY_MARGIN = 0.02
CLIFF_MARGIN = 0.5
SPIKE_MARGIN = math.log(1.1)
LOSS_MARGIN = 0.01


def _finite(values) -> tuple:
    return tuple(float(v) for v in values if v is not None and np.isfinite(v))


def _label(key: tuple) -> str:
    return " ".join(str(k) for k in key if k)


def claim_init(init_cells: dict, per_layer_rows: list) -> Claim:
    signs = init_grad.predicted_signs(per_layer_rows)
    cells = tuple(Cell(f"{_label((arch, data, norm and f'norm={norm}'))} {tap}", _finite(v),
                       init_grad.predicted(signs, arch, data, norm, tap))
                  for (arch, data, norm), taps in init_cells.items() for tap, v in taps.items())
    return Claim("1", "E[g|p>0] ≥ 0 at init", "ρ = ΣE[g|p>0] / ΣE[|g| | p>0] over 16 "
                 "batches at θ₀", "non-inferiority", RHO_MARGIN, RHO_MARGIN, cells)


def _drift_cells(cells: dict, attr: str, acts) -> tuple:
    return tuple(Cell(_label((arch, act if act != "relu" else "", data, opt)),
                      _finite(getattr(d, attr) for d in ds))
                 for (arch, act, data, opt), ds in cells.items() if act in acts)


def claims_drift(cells: dict) -> list[Claim]:
    q = "Δmean(W_down)/std, tap mean"
    return [Claim("2", "downstream weights drift negative early", q + " (first step ≥ 10%)",
                  "less", DRIFT_MARGIN, DRIFT_MARGIN, _drift_cells(cells, "w_rel_early", ("relu",))),
            Claim("2′", "the drift is still negative at the end", q + " (final)", "less",
                  DRIFT_MARGIN, DRIFT_MARGIN, _drift_cells(cells, "w_rel", ("relu",)),
                  family="driftlab"),
            Claim("3", "GELU/SiLU drift negative early too", q + " (first step ≥ 10%)",
                  "less", DRIFT_MARGIN, DRIFT_MARGIN,
                  _drift_cells(cells, "w_rel_early", ("gelu", "silu")))]


def claim_gpt_sparsity(by_optimizer: dict) -> Claim:
    """``by_optimizer``: {label: [RunDrift]} of GPT-nano ReLU runs."""
    cells = tuple(Cell(label, _finite(d.sparsity_max for d in ds))
                  for label, ds in by_optimizer.items())
    return Claim("4", "ReLU sparsity reaches ~90% in GPT-nano", "largest per-layer val "
                 "sparsity", "greater", SPARSITY_MARGIN, SPARSITY_MARGIN, cells,
                 null=GPT_SPARSITY_THRESHOLD, kind="threshold", combine="any")


def claims_pins(pin_rows: list) -> list[Claim]:
    by_pin: dict = {}
    for r in pin_rows:
        d = _finite(b - p for b, p in zip(r["sparsity_unpinned"], r["sparsity_pinned"]))
        drift = np.nanmean(r["w_rel_unpinned"]) if r["w_rel_unpinned"] else float("nan")
        test = "less" if drift > 0 else "greater"
        by_pin.setdefault(r["pin"], []).append(
            Cell(f"{r['arch']} {r['data']} (H1 Δ {'<' if test == 'less' else '>'} 0)", d,
                 f"drift {'+' if drift > 0 else '−'} (unpinned, measured)", "seed pair", test))
    q = "Δsparsity unpinned − pinned"
    out = []
    for pin, key, statement, family in (
            ("downstream-mean", "4′", "the drift drives the sparsity", "paper"),
            ("reader-stream-mean", "4″", "reader alignment drives the sparsity", "driftlab"),
            ("sham", "4c", "the sham pin changes nothing", "control")):
        if pin in by_pin:
            cells = by_pin[pin] if pin != "sham" else tuple(
                Cell(c.label.split(" (H1")[0], c.values, "0 (nothing removed)", c.unit)
                for c in by_pin[pin])
            out.append(Claim(key, statement, f"{q} (`{pin}`)", "greater", SPARSITY_MARGIN,
                             SPARSITY_MARGIN, tuple(cells), family=family))
    return out


def claim_cliff(cliff: dict) -> Claim | None:
    by_config = (cliff or {}).get("by_configuration")
    if not by_config:
        return None
    n = {"all configurations": len(cliff["configurations"]),
         "without near-dead": len(cliff["alive"])}
    cells = tuple(Cell(name, unit="configuration", result=bootstrap_result(
        reps, point, "less", 0.0, CLIFF_MARGIN, n[name])) for name, (point, reps) in by_config.items())
    return Claim("5", f"accuracy cliff above ~{PAPER_KNEE:.0%} sparsity",
                 f"slope change c at the knee {PAPER_KNEE:.2f}", "less", CLIFF_MARGIN,
                 CLIFF_MARGIN, cells, note=f"{BOOTSTRAP_DRAWS} resamples of the configurations")


def claims_spikes(comp: dict) -> list[Claim]:
    def cells(keys):
        return tuple(Cell(label, _finite(comp[k])) for k, label in keys if k in comp)

    gelu = [(k, f"vs {k.split(':', 1)[1]}") for k in comp if k.startswith("gelu2_below:")]
    return [Claim("6a", "relu² amplifies activation spikes", "log p-ratio relu² − relu (mid)",
                  "greater", SPIKE_MARGIN, SPIKE_MARGIN,
                  cells([("relu2_amplifies", "gpt embedded")])),
            Claim("6b", "clipping relu² lowers the val loss", "val loss relu² − clipped",
                  "greater", LOSS_MARGIN, LOSS_MARGIN, cells([("clip_helps", "gpt embedded")])),
            Claim("6c", "gelu² has the lowest val loss", "val loss other − gelu²", "greater",
                  LOSS_MARGIN, LOSS_MARGIN, cells(gelu))]


def build(cells: dict, pin_rows: list, cliff: dict, spikes: dict,
          per_layer_rows: list | None = None, init_cells: dict | None = None,
          gpt_by_optimizer: dict | None = None) -> list[Claim]:
    """Every claim family (some with no cells at this scale), in the table's order."""
    claims = [claim_init(init_cells or {}, per_layer_rows or [])]
    claims += claims_drift(cells)
    claims.append(claim_gpt_sparsity(gpt_by_optimizer or {}))
    claims += claims_pins(pin_rows)
    cliff_claim = claim_cliff(cliff)
    if cliff_claim is not None:
        claims.append(cliff_claim)
    return claims + claims_spikes(spikes)


def words(verdicts: list) -> list[dict]:
    """The verdicts as data (the report's ``claims.json``): per claim its key, statement,
    family and word, and per cell its label, n and word, for readers such as the README's
    table (tests/test_readme_verdicts.py keeps the two equal)."""
    return [{"key": v.claim.key, "statement": v.claim.statement, "family": v.claim.family,
             "word": v.word, "cells": [{"label": c.cell.label, "n": c.result.n, "word": c.word}
                                       for c in v.cells]} for v in verdicts]


def section(claims: list[Claim], title: str, lead: str = "") -> tuple[str, list]:
    """Decide every claim and render the table, after the paragraph ``lead`` (if any);
    claims without cells are named."""
    s = f"## {title}\n\n" + (f"{lead}\n\n" if lead else "")
    tested = [c for c in claims if c.cells]
    if not tested:
        return s + "No claim could be tested from these runs.\n", []
    verdicts = [decide(c) for c in tested]
    paper = sum(c.family == "paper" for c in tested)
    s += (f"Each claim is tested on its own cells, never pooled (reports/claims.py states "
          f"each test, its margin δ and the effect the design must detect). Seeds are the "
          f"units. Per cell: the claim's one-sided test, the opposite one and an equivalence "
          f"test (TOST ±δ), Holm-adjusted over the claim's cells, α = {ALPHA:g}; the cell's "
          f"word is *holds*, *reversed*/*fails*, *absent* (within ±δ) or *inconclusive* "
          f"(with the effect its n could detect at 80% power and the n the stated effect "
          f"needs). The claim's word is intersection–union over its cells (the union for "
          f"claim 4, an existence claim). p(>) and p(<) "
          f"are the raw one-sided p-values of both directions. Within a claim any false "
          f"word has probability ≤ {ALPHA:g}; over the table's {len(tested)} claims ≤ "
          f"{len(tested) * ALPHA:.2g} (union bound; {paper} are the paper's). Family "
          f"*driftlab* rows are driftlab's own (exploratory) questions; *control* rows are "
          f"expected *absent*.\n\n")
    s += ("**Analysis plan.** Seeds per cell come from reports/plan.py (cheap architectures "
          f"{CPU_SEEDS}; GPT-nano and MP-SENet {COSTLY_SEEDS}, or the n a pilot (3 or 8 seeds; "
          "for claim 1 a second stage, sized from the first) said 80% power needs: " + ", ".join(f"{' '.join(key)} {n}" for key, n in PLANNED.items())
          + "). The last column is the n per cell that 80% power at the stated effect "
          "needs, given each cell's measured SD.\n\n")
    s += plan_markdown(verdicts) + "\n"
    s += markdown(verdicts)
    untested = [f"{c.key}. {c.statement}" for c in claims if not c.cells]
    if untested:
        s += ("\nNot tested at this scale (no runs of their cells; reports/plan.py gives the "
              "n that would decide them and why it does not fit; the `gpu` scale of their "
              "presets has the cells): " + "; ".join(untested) + ".\n")
    notes = [f"{c.key}: {c.note}" for c in tested if c.note]
    if notes:
        s += "\nNotes: " + "; ".join(notes) + ".\n"
    return s, verdicts
