"""Run a preset's grid: resumable, shardable, one directory per run plus ``summary.csv``.

    from driftlab.reports.sweep import run_sweep
    result = run_sweep("drift", size="tiny", seeds=2, out="runs/drift", shard="0/2")

Layout: ``OUT/<run_id>/`` holds ``run.json`` (the RunSpec, written first),
the engine's ``config.json``, ``metrics.jsonl``, ``checkpoint.npz`` and
``summary.json`` (written last), and for sparsity_law runs ``law.jsonl``.
A run is *finished* when ``summary.json`` says ``status: ok`` and ``run.json`` equals
the spec; finished runs are skipped, so re-running an interrupted sweep resumes it
(unfinished engine runs continue from their checkpoint). ``OUT/summary.csv`` has one
row per finished run of the grid and is rebuilt after every sweep.
Concurrent workers (local processes, SLURM array jobs) sharing ``OUT`` claim each run
atomically first (reports/run_claims.py); a run claimed by another live worker is left to it
(status ``claimed``), and taken over before the sweep ends if that worker has died since.
Runs of the shard still unfinished at the end are listed in ``SweepResult.unfinished``
(``driftlab sweep`` names them and exits 1).

Engine runs of the grid that differ only in seed train as one seed ensemble (one compiled
program; at most ``max_ensemble`` members), each member still writing its own
``OUT/<run_id>/``; the ensemble's checkpoint lives in ``OUT/_ensembles/<group>/``.

Run kinds: ``train`` (the engine), ``sparsity_law`` (one engine run whose hook evaluates
the drift → sparsity law on the parameters at each law step) and ``first_step`` (one
SGD step of the theory's block, directly in JAX — not through the engine, because
the engine's MLP data are images/labels while the theory needs Gaussian inputs and
Gaussian targets).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from driftlab.atomic_io import write_json, write_text
from driftlab.reports import run_claims as claims
from driftlab.reports.presets import (PRESETS, FirstStepConfig, RunSpec, get_preset,
                                      sparsity_law_steps, spec_from_dict)

EXECUTORS = ("local", "submitit")
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
LAW_FILE = "law.jsonl"
CSV_FILE = "summary.csv"


# --------------------------------------------------------------------------- sharding


def parse_shard(shard) -> tuple[int, int]:
    """``"I/N"`` (or (I, N)) -> (I, N) with 0 <= I < N; ValueError naming ``shard`` otherwise."""
    if shard is None:
        return 0, 1
    try:
        i, n = (shard.split("/") if isinstance(shard, str) else shard)
        i, n = int(i), int(n)
    except (ValueError, TypeError):
        raise ValueError(f"shard={shard!r} invalid; allowed: I/N with integers "
                         f"0 <= I < N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard={shard!r} invalid; allowed: I/N with 0 <= I < N "
                         f"(I in 0..{max(n - 1, 0)})")
    return i, n


def select_shard(specs: list[RunSpec], shard) -> list[RunSpec]:
    """Runs of shard I of N: positions I, I+N, I+2N … of the grid (deterministic order),
    so the shards are disjoint, their union is the grid and their sizes differ by <= 1."""
    i, n = parse_shard(shard)
    return specs[i::n]


# --------------------------------------------------------------------------- run state


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# "diverged": the engine stopped on a non-finite loss; deterministic, so re-running it
# would diverge again. The report keeps such runs as flagged points.
FINISHED_STATUSES = ("ok", "diverged")


def is_finished(spec: RunSpec, run_dir: Path) -> bool:
    """True when ``run_dir`` holds a completed run of exactly this spec."""
    summary = _read_json(run_dir / SUMMARY_FILE)
    return (summary is not None and summary.get("status") in FINISHED_STATUSES
            and _read_json(run_dir / RUN_FILE) == spec.as_dict())


SUPERSEDED_DIR = ".superseded"  # finished runs moved aside, never deleted (hidden: not reported)


def _start(spec: RunSpec, run_dir: Path, keep: bool) -> None:
    """Write ``run.json``; drop an unrelated or (``keep=False``) partial run first. A
    *finished* run (summary.json status ok/diverged) whose run.json differs (another preset
    version, other tags) is not deleted: it is moved to ``OUT/.superseded/`` and named on
    stderr."""
    if run_dir.exists() and (not keep or _read_json(run_dir / RUN_FILE) != spec.as_dict()):
        summary = _read_json(run_dir / SUMMARY_FILE)
        if isinstance(summary, dict) and summary.get("status") in FINISHED_STATUSES:
            _set_aside(run_dir)
        else:
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN_FILE, spec.as_dict(), indent=1)


def _set_aside(run_dir: Path) -> Path:
    """Move a finished run out of the grid's way to OUT/.superseded/<run_id>[-N]; say so."""
    import sys

    old = _read_json(run_dir / RUN_FILE)
    version = old.get("version") if isinstance(old, dict) else None
    base = run_dir.parent / SUPERSEDED_DIR / (run_dir.name + (f".v{version}" if version else ""))
    target, n = base, 1
    while target.exists():
        target, n = base.with_name(f"{base.name}-{n}"), n + 1
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(run_dir, target)
    print(f"driftlab sweep: {run_dir} held a finished run of another spec"
          f"{f' (preset version {version})' if version else ''}; moved to {target}, not "
          f"deleted", file=sys.stderr)
    return target


