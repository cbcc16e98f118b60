"""The instrumented training engine: one loop for every architecture, one seed or many.

    from driftlab.models.engine.train import TrainConfig, train, train_ensemble
    summary = train(TrainConfig(arch="mlp", act="relu", steps=50, out="runs/mlp"))
    result = train_ensemble(TrainConfig(arch="mlp", steps=50, out="runs/ens"), seeds=range(8))

``train`` builds ``arch.config(size, act, **model_overrides)``, loads data with
``arch.data``, initializes with ``arch.init`` and runs the compiled steps of
models/engine/steps.py. ``train_ensemble`` trains S seeds of the same configuration in ONE
compiled program (a leading replica axis on params, optimizer state, guard, pin
references and batches; models/engine/ensemble.py); member s uses exactly the init key, data set
and data order of ``train`` with ``seed=s``.

The loop (:func:`_loop`) reads top to bottom over parts with one job each: setup
(:func:`setup`), the compiled steps (models/engine/steps.py), a TrainState
(models/engine/train_state.py), deferred reads and records (models/engine/deferred_reads.py), writers
(models/engine/writers.py), a Checkpointer (models/engine/checkpointer.py), hooks (models/engine/hooks.py) and
:func:`summarize`.

Outputs under ``out`` (process 0 only; every file written atomically): ``config.json``
(TrainConfig, model config, data meta), ``metrics.jsonl`` (one JSON object per logged
step: loss, metrics, lr, grad_norm, per-tap and per-weight statistics, steps/s; a record
at step s describes the parameters *before* update s), ``checkpoint.npz``
(models/engine/checkpoint.py) and ``summary.json``. An ensemble writes ``OUT/seed-<s>/`` per
member (config.json, metrics.jsonl, summary.json: a normal run directory) and
``OUT/ensemble.json`` plus the ensemble's ``OUT/checkpoint.npz``. A run directory is
locked while a run uses it (models/engine/run_dir.py). With ``out=None`` the records are kept in
memory: ``summary["records"]``.

A non-finite loss (or update) raises :class:`NonFiniteLossError` before anything from
that step is saved, so ``checkpoint.npz`` keeps the last good state; in an ensemble only
that member stops (summary status ``diverged``). Finiteness is checked on the device and
read only at deferred-read points (models/engine/nonfinite.py), so the host never waits per step.
Training batches are sampled and moved to the devices a chunk of steps ahead
(models/engine/prefetch.py).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from driftlab.atomic_io import write_json
from driftlab.models.engine import (checkpoint, ensemble, host_read, interrupt, pins, prefetch,
                                    run_dir, sharding)
from driftlab.models.arch.base import get_arch
from driftlab.models.engine.checkpointer import Checkpointer
from driftlab.models.engine.deferred_reads import DeferredReads, RecordBook
from driftlab.models.engine.deferred_reads import NonFiniteLossError  # noqa: F401 (callers catch it from here)
from driftlab.models.engine.hooks import Hooks
from driftlab.models.engine.steps import Functions, step_functions
from driftlab.models.engine.summarize import summarize
from driftlab.models.engine.train_config import (TrainConfig, _bad, is_logged_step, model_config,
                                                 run_identity)
from driftlab.models.engine.train_state import TrainState
from driftlab.models.engine.writers import (METRICS_FILE, Progress, json_default as _json_default,
                                            open_writer, truncate_records)

CONFIG_FILE = "config.json"
# Prefetch batch chunks on a background thread (True), between steps in the loop's own
# thread (False), or None: a thread only when the steps run on an accelerator. On the CPU
# backend XLA's compute threads already use every core, and a producer thread competes
# with the dispatching thread for a core and the GIL: on 2 cores, MLP tiny's engine loop
# ran at 0.89× the bare steps inline against 0.84× with the thread (6 paired runs).
PREFETCH_THREAD = None
BATCH_CHUNK, CHUNK_BYTES = 32, 64 << 20  # batches prefetched per transfer (models/engine/prefetch.py)


# --------------------------------------------------------------------------- setup


@dataclass
class Setup:
    """What a run is made of before its first step (see :func:`setup`)."""

    cfg: TrainConfig  # the base config (for an ensemble: the first member's seed)
    replicas: ensemble.Replicas
    member_cfgs: list  # each member's TrainConfig (its seed and run directory)
    arch: object
    mcfg: object
    datasets: list  # each member's data set
    mesh: object
    main: bool  # process 0: the one that writes files
    fns: Functions
    example: dict  # one member's batch of step 0 (host)
    batch_chunk: int
    home: Path | None  # where the checkpoint and the lock live
    identity: dict  # what a checkpoint must match to resume
    t_start: float  # when the train() call began (the records' "time")


def setup(cfg: TrainConfig, replicas: ensemble.Replicas, outs=None, home=None,
          t_start: float | None = None) -> Setup:
    """Arch, data per member, mesh and compiled steps of a run."""
    sharding.maybe_initialize_distributed()
    if replicas.stacked and jax.process_count() > 1:
        raise ValueError("--seeds: seed ensembles run in one process; allowed with several "
                         "processes: one --seed per run")
    arch = get_arch(cfg.arch)
    member_cfgs = replicas.member_configs(cfg, outs)
    mcfg, datasets = _member_data(arch, cfg, member_cfgs)
    mesh = sharding.make_mesh()
    sharding.check_batch_size(cfg.batch_size, mesh)
    example = datasets[0].sample("train", 0, cfg.batch_size, member_cfgs[0].seed)
    # steps per prefetched chunk: up to BATCH_CHUNK, at most ~CHUNK_BYTES of batches
    nbytes = sum(np.asarray(v).nbytes for v in example.values()) * replicas.n
    batch_chunk = int(np.clip(CHUNK_BYTES // max(nbytes, 1), 1, BATCH_CHUNK))
    fns = step_functions(arch, mcfg, cfg, mesh, example, replicas.members)
    identity = run_identity(cfg, mcfg)
    if replicas.stacked:  # one checkpoint for all members: their seeds replace the seed
        identity = {**{k: v for k, v in identity.items() if k != "seed"},
                    "seeds": list(replicas.seeds)}
    home = Path(home) if home is not None else (Path(cfg.out) if cfg.out else None)
    return Setup(member_cfgs[0], replicas, member_cfgs, arch, mcfg, datasets, mesh,
                 jax.process_index() == 0, fns, example, batch_chunk, home, identity,
                 time.time() if t_start is None else t_start)


def _member_data(arch, cfg, member_cfgs):
    """(model config, [data set per member]); members must agree on the model config."""
    base = model_config(arch, cfg)
    mcfg, datasets = None, []
    for mc in member_cfgs:
        m, ds = arch.data(cfg.data, base, mc.seed)
        if mcfg is not None and m != mcfg:
            raise ValueError(f"--seeds: seed {mc.seed}'s data changes the model config; "
                             f"allowed: data whose shapes do not depend on the seed")
        mcfg = m
        datasets.append(ds)
    name = str(datasets[0].meta.get("name", ""))
    if name.endswith("synthetic-fallback"):
        print(f"driftlab train: --data {cfg.data}: no real speech installed; using "
              f"synthetic signals ({name})", file=sys.stderr)
    return mcfg, datasets


def _local(batch: dict, rows) -> dict:
    return {k: v[rows] for k, v in batch.items()}


def train_batches(s: Setup):
    """produce(first, count): the training batches of steps first … first+count-1 on the
    devices, in one transfer (for models/engine/prefetch.py)."""
    cfg, mesh, rows = s.cfg, s.mesh, sharding.process_rows(s.cfg.batch_size)

    def member(i, first, count):
        ds, seed = s.datasets[i], s.member_cfgs[i].seed
        if ds.sample_steps is not None:  # one vectorized draw of all ``count`` batches
            stacked = ds.sample_steps("train", first, count, cfg.batch_size, seed)
            return {k: v[:, rows] for k, v in stacked.items()}
        return ensemble.stack_members([_local(ds.sample("train", t, cfg.batch_size, seed), rows)
                                       for t in range(first, first + count)], axis=0)

    def produce(first, count):
        if not s.replicas.stacked:
            return sharding.shard_stacked(member(0, first, count), mesh, cfg.batch_size)
        stacked = ensemble.stack_members([member(i, first, count)
                                          for i in range(s.replicas.n)], axis=1)
        return ensemble.place_stacked(stacked, mesh, s.fns.batch_spec)

    return produce


def val_batch(s: Setup, i: int):
    """Validation batch ``i`` on the devices (stacked over the members of an ensemble)."""
    cfg, rows = s.cfg, sharding.process_rows(s.cfg.batch_size)
    local = [_local(ds.sample("val", i, cfg.batch_size, mc.seed), rows)
             for ds, mc in zip(s.datasets, s.member_cfgs)]
    if not s.replicas.stacked:
        return sharding.shard_batch(local[0], s.mesh, cfg.batch_size)
    return jax.device_put(ensemble.stack_members(local, axis=0),
                          jax.sharding.NamedSharding(s.mesh, s.fns.batch_spec))


def place(s: Setup, tree):
    """Host arrays -> the devices, where the run's state lives."""
    if not s.replicas.stacked:
        return sharding.replicate(tree, s.mesh)
    return jax.device_put(tree, s.fns.state_sharding)


