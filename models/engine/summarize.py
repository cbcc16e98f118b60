"""The summary of a finished (or stopped, interrupted, diverged) run, per member.

Summary keys: status ("ok", "stopped" by ``stop_at``, "interrupted" by a signal,
"diverged" for an ensemble member whose loss went non-finite), arch, act, steps (steps
done), final_loss (loss of the last step), val_loss, val_<metric> (mean over
``eval_batches`` validation batches at the final parameters), layers ({tap: downstream
path, w_mean_init, w_mean_final, w_mean_change, w_mean_se = init std/√numel, sparsity
(fraction of exact zeros, mean over the validation batches), sparsity_last (the same on
the last validation batch alone, the paper's measure), sparsity_eps, spike_ratio, max_abs (validation, final params), grad_pos_mean,
grad_pos_frac, frac_pos (last logged training step)}, one per entry of
``arch.downstream``: hidden matrices only), heads ({head path: the same drift fields,
``reads`` (the tap it reads or None) and that tap's statistics}, from
``arch.output_heads``: the zero-drift control, never averaged into layers), taps ({tap:
validation forward and last-step gradient statistics} for every tap), weights (final
per-matrix stats), resumed_from, n_devices, n_processes, seconds, out; ``records`` (the
logged records) when the run has no output directory.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import numpy as np

from driftlab.atomic_io import write_json
from driftlab.models.arch import instrument
from driftlab.models.engine.writers import MemoryWriter, json_default

SUMMARY_FILE = "summary.json"
# Tap statistics copied into the summary: forward ones from validation at the final
# parameters, gradient ones from the last logged training step.
VAL_TAP_STATS = ("sparsity", "sparsity_last", "sparsity_eps", "spike_ratio", "max_abs", "median_abs",
                 "spike_ratio_p", "max_abs_p", "median_abs_p", "massive_count", "massive_frac")
TRAIN_TAP_STATS = ("grad_pos_mean", "grad_pos_abs_mean", "grad_pos_frac", "grad_positions_frac", "frac_pos")


def validate(s, params, val_batch, reader) -> list[tuple[dict, dict]]:
    """Per member: (mean loss/metrics {"loss": .., metric: ..}, per-tap forward
    statistics) over validation batches 0 … eval_batches-1 at ``params``."""
    runs = [s.fns.eval_step(params, val_batch(i)) for i in range(s.cfg.eval_batches)]
    if not runs:
        return [({}, {})] * s.replicas.n
    out = []
    for host in s.replicas.floats(reader.start([{"loss": v, **m, "taps": t}
                                                for v, m, t in runs])):
        avg = {k: float(np.mean([h[k] for h in host])) for k in host[0] if k != "taps"}
        taps = {name: {st: float(np.mean([h["taps"][name][st] for h in host]))
                       for st in host[0]["taps"][name]} for name in host[0]["taps"]}
        for name, last in host[-1]["taps"].items():  # the paper's figure: the last batch alone
            if "sparsity" in last:
                taps[name]["sparsity_last"] = float(last["sparsity"])
        out.append((avg, taps))
    return out


def layer_entry(path: str, init_w: dict, init_means: dict, final_w: dict, val_stats: dict,
                train_stats: dict) -> dict:
    """Summary of one tap: its downstream matrix's drift (with the init-mean standard error
    std/√numel), validation sparsity/spikes at the final parameters, and the gradient
    statistics of the last training step."""
    entry = {"downstream": path}
    if path in init_w:
        w0 = np.asarray(init_w[path], np.float64)
        entry.update(w_mean_init=init_means[path], w_std_init=float(w0.std()),
                     w_mean_se=float(w0.std() / math.sqrt(w0.size)),
                     w_mean_final=final_w[path]["mean"],
                     w_mean_change=final_w[path]["mean"] - init_means[path],
                     w_frac_neg_final=final_w[path]["frac_neg"])
    for st in VAL_TAP_STATS:
        if st in val_stats:
            entry[st] = val_stats[st]
    for st in TRAIN_TAP_STATS:
        if st in train_stats:
            entry[st] = train_stats[st]
    return entry


def _drift(s, start, i: int, final_w: dict, val_taps: dict, train_taps: dict) -> dict:
    """layers, heads and taps of member ``i``."""
    init_w = instrument.weight_matrices(start.init_params[i])
    means = start.init_means[i]
    entry = lambda path, tap: layer_entry(path, init_w, means, final_w,  # noqa: E731
                                          val_taps.get(tap, {}), train_taps.get(tap, {}))
    layers = {name: entry(path, name) for name, path in s.arch.downstream(s.mcfg).items()}
    heads = {path: {"reads": tap, **entry(path, tap)}
             for path, tap in s.arch.output_heads(s.mcfg).items()}
    taps = {name: {**stats, **{k: v for k, v in train_taps.get(name, {}).items()
                               if k in TRAIN_TAP_STATS}}
            for name, stats in val_taps.items()}
    return {"layers": layers, "heads": heads, "taps": taps}


def _interrupted(s, book, ckpt, done: int) -> list[dict]:
    return [{"status": "interrupted", "signal": ckpt.signal_name, "arch": s.cfg.arch,
             "act": s.cfg.act, "steps": done, "final_loss": book.final_loss[i],
             "checkpoint": str(ckpt.path), "seconds": time.time() - s.t_start, "out": mc.out}
            for i, mc in enumerate(s.member_cfgs)]


def _status(s, book, i: int, done: int) -> dict:
    if i in book.diverged:
        bad_step, bad_loss = book.diverged[i]
        return {"status": "diverged", "steps": bad_step, "diverged_at": bad_step,
                "reason": f"non-finite loss or update at step {bad_step} (loss={bad_loss}); "
                          f"this member stopped, its last good state is kept"}
    return {"status": "ok" if done >= s.cfg.steps else "stopped", "steps": done}


def summarize(s, start, state, book, ckpt, reader, end: int, val_batch) -> list[dict]:
    """Per-member summaries (written to each member's summary.json); a signal that came
    during the validation leaves the run as interrupted (its last checkpoint is at
    ``done``, so a resume only repeats the validation)."""
    done = max(end, start.state.step)
    if ckpt.stopping:  # preempted: checkpoint written, skip the evaluation
        return _interrupted(s, book, ckpt, done)
    vals = validate(s, state.params, val_batch, reader)
    finals = [book.with_change(i, w) for i, w in
              enumerate(s.replicas.floats(reader.start(s.fns.weight_fn(state.params))))]
    if ckpt.stopping:
        return _interrupted(s, book, ckpt, done)
    summaries = []
    for i, mc in enumerate(s.member_cfgs):
        (val, val_taps), train_taps = vals[i], book.last_taps[i] or {}
        summary = {"arch": s.cfg.arch, "act": s.cfg.act, **_status(s, book, i, done),
                   "final_loss": book.final_loss[i],
                   "data": str(s.datasets[i].meta.get("name", s.cfg.data))}
        summary = {"status": summary.pop("status"), **summary}
        summary.update({f"val_{k}": v for k, v in val.items()})
        summary.update(_drift(s, start, i, finals[i], val_taps, train_taps))
        summary.update(weights=finals[i], resumed_from=start.resumed_from,
                       n_devices=int(s.mesh.devices.size), n_processes=jax.process_count(),
                       seconds=time.time() - s.t_start, out=mc.out)
        if s.replicas.stacked:
            summary["seed"], summary["ensemble"] = mc.seed, list(s.replicas.seeds)
        if mc.out and s.main:
            write_json(Path(mc.out) / SUMMARY_FILE, summary, indent=2, default=json_default)
        if mc.out is None and isinstance(book.writers[i], MemoryWriter):
            summary["records"] = book.writers[i].records
        summaries.append(summary)
    return summaries