# --------------------------------------------------------------------------- run kinds


def _run_train(spec: RunSpec, run_dir: Path) -> dict:
    from driftlab.models.engine.train import train

    from driftlab.models.engine.train import NonFiniteLossError

    cfg = _engine_config(spec, run_dir)
    try:
        return train(cfg)
    except NonFiniteLossError as err:
        summary = {"status": "diverged", "reason": str(err), "arch": cfg.arch, "act": cfg.act,
                   "steps": err.step, "final_loss": err.loss}
        write_json(run_dir / SUMMARY_FILE, summary, indent=2)
        return summary


def _engine_config(spec: RunSpec, run_dir: Path):
    """The spec's TrainConfig writing to ``run_dir``: an interrupted run continues from its
    checkpoint (the engine checks it belongs to the same run identity); a run directory
    without one is started afresh (the sweep owns its run directories)."""
    from driftlab.models.engine import checkpoint

    return dataclasses.replace(spec.config, out=str(run_dir), overwrite=True,
                               resume=checkpoint.exists(run_dir / checkpoint.FILENAME))


def law_point(cfg, params, step: int, n_rows: int = 256) -> dict:
    """The drift → sparsity law at ``params`` of a bias-free ReLU MLP.

    For hidden layer i >= 1 the pre-activation is exactly h_{i-1} @ W_i; the law
    predicts its ReLU sparsity as mean over rows of Φ(−μ·Σh / (s·‖h‖)) with μ, s the
    mean/std of W_i (theory.expected_grad.predicted_relu_sparsity), evaluated on
    ``n_rows`` validation inputs and compared with the measured fraction of zeros.
    """
    import jax.numpy as jnp

    from driftlab.models.arch import instrument
    from driftlab.models.arch.base import get_arch
    from driftlab.models.engine.train import model_config
    from driftlab.theory.expected_grad import predicted_relu_sparsity

    arch = get_arch(cfg.arch)
    mcfg, ds = arch.data(cfg.data, model_config(arch, cfg), cfg.seed)
    batch = ds.sample("val", 0, n_rows, cfg.seed)
    rec = instrument.TapRecorder(None)
    arch.apply(params, {k: jnp.asarray(v) for k, v in batch.items()}, mcfg, rec)
    layers = {}
    for i in range(1, mcfg.depth):
        h_prev = np.asarray(rec.records[f"layer{i - 1}"][1], np.float64)
        h = np.asarray(rec.records[f"layer{i}"][1])
        w = np.asarray(params[f"layer{i}"]["w"], np.float64)
        # A row with h = 0 gives the next pre-activation exactly 0, a zero of ReLU: its
        # predicted sparsity is 1 (the law's formula is 0/0 there).
        live = np.linalg.norm(h_prev, axis=1) > 0
        pred_live = (predicted_relu_sparsity(w.mean(), w.std(), h_prev[live])
                     if live.any() else 1.0)
        predicted = float((live.sum() * pred_live + (~live).sum()) / live.size)
        layers[f"layer{i}"] = {"measured": float(np.mean(h == 0)), "predicted": predicted,
                               "w_mean": float(w.mean()), "w_std": float(w.std())}
    return {"step": step, "layers": layers}