@dataclass
class Start:
    """The initial (or resumed) state and what is measured against init."""

    state: TrainState
    init_params: list  # per member, host
    pin_ref: object  # on the devices
    init_means: list  # per member {matrix: mean at init}, via the logged reduction
    resumed_from: int | None = None
    final_loss: list | None = None
    diverged: dict | None = None


def initial_state(s: Setup, ckpt: Checkpointer, reader) -> Start:
    """Init from the seeds (the same compiled init for every member) and, with
    ``resume``, the checkpoint's state on top."""
    keys = [jax.random.fold_in(jax.random.PRNGKey(mc.seed), 0) for mc in s.member_cfgs]
    params, opt_state = jax.device_get(s.fns.initialize(
        keys[0] if not s.replicas.stacked else jax.numpy.stack(keys)))
    init_params = s.replicas.unstack(params)
    pin_ref = place(s, s.replicas.stack([
        pins.reference(p, s.cfg.pins, s.arch.name, s.mcfg, s.arch.downstream(s.mcfg))
        for p in init_params]))
    # Init means through the same compiled reduction as the logged means, and changes
    # taken on the host, so that mean_change is exactly 0 at step 0.
    init_means = [{k: v["mean"] for k, v in m.items()}
                  for m in s.replicas.floats(reader.start(s.fns.weight_fn(place(s, params))))]
    start = Start(TrainState(params, opt_state, ckpt.initial_guard(), 0), init_params,
                  pin_ref, init_means)
    if s.cfg.resume and checkpoint.exists(ckpt.path):
        params, opt_state, step, guard, start.final_loss, start.diverged = ckpt.restore(
            params, opt_state)
        if s.cfg.steps < step:
            raise _bad("steps", s.cfg.steps, f"at least the {step} steps already done in "
                       f"{s.cfg.out!r} (steps is the run's total, not the steps to add)")
        start.state, start.resumed_from = TrainState(params, opt_state, guard, step), step
    st = start.state
    start.state = TrainState(place(s, st.params), place(s, st.opt_state), place(s, st.guard),
                             st.step)
    return start


