"""driftlab's Python API: the functions ``import driftlab`` exposes (docs/api.md).

Every heavy import (JAX, matplotlib, the models) happens inside the function that needs
it, so ``import driftlab`` starts nothing. Notation is that of docs/theory.md: the
canonical block x ~ N(0, I_d) → W1 → p → σ → h → W2 → f ∈ R^k → ℓ with weights
N(0, G²/fan_in), g = ∂ℓ/∂p for one example.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from driftlab.theory.setting import BlockSetting as Block

__all__ = ["Block", "expected_grad", "estimate", "check_theorems", "predict_layers", "train",
           "resume", "load_run", "sweep", "report", "plot_setting"]

PILOT_DRAWS = 256  # weight draws of the pilot that sizes estimate(se=…)
INPUTS = 16  # inputs per weight draw (as `driftlab theory predict`)


def expected_grad(block: Block, budget=None):
    """The analytic E[g_i | p_i > 0] of ``block`` as an ``Analytic(value, tier, stderr)``.

    MSE (½‖f − y‖² summed over outputs; ``reduction="mean"`` divides by k):
    k·s2²·E[σσ'(p) | p > 0], closed form or quadrature; with ``w2_mean`` ≠ 0 (ReLU) the
    derived shifted form; with ``target_coupling`` β the (1 − β)-scaled value.
    Cross-entropy: s2²·E[σσ'(p)·S(s2‖h‖) | p > 0], a semi-analytic Stein-reduced Monte Carlo
    value whose ``stderr`` is set by ``budget`` (montecarlo.estimators.Budget; default
    4096 draws × 32 inputs). A setting with no derived value (e.g. CE with ``w2_mean``)
    raises ValueError naming the field (montecarlo/dispatch.py).
    """
    from driftlab.montecarlo.dispatch import expected_grad_positive

    return expected_grad_positive(block, budget)


def estimate(block: Block, se: float | None = None, samples: int = 1 << 18, seed: int = 0,
             max_samples: int = 1 << 24):
    """Monte Carlo E[g_i | p_i > 0] of ``block`` at random init, as an ``MCResult``
    (mean, stderr, samples, draws): the raw estimator (autodiff-free closed gradient of the
    sampled network, targets integrated out), independent weight draws of 16 inputs each,
    the SE clustered over draws.

    ``se``: a target standard error; a pilot of 256 draws measures the spread and the run
    is sized to reach ``se`` (SE ∝ 1/√draws). Otherwise ``samples`` examples. Refuses
    (ValueError naming ``se``/``samples``) more than ``max_samples`` examples or a chunk
    whose estimated memory exceeds what is available.
    """
    from driftlab.montecarlo import memory
    from driftlab.montecarlo.estimators import Budget, chunk_for, estimate_grad_positive

    chunk = chunk_for(block, INPUTS)
    memory.check_fits(memory.grad_positive_bytes(block.d_in, block.width, block.d_out, INPUTS,
                                                 min(chunk, PILOT_DRAWS)),
                      memory.available_bytes(), f"estimate({block.describe()})")
    if se is not None:
        if not (se > 0 and math.isfinite(se)):
            raise ValueError(f"se={se!r} invalid; allowed: a positive number")
        pilot = estimate_grad_positive(block, Budget(draws=PILOT_DRAWS, inputs_per_draw=INPUTS,
                                                     chunk=min(chunk, PILOT_DRAWS),
                                                     seed=seed + 1_000_003))
        draws = max(PILOT_DRAWS, math.ceil(PILOT_DRAWS * (pilot.stderr / se) ** 2))
        if draws * INPUTS > max_samples:
            raise ValueError(f"se={se!r} needs about {draws * INPUTS} samples (pilot SE "
                             f"{pilot.stderr:.3g} at {PILOT_DRAWS * INPUTS}); allowed: at most "
                             f"max_samples={max_samples}")
    else:
        if not (isinstance(samples, int) and 32 <= samples <= max_samples):
            raise ValueError(f"samples={samples!r} invalid; allowed: an int in 32…{max_samples}")
        draws = max(2, -(-samples // INPUTS))
    return estimate_grad_positive(block, Budget(draws=draws, inputs_per_draw=INPUTS,
                                                chunk=min(chunk, draws), seed=seed))


def check_theorems(seed: int = 0, progress: bool = False, rerun: bool = False) -> list[dict]:
    """Every theorem check of ``driftlab theory check`` (montecarlo/checks.py): one dict per
    check (claim, setting, kind, analytic, mc_mean, mc_stderr, z, threshold, verdict, …),
    Bonferroni over the suite at α = 1e-3. Results are shared with ``driftlab theory
    check`` and ``driftlab report`` through one cache keyed by code version and seed
    (reports/theory_cache.py); ``rerun`` runs them anyway (about 2 min on 2 CPU cores)."""
    from driftlab.reports.theory_cache import checked

    return checked(seed=seed, progress=progress, rerun=rerun)[0]


def predict_layers(arch: str, size: str = "tiny", data: str = "synthetic", act: str | None = None,
                   seeds: int = 8, batch_size: int = 32, probes: int = 0,
                   row_exact: bool = False, overrides: dict | None = None) -> list[dict]:
    """The per-layer theorem at init for every tap of ``arch`` (``driftlab theory layers``):
    per tap the Stein prediction B·E[s_W²σ'(p)(Σ_t' h T)_t | p > 0], the autodiff
    measurement over the same ``seeds`` inits, their paired z, the Gauss–Newton and
    curvature parts and the sign verdict (docs/per-layer.md). ``probes`` 0 is the exact
    basis sum; ``overrides`` are model config fields (e.g. {"init": "fan_in_normal"})."""
    from driftlab.models.measure.per_layer import LayersSpec, run_layers

    spec = LayersSpec(arch=arch, size=size, data=data, act=act, seeds=seeds,
                      batch_size=batch_size, probes=max(probes, 1), exact=probes == 0,
                      row_exact=row_exact, overrides=tuple((overrides or {}).items()))
    return [r.as_dict() for r in run_layers(spec)]


def _train_config(fields: dict):
    from driftlab.models.engine.train import TrainConfig

    fields = dict(fields)
    fields.setdefault("progress", False)
    if isinstance(fields.get("model_overrides"), dict):
        fields["model_overrides"] = tuple(fields["model_overrides"].items())
    if fields.get("recipe"):
        from driftlab.models.engine.recipes import recipe_config

        return recipe_config(fields.pop("recipe"), **fields)
    return TrainConfig(**fields).validate()


def train(**fields) -> dict:
    """Train one instrumented model and return its summary (what ``OUT/summary.json`` holds:
    status, final and validation loss, per-layer drift, per-tap statistics).

    ``fields`` are TrainConfig fields (models/engine/train.py; ``driftlab train --help`` lists them
    with their defaults), e.g. ``train(arch="mlp", act="relu", steps=200, out="runs/mlp")``;
    ``recipe="paper-gpt"`` applies a recipe first; ``model_overrides`` may be a dict.
    Progress output is off unless ``progress=True``."""
    from driftlab.models.engine.train import train as run

    return run(_train_config(fields))


def resume(out: str | os.PathLike, steps: int | None = None, **fields) -> dict:
    """Continue the run in ``out`` from its checkpoint with its own configuration
    (``out/config.json``), to ``steps`` steps in all (default: its configured total), with
    ``fields`` overriding; returns the summary. A resumed run reproduces an uninterrupted
    one bit for bit."""
    path = Path(out) / "config.json"
    try:
        stored = json.loads(path.read_text())["train"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"out={str(out)!r}: {path} unreadable ({type(err).__name__}); "
                         f"`driftlab train --out {out} --resume` says how to recover") from None
    from driftlab.models.engine.train import TrainConfig

    known = {f for f in TrainConfig.__dataclass_fields__}
    values = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
              if isinstance(v, list) else v
              for k, v in stored.items() if k in known and k not in ("resume", "overwrite")}
    from driftlab.models.engine.train_config import check_resume_measurement

    check_resume_measurement(stored, fields, str(path))
    values.update(fields, out=str(out), resume=True)
    values.pop("recipe", None)  # already applied: its values are the stored fields
    if steps is not None:
        values["steps"] = steps
    from driftlab.models.engine.train import train as run

    return run(_train_config(values))


# Per-step scalars of metrics.jsonl copied to every tap row of that step.
_STEP_KEYS = ("loss", "lr", "accuracy", "grad_norm", "steps_per_s", "time")


def load_run(path: str | os.PathLike, final: bool = False) -> list[dict]:
    """Flat rows for ``pandas.DataFrame(rows)``: one dict per (run, logged step, tap).

    ``path`` is one ``driftlab train`` run, a ``seed-*`` ensemble directory, a sweep
    directory or any tree of them (reports/discover.py finds the runs; those it cannot use
    raise nothing and are left out: use ``driftlab report`` to see them named). Each row has
    the run's ``run`` (directory), ``preset``, ``arch``, ``act``, ``data``, ``optimizer``,
    ``seed``, ``status``; the step's ``step``, loss, lr, accuracy, grad_norm; the ``tap``
    and its statistics (sparsity, spike ratios, grad_pos_mean, …); and for the matrix that
    reads the tap (``downstream``) its ``w_mean``, ``w_std``, ``w_frac_neg``,
    ``w_mean_change`` at that step.

    ``final=True``: one row per (run, tap) from ``summary.json`` instead (init and final
    downstream weight statistics, the final tap statistics, val_loss, val_accuracy).
    """
    from driftlab.reports.discover import discover
    from driftlab.jsonl import read_jsonl

    found = discover([path])
    rows = []
    for run in found.runs:
        tags, summary = run.spec.get("tags", {}), run.summary
        base = {"run": str(run.path), "preset": run.spec.get("preset"),
                **{k: tags.get(k, run.spec.get("config", {}).get(k))
                   for k in ("arch", "act", "data", "optimizer", "seed")},
                "status": summary.get("status")}
        layers = {**summary.get("heads", {}), **summary.get("layers", {})}
        readers = {tap: e.get("downstream") for tap, e in summary.get("layers", {}).items()}
        if final:
            for tap, stats in (summary.get("taps") or {}).items():
                rows.append({**base, "tap": tap, "val_loss": summary.get("val_loss"),
                             "val_accuracy": summary.get("val_accuracy"),
                             "final_loss": summary.get("final_loss"), **stats,
                             **{k: v for k, v in layers.get(tap, {}).items()
                                if k.startswith("w_") or k == "downstream"}})
            continue
        for rec in sorted((r for r in read_jsonl(run.path / "metrics.jsonl")
                           if "step" in r and "event" not in r), key=lambda r: r["step"]):
            step = {k: rec[k] for k in _STEP_KEYS if k in rec}
            for tap, stats in rec.get("taps", {}).items():
                row = {**base, "step": rec["step"], **step, "tap": tap, **stats}
                w = rec.get("weights", {}).get(readers.get(tap) or "")
                if w:
                    row.update(downstream=readers[tap], w_mean=w.get("mean"),
                               w_std=w.get("std"), w_frac_neg=w.get("frac_neg"),
                               w_mean_change=w.get("mean_change"))
                rows.append(row)
    return rows


def sweep(preset: str, size: str = "tiny", out: str | os.PathLike = "runs", seeds: int | None = None,
          shard: str | None = None, log=None) -> dict:
    """Run (or resume) shard ``shard`` ("I/N") of ``preset``'s grid at scale ``size`` into
    ``out`` (reports/sweep.py): finished runs are skipped, concurrent workers claim runs
    atomically. Returns {preset, out, total, selected, ran, skipped, csv, seconds, …}.
    ``log``: a function given one line per run (default: silent)."""
    from driftlab.reports.sweep import run_sweep

    return run_sweep(preset, size=size, seeds=seeds, shard=shard, out=out, log=log).as_dict()


def report(run_dirs, out: str | os.PathLike = "reports/latest", theory: str = "auto") -> str:
    """Write ``out/report.md`` (figures, tables, the claims' verdicts) from every finished run
    under ``run_dirs`` (sweeps, ``driftlab train`` runs, seed-* ensembles); runs it cannot
    use are named in its header. ``theory``: "auto" (cached checks if any, else run them),
    "run", "off". Returns the report's path."""
    from driftlab.reports.report import write_report

    dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    return str(write_report(dirs, out, theory=theory))


def plot_setting(block: Block, path: str | os.PathLike, draws: int = 1024, seed: int = 0,
                 edges=None) -> str:
    """Plot Monte Carlo E[g | p] of ``block`` binned over p (points ± 1 SE) against the
    analytic curve (MSE: k·s2²·σσ'(p), exact; CE: s2²·σσ'(p)·S at the mean ‖h‖, an
    approximation) and write the PNG to ``path``; ``draws`` weight draws × 16 inputs,
    ``edges`` the bin edges (default 40 bins over ±3 SD of p). Returns the path."""
    from driftlab.reports.theory_plots import plot_gradient_for_setting

    return plot_gradient_for_setting(block, path, draws=draws, seed=seed, edges=edges)