def _read_law(path: Path) -> dict:
    """{step: point} of an earlier (interrupted) run's law.jsonl; damaged lines dropped."""
    points = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                point = json.loads(line)
                points[int(point["step"])] = point
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    return points


def _run_sparsity_law(spec: RunSpec, run_dir: Path) -> dict:
    """One engine run with a hook at :func:`sparsity_law_steps`: the law is evaluated on
    the parameters the engine hands the hook (no checkpoint is read here). A resumed run
    keeps the points before its checkpoint; later ones are recomputed (bit-exact resume)."""
    from driftlab.atomic_io import write_text
    from driftlab.models.engine.hooks import Hook
    from driftlab.models.engine.train import train

    if spec.config.arch != "mlp":
        raise ValueError(f"sparsity_law runs need arch='mlp', got {spec.config.arch!r}")
    cfg = _engine_config(spec, run_dir)
    law = run_dir / LAW_FILE
    points = _read_law(law) if cfg.resume else {}

    def on_step(step, state):
        points[step] = law_point(cfg, state.params, step)
        write_text(law, "".join(json.dumps(points[k]) + "\n" for k in sorted(points)))

    if not cfg.resume:
        law.unlink(missing_ok=True)
    return train(cfg, hooks=[Hook(tuple(sparsity_law_steps(spec.config.steps)), on_step)])


@lru_cache(maxsize=64)
def _drift_prediction(setting):
    """(semi-analytic, n → ∞) E[∂ℓ/∂W2] for a BlockSetting; one fixed MC seed, cached, so
    the seeds of a first_step cell share one prediction."""
    from driftlab.montecarlo import stein_reduced
    from driftlab.montecarlo.estimators import Budget
    from driftlab.theory.expected_grad import drift_large_width

    semi = stein_reduced.drift(setting, Budget(draws=4096, inputs_per_draw=16, chunk=512,
                                               seed=0))
    return semi, drift_large_width(setting)