def record_layout(s: Setup, start: Start, reader):
    """Where each statistic of a logged step's packed record lies (one trace, no compile)."""
    st = start.state
    batch = s.example if not s.replicas.stacked else ensemble.stack_members(
        [s.example] * s.replicas.n, axis=0)
    like = jax.eval_shape(s.fns.logged_record, st.params, st.opt_state, batch, np.int32(0),
                          st.guard, start.pin_ref)[2]
    return reader.layout(like)


# --------------------------------------------------------------------------- run directories


def _member_outs(s: Setup) -> list:
    return [Path(mc.out) if mc.out is not None else None for mc in s.member_cfgs]


def prepare_dirs(s: Setup, start: Start) -> None:
    """Fresh run: drop an earlier run's files; resumed run: cut records after the
    checkpoint. Then write each member's config.json (and an ensemble's ensemble.json)."""
    if not s.main or s.home is None:
        return
    dirs = [d for d in _member_outs(s) if d is not None]
    for d in {s.home, *dirs}:
        d.mkdir(parents=True, exist_ok=True)
        if start.resumed_from is None:
            for name in run_dir.RUN_FILES:
                (d / name).unlink(missing_ok=True)
        else:
            truncate_records(d / METRICS_FILE, start.resumed_from,
                             lambda t: is_logged_step(t, s.cfg))
    for mc, d in zip(s.member_cfgs, dirs):
        conf = {"train": dataclasses.asdict(mc), "model": dataclasses.asdict(s.mcfg),
                "data": dict(s.datasets[0].meta), "n_devices": int(s.mesh.devices.size),
                "n_processes": jax.process_count(), "jax_version": jax.__version__}
        write_json(d / CONFIG_FILE, conf, indent=2, default=_json_default)
    if s.replicas.stacked:
        write_json(s.home / ensemble.ENSEMBLE_FILE,
                   {"train": dataclasses.asdict(s.cfg), "seeds": list(s.replicas.seeds),
                    "members": [str(d) for d in dirs]}, indent=2, default=_json_default)


def _check_out(cfg: TrainConfig, dirs=()) -> None:
    """Before any computation: ``out`` (and an ensemble's member directories) must be
    writable directory paths; an earlier run there needs ``resume`` or ``overwrite``;
    ``resume`` needs a checkpoint."""
    if cfg.out is None:
        return
    out = run_dir.check_output_dir(cfg.out)
    for d in (out, *dirs):
        run_dir.check_reuse(d, cfg.resume, cfg.overwrite)
    if cfg.resume and not checkpoint.exists(out / checkpoint.FILENAME):
        raise ValueError(f"--resume: no checkpoint in {cfg.out!r} (no {checkpoint.FILENAME}); "
                         f"the run stopped before its first checkpoint or never started; "
                         f"start it again with --overwrite")


# --------------------------------------------------------------------------- the loop

# The most plain steps run as one compiled program (models/engine/steps.py ``plain_steps``).
# Between two logged steps the loop runs the plain steps k at a time, k a power of two up
# to SCAN_STEPS (so at most log2(SCAN_STEPS) + 1 programs compile), never past a step after
# which the host must look at the state (a checkpoint, a hook, the end). One dispatch per
# step cost MLP tiny ~half its step time on the 2-core machine (issue 34). 1: one step
# per dispatch, as before.
SCAN_STEPS = 8


def plain_run(step: int, end: int, cfg: TrainConfig, ckpt: Checkpointer, hooks: Hooks) -> int:
    """How many plain steps from ``step`` on run in one program: 0 if ``step`` is logged,
    else a power of two k <= SCAN_STEPS such that steps step … step+k-1 are plain and no
    step but the last needs a sync (a checkpoint or signal check after the last one is
    then as late as before; a wall-clock checkpoint or a signal waits for the chunk)."""
    if is_logged_step(step, cfg):
        return 0
    every = ckpt.every() if ckpt.path is not None else 0
    k = 1
    while (k < SCAN_STEPS and step + k < end and not is_logged_step(step + k, cfg)
           and not (every and (step + k) % every == 0) and not hooks.wants(step + k)):
        k += 1
    return 1 << (k.bit_length() - 1)


def dispatch(s: Setup, state: TrainState, batches, end: int, ckpt, hooks, pin_ref):
    """Dispatch the next logged step, or the next k plain steps (:func:`plain_run`) in one
    program: (state after them, what the program returned, logged)."""
    fns, step = s.fns, state.step
    k = plain_run(step, end, s.cfg, ckpt, hooks)
    if k == 0:
        return (*state.advance(fns.logged_step, batches.get(step), pin_ref), True)
    if k == 1:
        return (*state.advance(fns.guarded_plain_step, batches.get(step), pin_ref), False)
    chunk = tuple(batches.get(t) for t in range(step, step + k))
    return (*state.advance(fns.plain_steps, chunk, pin_ref, steps=k), False)


def _loop(s: Setup, start: Start, ckpt: Checkpointer, reader, hooks: Hooks, stop_at):
    """Run the steps; return (state, RecordBook, end)."""
    cfg, state = s.cfg, start.state
    step0 = state.step
    end = cfg.steps if stop_at is None else max(step0, min(cfg.steps, int(stop_at)))
    bar = Progress(cfg.steps, step0, cfg.progress and s.main, f"{cfg.arch}/{cfg.act}")
    book = RecordBook(cfg, s.replicas, [open_writer(d, s.main) for d in _member_outs(s)],
                      start.init_means, bar, ckpt, s.t_start,
                      start.final_loss, start.diverged)
    reads = DeferredReads(reader, s.replicas, record_layout(s, start, reader),
                          jax.process_count() > 1)
    batches = prefetch.Prefetcher(train_batches(s), step0, end, chunk=s.batch_chunk,
                                  background=(jax.default_backend() != "cpu"
                                              if PREFETCH_THREAD is None else PREFETCH_THREAD))
    try:
        hooks.call(step0, state)  # e.g. a hook at step 0: the state at init
        while state.step < end:
            first = state.step
            state, out, logged = dispatch(s, state, batches, end, ckpt, hooks, start.pin_ref)
            step = state.step - 1  # the last step run
            due = ckpt.due(state.step) and state.step < end
            sync = state.step == end or due or ckpt.stopping or hooks.wants(state.step)
            if logged or sync:
                reads.push(step, out, state.guard, logged, state.step - step0)
            for pending, hosts in reads.drain(step, sync):
                book.finish(pending, hosts)  # a non-finite single run raises here
            bar.update(state.step - first)
            if not sync:
                continue
            book.flush()
            hooks.call(state.step, state)
            if due:
                ckpt.save(state, book.final_loss, book.diverged)
            if ckpt.stopping or book.all_diverged:
                end = state.step
                break
        if end > step0 or (ckpt.path is not None and not ckpt.path.exists()):
            ckpt.save(state, book.final_loss, book.diverged)
    finally:
        book.close()
        batches.close()
        bar.close()
    return state, book, end