def run_first_step(cfg: FirstStepConfig) -> dict:
    """Measured one-step SGD change of the block's weight means vs theory (see
    :class:`~driftlab.reports.presets.FirstStepConfig`).

    Uses the engine's MLP (depth 2, fan_in_normal, no bias) for init/apply with
    Gaussian inputs/targets and ℓ = ½‖f − y‖² (sum over outputs; batch mean — note
    ``mlp.loss(task="regress")`` is Σ(f − y)² against one-hot labels, twice this loss
    and with non-Gaussian targets, hence not used). Per draw: mean entry of
    ΔW = −lr·∂L/∂W for W1 (layer0), W2 (layer1) and W3 (head). Predictions:
    −lr × montecarlo.stein_reduced.drift (finite width, semi-analytic) and
    −lr × theory.expected_grad.drift_large_width (n → ∞), both for the same
    BlockSetting(loss="mse", reduction="sum").
    """
    import jax
    import jax.numpy as jnp
    import optax

    from driftlab.models.arch.base import get_arch
    from driftlab.theory.setting import BlockSetting

    cfg.validate()
    arch = get_arch("mlp")
    mcfg = arch.config("tiny", cfg.act, depth=2, width=cfg.width, bias=False,
                       init="fan_in_normal", gain=float(cfg.gain), task="regress",
                       in_dim=cfg.d_in, out_dim=cfg.d_out)
    sgd = optax.sgd(cfg.lr)

    def one_draw(key):
        kp, kx, ky = jax.random.split(key, 3)
        params = arch.init(kp, mcfg)
        x = jax.random.normal(kx, (cfg.batch_size, cfg.d_in))
        y = jax.random.normal(ky, (cfg.batch_size, cfg.d_out))

        def loss(p):
            f = arch.apply(p, {"x": x}, mcfg)
            return jnp.mean(0.5 * jnp.sum(jnp.square(f - y), axis=-1))

        grads = jax.grad(loss)(params)
        updates, _ = sgd.update(grads, sgd.init(params), params)
        new = optax.apply_updates(params, updates)
        return {name: jnp.mean(new[name]["w"] - params[name]["w"])
                for name in ("layer0", "layer1", "head")}

    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.draws)
    # Bound memory: at most ~2^24 entries of W2 per mapped batch of draws.
    chunk = int(max(1, min(cfg.draws, (1 << 24) // (cfg.width * cfg.width))))
    vals = jax.jit(lambda k: jax.lax.map(one_draw, k, batch_size=chunk))(keys)
    vals = {k: np.asarray(v, np.float64) for k, v in vals.items()}
    setting = BlockSetting(loss="mse", act=cfg.act, d_in=cfg.d_in, width=cfg.width,
                           d_out=cfg.d_out, gain=float(cfg.gain), reduction="sum")
    semi, limit = _drift_prediction(setting)
    out = {"status": "ok", "kind": "first_step", "act": cfg.act, "width": cfg.width,
           "draws": cfg.draws, "setting": setting.describe(), "lr": cfg.lr,
           "predicted_dw2": -cfg.lr * semi.value, "predicted_dw2_se": cfg.lr * semi.stderr,
           "predicted_dw2_tier": semi.tier, "predicted_dw2_large_width": -cfg.lr * limit.value}
    for name, key in (("layer0", "dw1"), ("layer1", "dw2"), ("head", "dw3")):
        v = vals[name]
        out[f"measured_{key}"] = float(v.mean())
        out[f"measured_{key}_se"] = float(v.std(ddof=1) / np.sqrt(v.size))
    return out


def _run_first_step(spec: RunSpec, run_dir: Path) -> dict:
    t0 = time.time()
    summary = run_first_step(spec.config)
    summary["seconds"] = time.time() - t0
    write_json(run_dir / "config.json", {"first_step": dataclasses.asdict(spec.config)}, indent=2)
    write_json(run_dir / SUMMARY_FILE, summary, indent=2)
    return summary


RUNNERS = {"train": _run_train, "sparsity_law": _run_sparsity_law,
           "first_step": _run_first_step}


def run_one(spec: RunSpec | dict, out: str | os.PathLike) -> dict:
    """Run one spec under ``out/<run_id>`` unless finished; return {run_id, status, …}."""
    spec = spec_from_dict(spec) if isinstance(spec, dict) else spec
    run_dir = Path(out) / spec.run_id
    if is_finished(spec, run_dir):
        return {"run_id": spec.run_id, "status": "skipped"}
    if spec.kind not in RUNNERS:
        raise ValueError(f"kind={spec.kind!r} invalid; allowed: {', '.join(RUNNERS)}")
    if not claims.try_claim(out, spec.run_id):
        return {"run_id": spec.run_id, "status": "claimed",
                "by": claims.holder(out, spec.run_id)}
    try:
        if is_finished(spec, run_dir):  # finished by another worker before our claim
            return {"run_id": spec.run_id, "status": "skipped"}
        return _run_claimed(spec, run_dir)
    finally:
        claims.release(out, spec.run_id)


def _run_claimed(spec: RunSpec, run_dir: Path) -> dict:
    # Engine runs keep a partial directory (they resume from its checkpoint); the
    # others restart from scratch.
    _start(spec, run_dir, keep=spec.kind == "train")
    t0 = time.time()
    summary = RUNNERS[spec.kind](spec, run_dir)
    if spec.kind != "first_step":
        # The engine wrote summary.json; record the wall time of the whole run too.
        summary["sweep_seconds"] = time.time() - t0
    return {"run_id": spec.run_id, "status": summary.get("status", "ok"),
            "signal": summary.get("signal")}


# --------------------------------------------------------------------------- seed ensembles

ENSEMBLES_DIR = "_ensembles"  # OUT/_ensembles/<group>/: an ensemble's checkpoint and lock
MAX_ENSEMBLE = 8  # default bound on the members of one ensemble (memory: S copies of state)


def ensemble_groups(specs: list[RunSpec], max_ensemble: int = MAX_ENSEMBLE) -> list[list]:
    """``specs`` in groups of engine runs that differ only in seed (at most
    ``max_ensemble`` each, grid order kept); every other run alone."""
    if not isinstance(max_ensemble, int) or max_ensemble < 1:
        raise ValueError(f"max_ensemble={max_ensemble!r} invalid; allowed: an integer >= 1")
    groups: dict = {}
    for spec in specs:
        d = spec.as_dict()
        key = (spec.run_id,) if spec.kind != "train" or max_ensemble == 1 else (
            d["preset"], d["version"], d["kind"],
            json.dumps({**d["config"], "seed": None}, sort_keys=True))
        groups.setdefault(key, []).append(spec)
    return [g[i:i + max_ensemble] for g in groups.values()
            for i in range(0, len(g), max_ensemble)]


def run_group(specs: list[RunSpec], out: str | os.PathLike) -> list[dict]:
    """Run ``specs`` (differing only in seed) as one seed ensemble, each member writing
    its own ``out/<run_id>`` as a single run would; finished members are skipped and
    members claimed by another worker are left to it."""
    if len(specs) == 1:
        return [run_one(specs[0], out)]
    results, mine = [], []
    for spec in specs:
        if is_finished(spec, Path(out) / spec.run_id):
            results.append({"run_id": spec.run_id, "status": "skipped"})
        elif claims.try_claim(out, spec.run_id):
            mine.append(spec)
        else:
            results.append({"run_id": spec.run_id, "status": "claimed",
                            "by": claims.holder(out, spec.run_id)})
    try:
        done = [s for s in mine if is_finished(s, Path(out) / s.run_id)]  # by another worker
        results += [{"run_id": s.run_id, "status": "skipped"} for s in done]
        todo = [s for s in mine if s not in done]
        if len(todo) == 1:
            results.append(_run_claimed(todo[0], Path(out) / todo[0].run_id))
        elif todo:
            results += _run_ensemble_claimed(todo, Path(out))
    finally:
        for spec in mine:
            claims.release(out, spec.run_id)
    return results


def _run_ensemble_claimed(specs: list[RunSpec], out: Path) -> list[dict]:
    import hashlib

    from driftlab.models.engine import checkpoint
    from driftlab.models.engine.train import train_ensemble

    ids = sorted(s.run_id for s in specs)
    home = out / ENSEMBLES_DIR / hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
    for spec in specs:
        _start(spec, out / spec.run_id, keep=True)
    cfg = dataclasses.replace(specs[0].config, out=str(home), overwrite=True,
                              resume=checkpoint.exists(home / checkpoint.FILENAME))
    res = train_ensemble(cfg, [s.config.seed for s in specs], home=home,
                         member_outs=[out / s.run_id for s in specs])
    return [{"run_id": s.run_id, "status": m["status"], "signal": m.get("signal")}
            for s, m in zip(specs, res["members"])]


# --------------------------------------------------------------------------- summary.csv


def _nanmean(values) -> float:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def summary_row(spec: dict, summary: dict, run_dir: Path) -> dict:
    """One CSV row: ids, tags, the main config fields and run-level aggregates."""
    cfg = spec["config"]
    row = {"run_id": spec["run_id"], "preset": spec["preset"], "version": spec["version"],
           "kind": spec["kind"], "status": summary.get("status")}
    row.update({f"tag_{k}": v for k, v in sorted(spec["tags"].items())})
    for key in ("arch", "act", "data", "size", "steps", "batch_size", "lr", "optimizer",
                "weight_decay", "seed", "width", "draws"):
        if key in cfg:
            row[key] = cfg[key]
    if spec["kind"] == "first_step":
        for key in ("measured_dw1", "measured_dw1_se", "measured_dw2", "measured_dw2_se",
                    "measured_dw3", "measured_dw3_se", "predicted_dw2", "predicted_dw2_se",
                    "predicted_dw2_large_width"):
            row[key] = summary.get(key)
    else:
        layers = summary.get("layers", {}).values()
        taps = (summary.get("taps") or summary.get("layers", {})).values()
        for key in ("final_loss", "val_loss", "val_accuracy"):
            row[key] = summary.get(key)
        row["sparsity_mean"] = _nanmean(l.get("sparsity") for l in taps)
        row["sparsity_max"] = max((l.get("sparsity", float("nan")) for l in taps),
                                  default=float("nan"))
        row["spike_ratio_max"] = max((l.get("spike_ratio", float("nan")) for l in taps),
                                     default=float("nan"))
        row["max_abs_max"] = max((l.get("max_abs", float("nan")) for l in taps),
                                 default=float("nan"))
        row["w_mean_change_rel_mean"] = _nanmean(
            l["w_mean_change"] / l["w_std_init"] for l in layers
            if "w_mean_change" in l and l.get("w_std_init"))
        row["grad_pos_mean_mean"] = _nanmean(l.get("grad_pos_mean") for l in taps)
    row["seconds"] = summary.get("seconds")
    row["dir"] = str(run_dir)
    return row


def csv_text(rows: list[dict], fields: list[str]) -> str:
    """``rows`` as CSV text with header ``fields`` (missing cells empty)."""
    import io

    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=fields or ["run_id"], restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_summary_csv(specs: list[RunSpec], out: str | os.PathLike) -> Path:
    """(Re)write ``out/summary.csv`` from every finished run of ``specs`` found in ``out``
    (written to a temporary file and renamed, so concurrent shards never see half a file)."""
    out = Path(out)
    rows = []
    for spec in specs:
        run_dir = out / spec.run_id
        if is_finished(spec, run_dir):
            rows.append(summary_row(spec.as_dict(), _read_json(run_dir / SUMMARY_FILE),
                                    run_dir))
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    out.mkdir(parents=True, exist_ok=True)
    return write_text(out / CSV_FILE, csv_text(rows, fields))


# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    """What one sweep invocation did."""

    preset: str
    out: str
    total: int  # runs in the whole grid
    selected: int  # runs in this shard
    ran: list
    skipped: list
    csv: str
    seconds: float
    interrupted: str | None = None  # the signal that stopped it (SIGTERM/SIGINT), if any
    # Runs of this shard with no finished result when the sweep ended (held by a live
    # worker, or failed): the grid is incomplete, and the command says so and exits 1.
    unfinished: list = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _submitit_run(specs: list[RunSpec], out: Path, options: dict) -> list[dict]:
    """Submit one job per run through submitit (Slurm if available, else local processes)."""
    try:
        import submitit
    except ImportError:
        raise ValueError("executor='submitit' needs the optional dependency submitit "
                         "(pip install 'driftlab[cluster]'); allowed without it: local") \
            from None
    executor = submitit.AutoExecutor(folder=str(out / "_submitit"),
                                     cluster=options.get("cluster"))
    params = {"timeout_min": int(options.get("timeout_min", 60)), "name": "driftlab-sweep"}
    if options.get("partition"):
        params["slurm_partition"] = options["partition"]
    if options.get("gpus_per_node"):
        params["gpus_per_node"] = int(options["gpus_per_node"])
    executor.update_parameters(**params)
    jobs = executor.map_array(run_one, [s.as_dict() for s in specs], [str(out)] * len(specs))
    return [job.result() for job in jobs]


def run_sweep(preset: str, size: str = "tiny", seeds: int | None = None, shard=None,
              out: str | os.PathLike = "runs", executor: str = "local",
              specs: list[RunSpec] | None = None, executor_options: dict | None = None,
              log=print, max_ensemble: int = MAX_ENSEMBLE) -> SweepResult:
    """Run shard ``shard`` of ``preset``'s grid into ``out`` (see the module docstring).

    ``specs`` replaces the preset's grid (tests pass shortened runs); ``log`` gets one
    line per run (None: silent). Engine runs differing only in seed train as one seed
    ensemble of at most ``max_ensemble`` members (local executor; 1: one run at a time).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} invalid; allowed: {', '.join(EXECUTORS)}")
    grid = get_preset(preset).grid(size, seeds) if specs is None else list(specs)
    mine = select_shard(grid, shard)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    todo = [s for s in mine if not is_finished(s, out / s.run_id)]
    skipped = [s.run_id for s in mine if s not in todo]
    log = log or (lambda *_: None)
    ran, interrupted = [], None
    if executor == "local":
        n = 0
        for group in ensemble_groups(todo, max_ensemble):
            t = time.time()
            for res in run_group(group, out):
                n += 1
                if res["status"] in ("claimed", "skipped"):  # another worker has it / did it
                    skipped.append(res["run_id"])
                    log(f"[{preset} {n}/{len(todo)}] {res['run_id']}: " + (
                        f"claimed by another worker ({res['by']}), left to it"
                        if res["status"] == "claimed" else "finished by another worker"))
                    continue
                ran.append(res["run_id"])
                log(f"[{preset} {n}/{len(todo)}] {res['run_id']}: {res['status']} "
                    f"({time.time() - t:.1f} s" + (f", ensemble of {len(group)})"
                                                    if len(group) > 1 else ")"))
                if res["status"] == "interrupted":  # SIGTERM/SIGINT: checkpointed
                    interrupted = res.get("signal") or "signal"
            if interrupted:
                break
        if not interrupted:
            # A run left to another worker whose process has died since holds a stale
            # claim now: take it over, so a dead worker never leaves a hole in the grid.
            for spec in [s for s in todo if s.run_id in skipped
                         and not is_finished(s, out / s.run_id)]:
                res = run_one(spec, out)
                if res["status"] not in ("claimed", "skipped"):
                    skipped.remove(spec.run_id)
                    ran.append(spec.run_id)
                    log(f"[{preset}] {spec.run_id}: {res['status']} (taken over from a "
                        f"worker that died holding it)")
                    if res["status"] == "interrupted":
                        interrupted = res.get("signal") or "signal"
                        break
    elif todo:
        for res in _submitit_run(todo, out, executor_options or {}):
            ran.append(res["run_id"])
            log(f"[{preset} submitit] {res['run_id']}: {res['status']}")
    csv_path = write_summary_csv(grid, out)
    unfinished = [] if interrupted else [s.run_id for s in mine
                                         if not is_finished(s, out / s.run_id)]
    return SweepResult(preset, str(out), len(grid), len(mine), ran, skipped, str(csv_path),
                       time.time() - t0, interrupted, unfinished)


def unfinished_text(res: SweepResult) -> str:
    """One line naming the runs a sweep left unfinished, and who holds each."""
    held = [f"{r} (claimed by {claims.holder(res.out, r)})"
            if claims.claim_path(res.out, r).exists() else r for r in res.unfinished]
    return (f"{res.preset}: grid incomplete: {len(res.unfinished)} of {res.selected} runs "
            f"unfinished: {', '.join(held)}; run the same command again when their "
            f"workers have finished (a claim of a dead worker is taken over)")


def preset_names(name: str) -> list[str]:
    """``"all"`` -> every preset name; otherwise [name] (validated)."""
    if name == "all":
        return list(PRESETS)
    get_preset(name)
    return [name]