def _train(cfg, replicas, *, stop_at=None, hooks=(), outs=None, home=None):
    """Validate, lock, set up, run, summarize: the whole run (single or ensemble). The
    signal handler is installed from setup to the summary."""
    t_start = time.time()
    cfg.validate()
    sharding.maybe_initialize_distributed()  # before the lock: only process 0 takes it
    dirs = [Path(c.out) for c in replicas.member_configs(cfg, outs) if c.out is not None]
    _check_out(dataclasses.replace(cfg, out=str(home)) if home else cfg,
               dirs if replicas.stacked else ())
    run_home = home or cfg.out
    with run_dir.lock(run_home if jax.process_index() == 0 else None), \
            interrupt.StopOnSignal(enabled=run_home is not None) as sig:
        s = setup(cfg, replicas, outs, home, t_start)
        ckpt = Checkpointer(s.cfg, s.home / checkpoint.FILENAME if s.home else None,
                            s.identity, replicas, s.main, sig)
        reader = host_read.HostReader(s.mesh)  # one transfer per dtype per record
        start = initial_state(s, ckpt, reader)
        prepare_dirs(s, start)
        state, book, end = _loop(s, start, ckpt, reader, Hooks(hooks), stop_at)
        return summarize(s, start, state, book, ckpt, reader, end,
                         val_batch=lambda i: val_batch(s, i))


def train(cfg: TrainConfig, *, stop_at: int | None = None, hooks=()) -> dict:
    """Train per ``cfg``; return a summary dict (see models/engine/summarize.py).

    ``stop_at``: end this invocation (after checkpointing) once ``stop_at`` steps are
    done, as if the job were preempted; ``resume=True`` later continues the same run.
    The schedule still spans ``cfg.steps``. ``hooks``: :class:`Hook` callbacks called
    with the state at the steps they ask for (models/engine/hooks.py).
    """
    return _train(cfg, ensemble.Replicas((cfg.seed,), False), stop_at=stop_at,
                  hooks=hooks)[0]


def train_ensemble(cfg: TrainConfig, seeds, *, stop_at: int | None = None, hooks=(),
                   member_outs=None, home=None) -> dict:
    """Train ``seeds`` of ``cfg`` as one seed ensemble (one compiled program); return
    {"status", "seeds", "members": [member summary per seed], "out"}.

    Member directories: ``member_outs`` (one per seed) or ``cfg.out/seed-<s>``; the
    ensemble's checkpoint, lock and ensemble.json live in ``home`` (default ``cfg.out``).
    Status: "ok"/"stopped"/"interrupted" as for :func:`train`; "diverged" when every
    member diverged. ``resume=True`` continues the whole ensemble bit-exactly.
    """
    seeds = ensemble.parse_seeds(seeds)
    if member_outs is not None and len(member_outs) != len(seeds):
        raise ValueError(f"member_outs has {len(member_outs)} entries for {len(seeds)} seeds")
    cfg = dataclasses.replace(cfg, seed=seeds[0])
    members = _train(cfg, ensemble.Replicas(seeds, True), stop_at=stop_at, hooks=hooks,
                     outs=None if member_outs is None else [str(o) for o in member_outs],
                     home=home)
    statuses = {m["status"] for m in members}
    status = ("interrupted" if "interrupted" in statuses else
              "diverged" if statuses == {"diverged"} else
              "stopped" if "stopped" in statuses else "ok")
    return {"status": status, "seeds": list(seeds), "members": members,
            "out": str(home or cfg.out) if (home or cfg.out) else None,
            **({"signal": members[0].get("signal"),
                "checkpoint": members[0].get("checkpoint")} if status == "interrupted" else {})}
