"""The instrumented training engine: one loop for every architecture.

    from driftlab.models.train import TrainConfig, train
    summary = train(TrainConfig(arch="mlp", act="relu", steps=50, out="runs/mlp"))

``train`` builds ``arch.config(size, act, **model_overrides)``, loads data with
``arch.data``, initializes with ``arch.init`` and runs a jitted step that computes the
loss, the gradients, the optimizer update and (``instrument=True``, on logged steps) per-tap
statistics from a zero probe added to each pre-activation (models/instrument.py) — all in
one forward/backward pass; steps that are not logged run the same update without them. The batch is sharded over every device (models/sharding.py).

Outputs under ``out`` (process 0 only): ``config.json`` (TrainConfig, model config,
data meta), ``metrics.jsonl`` (one JSON object per logged step: loss, metrics, lr,
grad_norm, per-tap and per-weight statistics, steps/s), ``checkpoint.npz``
(models/checkpoint.py). A record at step s describes the parameters *before* update s.

Mixed precision (``dtype="bfloat16"``): master weights and optimizer state stay float32;
the forward/backward pass runs on bfloat16 copies of the weights and float inputs;
outputs are cast back to float32 before the loss. A model config field named
``compute_dtype`` is set to ``dtype`` unless overridden.

``pins`` (models/pins.py) modify the parameters after every update (e.g. hold the
downstream matrices' means at init); logged records then carry ``pins`` (what was removed)
and, for archs with a reader map, ``shift`` (the mean pre-activation decomposition).

A non-finite loss (or update) raises :class:`NonFiniteLossError` before anything from
that step is saved, so ``checkpoint.npz`` keeps the last good state. Finiteness is
checked on the device and read only on logged, checkpoint and last steps
(models.nonfinite), so the host does not wait for every step.

No host stall per step: training batches are sampled and moved to the devices a chunk of
steps ahead on a background thread (models/prefetch.py; one transfer per chunk,
models/sharding.py ``shard_stacked``); a logged step computes its record's statistics
(weights included) and packs them in the step's own program, and the host reads them in
one transfer per dtype (models/host_read.py) once they are ready, without waiting, while
later steps run. Checkpoint, signal and last steps still read at once. The numbers
written are the same as reading each statistic by itself.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from driftlab.activations import parse_activation
from driftlab.models import (checkpoint, instrument, interrupt, nonfinite, pins, prefetch,
                             run_dir, sharding)
from driftlab.models import host_read
from driftlab.models.base import ARCH_MODULES, SIZES, get_arch
from driftlab.models.muon import MOMENTUM_FORMS, NS_DTYPES, SCALINGS
from driftlab.models.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule

DTYPES = ("float32", "bfloat16")
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
READ_LAG = 2  # several processes: steps dispatched behind a logged step before its read
MAX_READ_LAG = 50  # one process: the most steps a logged step's read may wait
# Prefetch batch chunks on a background thread (True), between steps in the loop's own
# thread (False), or None: a thread only when the steps run on an accelerator. On the CPU
# backend XLA's compute threads already use every core, and a producer thread competes
# with the dispatching thread for a core and the GIL: on 2 cores, MLP tiny's engine loop
# ran at 0.89× the bare steps inline against 0.84× with the thread (6 paired runs).
PREFETCH_THREAD = None
METRICS_FLUSH_SECONDS = 1.0  # metrics.jsonl is flushed at sync points and this often
BATCH_CHUNK, CHUNK_BYTES = 32, 64 << 20  # batches prefetched per transfer (models/prefetch.py)


class NonFiniteLossError(RuntimeError):
    """Training hit a non-finite loss or update; the last good checkpoint is kept."""

    def __init__(self, step: int, loss: float, checkpoint_step: int | None, path):
        self.step, self.loss, self.checkpoint_step = step, loss, checkpoint_step
        where = (f"last good checkpoint: step {checkpoint_step} in {path}"
                 if checkpoint_step is not None else "no checkpoint was written")
        super().__init__(f"non-finite loss or update at step {step} (loss={loss}); "
                         f"training stopped; {where}")


def _bad(field: str, value, allowed: str) -> ValueError:
    return ValueError(f"TrainConfig.{field}={value!r} invalid; allowed: {allowed}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. ``validate()`` checks every field."""

    arch: str = "mlp"
    act: str = "relu"
    data: str = "synthetic"  # "synthetic", "embedded" or a path in the arch's data format
    size: str = "tiny"
    steps: int = 100
    batch_size: int = 32  # global batch, split over all devices
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    warmdown_steps: int = 0  # schedule="wcd": linear decay to 0 over the last warmdown_steps
    adam_beta2: float = 0.999  # AdamW's β₂ (also the AdamW part of optimizer="muon")
    muon_lr_ratio: float = 0.1  # optimizer="muon": Muon's lr = muon_lr_ratio · lr
    # optimizer="muon": update scale rule, momentum form, Newton–Schulz dtype (models/muon.py)
    muon_scale: str = "jordan"
    muon_momentum: str = "ema"
    muon_ns_dtype: str = "float32"
    warmdown_end: int | None = None  # schedule="wcd": the step lr reaches 0 (None: steps)
    recipe: str | None = None  # "name@version" of the recipe applied (models/recipes.py)
    phase_scaling: str | None = None  # how the recipe's phases were scaled to ``steps``
    grad_clip: float | None = None
    dtype: str = "float32"
    seed: int = 0
    out: str | None = None
    log_every: int = 10
    checkpoint_every: int = 0  # 0: no step cadence (the wall-time cadence still applies)
    checkpoint_minutes: float = 10.0  # also checkpoint after this much wall time; 0: off
    overwrite: bool = False  # replace an earlier run found in ``out`` (else refused)
    eps: float = 1e-3  # |h| < eps counts as (near-)sparse for smooth activations
    model_overrides: tuple = ()  # ((field, value), ...) for arch.config
    instrument: bool = True
    resume: bool = False
    eval_batches: int = 4  # validation batches evaluated at the end
    progress: bool = True
    # λ of the L1 activation penalty λ·mean_taps(mean|h|) added to the training loss: a
    # knob that raises ReLU sparsity without a larger lr (reports' trade-off sweep).
    act_l1: float = 0.0
    pins: tuple = ()  # causal interventions after every update, names from pins.PINS

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field and its allowed values."""
        if self.arch not in ARCH_MODULES:
            raise _bad("arch", self.arch, ", ".join(ARCH_MODULES))
        try:
            parse_activation(self.act)
        except ValueError as err:
            raise ValueError(f"TrainConfig.act: {err}") from None
        if not isinstance(self.data, str) or not self.data:
            raise _bad("data", self.data, "'synthetic', 'embedded' or a path")
        if self.size not in SIZES:
            raise _bad("size", self.size, ", ".join(SIZES))
        for name in ("steps", "batch_size", "log_every"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise _bad(name, v, "a positive integer")
        for name in ("warmup_steps", "warmdown_steps", "checkpoint_every", "eval_batches",
                     "seed"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise _bad(name, v, "a non-negative integer")
        if not _is_num(self.lr) or not (self.lr > 0 and math.isfinite(self.lr)):
            raise _bad("lr", self.lr, "a positive finite number")
        if not _is_num(self.weight_decay) or not self.weight_decay >= 0:
            raise _bad("weight_decay", self.weight_decay, "a number >= 0")
        if not _is_num(self.act_l1) or not (self.act_l1 >= 0 and math.isfinite(self.act_l1)):
            raise _bad("act_l1", self.act_l1, "a finite number >= 0")
        if not _is_num(self.eps) or not self.eps >= 0:
            raise _bad("eps", self.eps, "a number >= 0")
        if self.grad_clip is not None and (not _is_num(self.grad_clip) or not self.grad_clip > 0):
            raise _bad("grad_clip", self.grad_clip, "None or a positive number")
        if self.optimizer not in OPTIMIZERS:
            raise _bad("optimizer", self.optimizer, ", ".join(OPTIMIZERS))
        if self.schedule not in SCHEDULES:
            raise _bad("schedule", self.schedule, ", ".join(SCHEDULES))
        if self.warmdown_end is not None and (not _is_int(self.warmdown_end)
                                              or not 1 <= self.warmdown_end <= self.steps):
            raise _bad("warmdown_end", self.warmdown_end,
                       f"None or an integer in [1, steps = {self.steps}]")
        end = self.steps if self.warmdown_end is None else self.warmdown_end
        if self.schedule == "wcd" and self.warmup_steps + self.warmdown_steps > end:
            raise _bad("warmdown_steps", self.warmdown_steps,
                       f"warmup_steps + warmdown_steps <= "
                       f"{'steps' if self.warmdown_end is None else 'warmdown_end'} = {end}")
        for name, allowed in (("muon_scale", SCALINGS), ("muon_momentum", MOMENTUM_FORMS),
                              ("muon_ns_dtype", NS_DTYPES)):
            if getattr(self, name) not in allowed:
                raise _bad(name, getattr(self, name), ", ".join(allowed))
        if not _is_num(self.adam_beta2) or not 0 <= self.adam_beta2 < 1:
            raise _bad("adam_beta2", self.adam_beta2, "a number in [0, 1)")
        if not _is_num(self.muon_lr_ratio) or not (self.muon_lr_ratio > 0
                                                   and math.isfinite(self.muon_lr_ratio)):
            raise _bad("muon_lr_ratio", self.muon_lr_ratio, "a positive finite number")
        if self.recipe is not None and not isinstance(self.recipe, str):
            raise _bad("recipe", self.recipe, "None or a 'name@version' string")
        if self.phase_scaling is not None and not isinstance(self.phase_scaling, str):
            raise _bad("phase_scaling", self.phase_scaling, "None or a string")
        if self.dtype not in DTYPES:
            raise _bad("dtype", self.dtype, ", ".join(DTYPES))
        if not _is_num(self.checkpoint_minutes) or not self.checkpoint_minutes >= 0:
            raise _bad("checkpoint_minutes", self.checkpoint_minutes, "a number >= 0 (0: off)")
        for name in ("instrument", "resume", "progress", "overwrite"):
            if getattr(self, name) not in (True, False):
                raise _bad(name, getattr(self, name), "True, False")
        if self.out is not None and (not isinstance(self.out, str) or not self.out.strip()):
            raise _bad("out", self.out, "None or a non-empty directory path")
        pins.validate_pins(self.pins, self.arch)
        if self.resume and self.out is None:
            raise _bad("resume", True, "True only together with an out directory")
        if not isinstance(self.model_overrides, tuple) or not all(
                isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str)
                for kv in self.model_overrides):
            raise _bad("model_overrides", self.model_overrides,
                       "a tuple of (field, value) pairs")
        for field, _ in self.model_overrides:
            if field in ("act", "size"):  # arch.config takes them as arguments
                raise _bad("model_overrides", f"{field}=...",
                           f"model config fields other than {field!r} (set it with --{field})")
        return self
        return self


# --------------------------------------------------------------------------- helpers


def _cast_floats(tree, dtype):
    """Cast floating leaves of a pytree to ``dtype``; leave integer leaves alone."""
    def cast(x):
        if isinstance(x, jax.ShapeDtypeStruct):  # abstract values (eval_shape)
            floating = jnp.issubdtype(x.dtype, jnp.floating)
            return jax.ShapeDtypeStruct(x.shape, dtype if floating else x.dtype)
        x = x if hasattr(x, "dtype") else np.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, tree)


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def is_logged_step(step: int, cfg: TrainConfig) -> bool:
    """Whether ``train()`` logs ``step`` (and runs the instrumented step there): every
    ``log_every``-th step and the last one."""
    return step % cfg.log_every == 0 or step == cfg.steps - 1


def model_config(arch, cfg: TrainConfig):
    """arch.config(size, act, **overrides), with ``compute_dtype`` following ``cfg.dtype``."""
    overrides = dict(cfg.model_overrides)
    base = arch.config(cfg.size, cfg.act)
    fields = {f.name for f in dataclasses.fields(base)}
    if "compute_dtype" in fields and "compute_dtype" not in overrides \
            and cfg.dtype != "float32":
        overrides["compute_dtype"] = cfg.dtype
    return arch.config(cfg.size, cfg.act, **overrides)


def run_identity(cfg: TrainConfig, mcfg) -> dict:
    """The fields that determine a run's trajectory; a checkpoint must match them to resume."""
    keep = ("arch", "act", "data", "size", "batch_size", "lr", "optimizer", "weight_decay",
            "warmup_steps", "schedule", "grad_clip", "dtype", "seed")
    ident = {k: getattr(cfg, k) for k in keep}
    for k in ("warmdown_steps", "adam_beta2", "muon_lr_ratio", "muon_scale", "muon_momentum",
              "muon_ns_dtype", "warmdown_end"):  # only when not default,
        if getattr(cfg, k) != getattr(TrainConfig, k):  # so earlier checkpoints keep theirs
            ident[k] = getattr(cfg, k)
    if cfg.act_l1:  # only when set, so earlier checkpoints keep their identity
        ident["act_l1"] = cfg.act_l1
    ident["model"] = dataclasses.asdict(mcfg)
    if cfg.pins:  # only when set, so unpinned checkpoints keep their identity
        ident["pins"] = list(cfg.pins)
    return json.loads(json.dumps(ident, sort_keys=True, default=_json_default))


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records from steps >= ``step`` (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", -1) < step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    path.write_text("".join(k + "\n" for k in kept))


# --------------------------------------------------------------------------- step functions


class _L1Tap:
    """Wraps a tap and collects mean|h| of every activation (the L1 penalty's terms);
    other tap methods (e.g. the pins' ``reader_input``) pass through."""

    def __init__(self, tap):
        self.tap, self.l1 = tap, []

    def __call__(self, name, p, act):
        h = self.tap(name, p, act)
        self.l1.append(jnp.mean(jnp.abs(h.astype(jnp.float32))))
        return h

    def __getattr__(self, attr):
        return getattr(self.tap, attr)


class Functions(NamedTuple):
    """The compiled pieces of a run (shared by runs that differ only in seed/out/logging)."""

    schedule: Callable
    tx: optax.GradientTransformation
    initialize: Callable  # key -> (fp32 params, opt_state)
    train_step: Callable  # (params, opt_state, batch, step[, pin_ref]) -> (params, opt_state, logs, finite)
    plain_step: Callable  # the same update without tap statistics (for steps that are not logged)
    eval_step: Callable  # (params, batch) -> (loss, metrics, tap stats without gradients)
    weight_fn: Callable  # params -> per-matrix weight statistics (mean, std, frac_neg)
    # train_step / plain_step under models.nonfinite.guarded: (params, opt_state, batch,
    # step, guard) -> (params, opt_state, logs, guard); what the loop runs (no sync per step)
    guarded_train_step: Callable = None
    guarded_plain_step: Callable = None
    # What the loop runs on logged steps: guarded_train_step that also takes the weight
    # statistics of the parameters it is given and returns, instead of the logs, the
    # record's statistics packed for one host read (models/host_read.py):
    # (params, opt_state, batch, step, guard[, pin_ref]) -> (params, opt_state, packed, guard)
    logged_step: Callable = None
    # the unpacked record of logged_step (for its structure, via jax.eval_shape)
    logged_record: Callable = None


# Fields of TrainConfig that change the compiled step (seed, out, logging do not).
_STEP_FIELDS = ("steps", "batch_size", "lr", "optimizer", "weight_decay", "warmup_steps",
                "schedule", "grad_clip", "dtype", "eps", "instrument", "act_l1", "pins",
                "warmdown_steps", "adam_beta2", "muon_lr_ratio", "muon_scale", "muon_momentum",
                "muon_ns_dtype", "warmdown_end")


def step_functions(arch, mcfg, cfg: TrainConfig, mesh, example: dict) -> Functions:
    """Jitted functions for this run, reused across ``train`` calls in one process when
    the architecture, model config, step-relevant fields, mesh and batch shapes agree
    (sweeps and tests then compile once)."""
    key = (arch.name, mcfg, tuple(getattr(cfg, f) for f in _STEP_FIELDS), mesh,
           tuple((k, np.shape(v), np.asarray(v).dtype.str) for k, v in sorted(example.items())))
    try:
        hash(key)
    except TypeError:  # an unhashable model config: build afresh
        return _build_functions(arch, mcfg, cfg, mesh, example)
    if key not in _CACHE:
        if len(_CACHE) >= 16:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _build_functions(arch, mcfg, cfg, mesh, example)
    return _CACHE[key]


_CACHE: dict = {}


def _build_functions(arch, mcfg, cfg: TrainConfig, mesh, example: dict) -> Functions:
    """Build the jitted functions of :class:`Functions` (see there)."""
    schedule = make_schedule(cfg.lr, cfg.steps, cfg.warmup_steps, cfg.schedule,
                             cfg.warmdown_steps, cfg.warmdown_end)
    tx = make_optimizer(cfg.optimizer, schedule, cfg.weight_decay, cfg.grad_clip,
                        cfg.adam_beta2, cfg.muon_lr_ratio, muon_scale=cfg.muon_scale,
                        muon_momentum=cfg.muon_momentum, muon_ns_dtype=cfg.muon_ns_dtype)

    # One compiled program for init (eager random ops would compile one by one); fp32
    # master weights whatever the model's init returns.
    def initialize(k):
        p = _cast_floats(arch.init(k, mcfg), jnp.float32)
        return p, tx.init(p)

    abstract_params = jax.eval_shape(initialize, jax.random.PRNGKey(0))[0]
    shapes = instrument.probe_shapes(
        lambda tap, p, b: arch.apply(p, b, mcfg, tap),
        _cast_floats(abstract_params, jnp.dtype(cfg.dtype)),
        _cast_floats(example, jnp.dtype(cfg.dtype)))
    compute = jnp.dtype(cfg.dtype)
    mixed = cfg.dtype != "float32"

    def forward(tap, params, batch):
        cbatch = batch
        if mixed:
            params, cbatch = _cast_floats(params, compute), _cast_floats(batch, compute)
        if cfg.act_l1:
            tap = _L1Tap(tap)
        outputs = arch.apply(params, cbatch, mcfg, tap)
        outputs = _cast_floats(outputs, jnp.float32)
        value, metrics = arch.loss(outputs, batch, mcfg)
        if cfg.act_l1:
            metrics = {**metrics, "act_l1_penalty": sum(tap.l1) / len(tap.l1)}
        return value, metrics

    def objective(value, metrics):
        """The training loss: the model's loss plus the L1 activation penalty (validation
        reports the model's loss alone)."""
        if cfg.act_l1:
            return value + cfg.act_l1 * metrics["act_l1_penalty"]
        return value

    reader_map = pins.readers(arch.name, mcfg)

    def loss_fn(params, probes, batch):
        rec = instrument.TapRecorder(probes)
        tap = pins.ReaderInputs(rec)  # ū of each reading matrix's input (models/pins.py)
        value, metrics = forward(tap, params, batch)
        acts = instrument.tap_stats(rec.records, None, cfg.eps, cfg.batch_size)
        ps = {k: jax.lax.stop_gradient(p) for k, (p, _) in rec.records.items()}
        return objective(value, metrics), (metrics, acts, ps, tap.means)

    def train_step(params, opt_state, batch, step, pin_ref=None, instrumented=cfg.instrument):
        shift = {}
        if instrumented:
            probes = instrument.zero_probes(shapes)
            (value, (metrics, acts, ps, u_means)), (grads, gprobes) = jax.value_and_grad(
                loss_fn, argnums=(0, 1), has_aux=True)(params, probes, batch)
            for name in acts:
                acts[name].update(instrument.gradient_stats(ps[name], gprobes[name],
                                                            cfg.batch_size))
            if pin_ref is not None:
                shift = pins.shift_decomposition(params, ps, u_means, pin_ref, reader_map)
        else:
            def plain(params_, batch_):
                tap = pins.ReaderInputs(lambda _n, p, act: act(p))
                value_, metrics_ = forward(tap, params_, batch_)
                return objective(value_, metrics_), (metrics_, tap.means)
            (value, (metrics, u_means)), grads = jax.value_and_grad(plain, has_aux=True)(
                params, batch)
            acts = {}
        updates, new_opt = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        if cfg.pins and pin_ref is None:
            raise ValueError("train_step: TrainConfig.pins is set but no pin_ref was given")
        new_params, pin_logs = pins.apply_pins(new_params, cfg.pins, pin_ref, u_means,
                                               reader_map)
        finite = jnp.isfinite(value)
        for leaf in jax.tree_util.tree_leaves(new_params):
            finite &= jnp.all(jnp.isfinite(leaf))
        logs = {"loss": value, "metrics": metrics, "grad_norm": optax.tree.norm(grads),
                "lr": jnp.asarray(schedule(step), jnp.float32), "taps": acts,
                "pins": pin_logs, "shift": shift}
        return new_params, new_opt, logs, finite

    def eval_step(params, batch):
        rec = instrument.TapRecorder(None)
        value, metrics = forward(rec, params, batch)
        return value, metrics, instrument.tap_stats(rec.records, None, cfg.eps, cfg.batch_size)

    def weight_fn(params):
        return instrument.weight_stats(params)

    rep = sharding.replicated(mesh)
    # Donating params/opt_state halves peak memory on accelerators; the CPU backend
    # cannot use donated buffers and would only warn.
    donate = (0, 1) if jax.default_backend() != "cpu" else ()
    # Tap statistics are only read on logged steps, so other steps run the plain update
    # (compiled lazily, on first use): instrumentation then costs ~1/log_every of a step.
    plain_step = partial(train_step, instrumented=False)
    guarded_train = nonfinite.guarded(train_step)

    def logged_record(params, opt_state, batch, step, guard, *extra):
        """guarded_train's update and the statistics of a logged record (weights: of
        ``params``, before the update)."""
        wstats = weight_fn(params) if cfg.instrument else None
        new_params, new_opt, logs, guard = guarded_train(params, opt_state, batch, step,
                                                         guard, *extra)
        record = {"guard": guard, "loss": logs["loss"], "grad_norm": logs["grad_norm"],
                  "lr": logs["lr"], "metrics": logs["metrics"], "taps": logs["taps"],
                  "shift": logs["shift"], "pins": logs["pins"], "weights": wstats}
        return new_params, new_opt, record, guard

    def logged_step(*args):
        new_params, new_opt, record, guard = logged_record(*args)
        return new_params, new_opt, host_read.pack(record), guard

    return Functions(schedule, tx, jax.jit(initialize),
                     jax.jit(train_step, out_shardings=rep, donate_argnums=donate),
                     jax.jit(plain_step, out_shardings=rep, donate_argnums=donate),
                     jax.jit(eval_step, out_shardings=rep),
                     jax.jit(weight_fn, out_shardings=rep),
                     jax.jit(nonfinite.guarded(train_step), out_shardings=rep, donate_argnums=donate),
                     jax.jit(nonfinite.guarded(plain_step), out_shardings=rep, donate_argnums=donate),
                     jax.jit(logged_step, out_shardings=rep, donate_argnums=donate),
                     logged_record)


# --------------------------------------------------------------------------- summary


def _validate(eval_step, params, get_batch, n_batches: int, read) -> tuple[dict, dict]:
    """Mean loss/metrics ({"loss": .., metric: ..}) and per-tap forward statistics over
    validation batches 0 … n_batches-1 at ``params``. ``read``: device tree -> host floats
    (``HostReader.floats``)."""
    runs = [eval_step(params, get_batch("val", i)) for i in range(n_batches)]
    if not runs:
        return {}, {}
    host = read([{"loss": v, **m, "taps": t} for v, m, t in runs])
    avg = {k: float(np.mean([h[k] for h in host])) for k in host[0] if k != "taps"}
    taps = {name: {s: float(np.mean([h["taps"][name][s] for h in host]))
                   for s in host[0]["taps"][name]} for name in host[0]["taps"]}
    return avg, taps


# Tap statistics copied into the summary: forward ones from validation at the final
# parameters, gradient ones from the last logged training step.
VAL_TAP_STATS = ("sparsity", "sparsity_eps", "spike_ratio", "max_abs", "median_abs",
                 "spike_ratio_p", "max_abs_p", "median_abs_p", "massive_count", "massive_frac")
TRAIN_TAP_STATS = ("grad_pos_mean", "grad_pos_frac", "grad_positions_frac", "frac_pos")


def _layer_entry(path: str, init_w: dict, init_means: dict, final_w: dict, val_stats: dict,
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
    for s in VAL_TAP_STATS:
        if s in val_stats:
            entry[s] = val_stats[s]
    for s in TRAIN_TAP_STATS:
        if s in train_stats:
            entry[s] = train_stats[s]
    return entry


# --------------------------------------------------------------------------- the loop


# --------------------------------------------------------------------------- run-directory hooks


def _check_out(cfg: TrainConfig) -> None:
    """Before any computation: ``out`` must be a writable directory path; an earlier run
    there needs ``resume`` or ``overwrite``; ``resume`` needs a checkpoint."""
    if cfg.out is None:
        return
    out = run_dir.check_output_dir(cfg.out)
    run_dir.check_reuse(out, cfg.resume, cfg.overwrite)
    if cfg.resume and not checkpoint.exists(out / checkpoint.FILENAME):
        raise ValueError(f"--resume: no checkpoint in {cfg.out!r} (no {checkpoint.FILENAME}); "
                         f"the run stopped before its first checkpoint or never started; "
                         f"start it again with --overwrite")


def _check_resume_steps(cfg: TrainConfig, done: int) -> None:
    """Refuse to resume with fewer total steps than the checkpoint already holds."""
    if cfg.steps < done:
        raise _bad("steps", cfg.steps, f"at least the {done} steps already done in "
                   f"{cfg.out!r} (steps is the run's total, not the steps to add)")


def _checkpoint_due(cfg: TrainConfig, t_last: float) -> bool:
    """Wall-time cadence: a run with an ``out`` checkpoints every ``checkpoint_minutes``."""
    return (cfg.out is not None and cfg.checkpoint_minutes > 0
            and time.time() - t_last >= 60.0 * cfg.checkpoint_minutes)


def _interrupted_summary(cfg, stopper, done, final_loss, ckpt_path, t_start) -> dict:
    return {"status": "interrupted", "signal": stopper.name, "arch": cfg.arch,
            "act": cfg.act, "steps": done, "final_loss": final_loss,
            "checkpoint": str(ckpt_path), "seconds": time.time() - t_start, "out": cfg.out}


def train(cfg: TrainConfig, *, stop_at: int | None = None) -> dict:
    """Train per ``cfg``; return a summary dict (see below).

    ``stop_at``: end this invocation (after checkpointing) once ``stop_at`` steps are
    done, as if the job were preempted; ``resume=True`` later continues the same run.
    The schedule still spans ``cfg.steps``.

    Summary keys: status, arch, act, steps (steps done), final_loss (loss of the last
    step), val_loss, val_<metric> (mean over ``eval_batches`` validation batches at the
    final parameters), layers ({tap: downstream path, w_mean_init, w_mean_final,
    w_mean_change, w_mean_se = init std/√numel, sparsity, sparsity_eps, spike_ratio,
    max_abs (validation, final params), grad_pos_mean, grad_pos_frac, frac_pos (last logged
    training step)}, one per entry of ``arch.downstream``: hidden matrices only), heads
    ({head path: the same drift fields, ``reads`` (the tap it reads or None) and that tap's
    statistics}, from ``arch.output_heads``: the zero-drift control, never averaged into
    layers), taps ({tap: validation forward and last-step gradient statistics} for every
    tap, whether or not a mapped matrix reads it), weights (final per-matrix stats),
    resumed_from, n_devices, n_processes, seconds, out.
    """
    cfg.validate()
    _check_out(cfg)
    t_start = time.time()
    sharding.maybe_initialize_distributed()
    main = jax.process_index() == 0
    arch = get_arch(cfg.arch)
    mcfg = model_config(arch, cfg)
    mcfg, ds = arch.data(cfg.data, mcfg, cfg.seed)
    if str(ds.meta.get("name", "")).endswith("synthetic-fallback"):
        print(f"driftlab train: --data {cfg.data}: no real speech installed; using "
              f"synthetic signals ({ds.meta['name']})", file=sys.stderr)
    mesh = sharding.make_mesh()
    sharding.check_batch_size(cfg.batch_size, mesh)
    rows = sharding.process_rows(cfg.batch_size)

    def get_batch(split, step):
        local = {k: v[rows] for k, v in ds.sample(split, step, cfg.batch_size, cfg.seed).items()}
        return sharding.shard_batch(local, mesh, cfg.batch_size)

    def get_train_batches(first, count):
        """Training batches first … first+count-1, in one transfer (prefetched)."""
        if ds.sample_steps is not None:  # one vectorized draw of all ``count`` batches
            stacked = ds.sample_steps("train", first, count, cfg.batch_size, cfg.seed)
            return sharding.shard_stacked({k: v[:, rows] for k, v in stacked.items()}, mesh,
                                          cfg.batch_size)
        local = [{k: v[rows] for k, v in ds.sample("train", s, cfg.batch_size, cfg.seed).items()}
                 for s in range(first, first + count)]
        return sharding.shard_batches(local, mesh, cfg.batch_size)

    key = jax.random.PRNGKey(cfg.seed)
    example = ds.sample("train", 0, cfg.batch_size, cfg.seed)
    # steps per prefetched chunk: up to BATCH_CHUNK, at most ~CHUNK_BYTES of batches
    batch_chunk = int(np.clip(CHUNK_BYTES // max(sum(np.asarray(v).nbytes
                                                     for v in example.values()), 1),
                              1, BATCH_CHUNK))
    fns = step_functions(arch, mcfg, cfg, mesh, example)
    eval_step = fns.eval_step
    init_params, opt_state = jax.device_get(fns.initialize(jax.random.fold_in(key, 0)))
    init_w = instrument.weight_matrices(init_params)
    pin_ref = sharding.replicate(pins.reference(init_params, cfg.pins, arch.name, mcfg,
                                                arch.downstream(mcfg)), mesh)
    # Init means through the same compiled reduction as the logged means, and changes
    # taken on the host, so that mean_change is exactly 0 at step 0.
    reader = host_read.HostReader(mesh)  # one transfer per dtype for a whole logged record
    init_means = {k: v["mean"] for k, v in
                  reader.floats(fns.weight_fn(sharding.replicate(init_params, mesh))).items()}

    def with_change(stats):
        """Per-matrix host stats with mean_change = mean - mean at init."""
        for k, v in stats.items():
            v["mean_change"] = v["mean"] - init_means[k]
        return stats

    def weight_fn(p):
        """Per-matrix stats of ``p`` (device scalars) -> host floats with mean_change."""
        return with_change(reader.floats(fns.weight_fn(p)))

    params = init_params

    out = Path(cfg.out) if cfg.out is not None else None
    ckpt_path = out / checkpoint.FILENAME if out else None
    identity = run_identity(cfg, mcfg)
    step0, resumed_from, last_ckpt, final_loss = 0, None, None, None
    if cfg.resume and checkpoint.exists(ckpt_path):
        params, opt_state, step0, _, extra = checkpoint.load_latest(ckpt_path, params,
                                                                    opt_state, identity)
        _check_resume_steps(cfg, step0)
        if "last_loss" in extra:
            final_loss = float(extra["last_loss"])
        resumed_from = last_ckpt = step0
    if out and main:
        out.mkdir(parents=True, exist_ok=True)
        if resumed_from is None:  # a fresh (or --overwrite) run: drop the old one's files
            for name in (METRICS_FILE, checkpoint.FILENAME, checkpoint.PREVIOUS, "summary.json"):
                (out / name).unlink(missing_ok=True)
        else:
            _truncate_metrics(out / METRICS_FILE, step0)
        conf = {"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(mcfg),
                "data": dict(ds.meta), "n_devices": int(mesh.devices.size),
                "n_processes": jax.process_count(), "jax_version": jax.__version__}
        (out / CONFIG_FILE).write_text(json.dumps(conf, indent=2, default=_json_default))

    params = sharding.replicate(params, mesh)
    opt_state = sharding.replicate(opt_state, mesh)

    def save(step):
        nonlocal last_ckpt
        if ckpt_path is not None:
            if main:
                checkpoint.save(ckpt_path, jax.tree_util.tree_map(sharding.to_host, params),
                                jax.tree_util.tree_map(sharding.to_host, opt_state), step,
                                np.asarray(jax.random.key_data(jax.random.fold_in(key, step))),
                                identity, {} if final_loss is None else {"last_loss": final_loss})
            last_ckpt = step
        nonlocal t_ckpt
        t_ckpt = time.time()

    t_ckpt = time.time()  # wall-time checkpoint cadence (cfg.checkpoint_minutes)
    stopper = interrupt.StopOnSignal(enabled=ckpt_path is not None)
    end = cfg.steps if stop_at is None else min(cfg.steps, int(stop_at))
    last_taps = None
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step0, disable=not (cfg.progress and main),
               desc=f"{cfg.arch}/{cfg.act}", unit="step")
    t_loop, steps_run = time.time(), 0
    # Finiteness is checked on the device (models.nonfinite); the host reads it only on
    # logged, checkpoint and last steps, so steps between them are dispatched without a stall.
    guard = sharding.replicate(nonfinite.init_guard(), mesh)

    record_like = record_layout = None  # a logged step's packed record: structure, layout

    def start_read(step, logs, guard, log_now):
        """Start the one device->host read of what step ``step`` left: its guard and loss,
        or on a logged step the packed record (``logs``) that the step itself computed."""
        if not log_now:
            return step, reader.start({"guard": guard, "loss": logs["loss"]}), False, False, steps_run
        return (step, reader.packed(logs, record_layout), True, bool(record_like["shift"]),
                steps_run)

    def finish_read(step, read, log_now, has_shift, steps_at):
        """Raise NonFiniteLossError if any step up to ``step`` was non-finite, else write
        the record of a logged ``step``."""
        nonlocal final_loss, last_taps
        host = read.floats()
        ok, bad_step, bad_loss = nonfinite.read_guard(host["guard"])
        if not ok:  # the device state is the state before bad_step; nothing of it saved
            write_record({"step": bad_step, "event": "non_finite", "loss": bad_loss})
            raise NonFiniteLossError(bad_step, bad_loss, last_ckpt, ckpt_path)
        final_loss = host["loss"]
        if not log_now:
            return
        last_taps = host["taps"]
        rate = steps_at / max(time.time() - t_loop, 1e-9)
        # the key order of the records written before (sorted scalars first)
        record = {"step": step, "grad_norm": host["grad_norm"], "loss": host["loss"],
                  "lr": host["lr"], **host["metrics"], "steps_per_s": rate,
                  "time": time.time() - t_start}
        if cfg.instrument:
            record["taps"] = host["taps"]
            record["weights"] = with_change(host["weights"])
            if has_shift:
                record["shift"] = host["shift"]
        if cfg.pins:
            record["pins"] = host["pins"]
        write_record(record)
        if not bar.disable:
            bar.set_postfix(loss=f"{record['loss']:.4f}", steps_s=f"{rate:.1f}")

    # metrics.jsonl stays open during the loop (one open per record cost more than the
    # record). It is flushed at every sync point (checkpoint, signal, last step) and at most
    # METRICS_FLUSH_SECONDS after a record, not per record (a flush cost ~60 µs, a third of
    # a small step). A crash loses at most the last second of records, all of them after
    # the last checkpoint, which a resumed run truncates and rewrites anyway.
    metrics_fh = open(out / METRICS_FILE, "a") if (out and main) else None
    t_flush = time.time()

    def write_record(record):
        if metrics_fh is not None:
            metrics_fh.write(json.dumps(record, default=_json_default) + "\n")
            if time.time() - t_flush >= METRICS_FLUSH_SECONDS:
                flush_records()

    def flush_records():
        nonlocal t_flush
        if metrics_fh is not None:
            metrics_fh.flush()
            t_flush = time.time()

    # Reads of logged steps are started right after the step and finished, in order, once
    # they would not wait (one process) or READ_LAG steps later (several processes: every
    # process then reads at the same steps); a checkpoint, signal or last step finishes all
    # of them at once, since it needs the state of that very step. The host thus never
    # waits for the device between sync points, and the device is never left idle while
    # the host writes a record. At most MAX_READ_LAG steps go by before a read is forced.
    poll = jax.process_count() == 1
    max_lag = READ_LAG if not poll else max(READ_LAG, MAX_READ_LAG)
    pending: collections.deque = collections.deque()  # start_read() results, oldest first
    # Batches are sampled and put on the devices a chunk of steps ahead.
    batches = prefetch.Prefetcher(get_train_batches, step0, end, chunk=batch_chunk,
                                  background=(jax.default_backend() != "cpu"
                                              if PREFETCH_THREAD is None else PREFETCH_THREAD))
    stopper.__enter__()  # SIGTERM/SIGINT -> checkpoint and return (models/interrupt.py)
    try:
        for step in range(step0, end):
            log_now = is_logged_step(step, cfg)
            done = step + 1
            batch = batches.get(step)
            args = (params, opt_state, batch, np.int32(step), guard, pin_ref)
            if log_now and record_like is None:  # one trace per train() call, no compiling;
                record_like = jax.eval_shape(fns.logged_record, *args)[2]  # before donation
                record_layout = reader.layout(record_like)
            # a logged step also returns its record's statistics, packed (Functions)
            step_fn = fns.logged_step if log_now else fns.guarded_plain_step
            params, opt_state, logs, guard = step_fn(*args)
            steps_run += 1
            # the last step, a checkpoint, a pending signal or a due wall-time checkpoint
            # needs the host state of this step now
            sync_now = (done == end or bool(cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
                        or stopper.signum is not None or _checkpoint_due(cfg, t_ckpt))
            if log_now or sync_now:
                pending.append(start_read(step, logs, guard, log_now))
            while pending and (sync_now or step - pending[0][0] >= max_lag
                               or (poll and step > pending[0][0] and pending[0][1].ready())):
                finish_read(*pending.popleft())
            bar.update(1)
            if not sync_now:
                continue
            flush_records()
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < end:
                save(done)
            elif _checkpoint_due(cfg, t_ckpt) and done < end:
                save(done)
            if stopper.signum is not None:
                end = done
                break
        if end > step0 or (ckpt_path is not None and not ckpt_path.exists()):
            save(end)
    finally:
        if metrics_fh is not None:
            metrics_fh.close()
        batches.close()
        bar.close()
        stopper.__exit__()

    done = max(end, step0)
    if stopper.signum is not None:  # preempted: checkpoint written, skip the evaluation
        return _interrupted_summary(cfg, stopper, done, final_loss, ckpt_path, t_start)

    summary = {"status": "ok" if done >= cfg.steps else "stopped", "arch": cfg.arch,
               "act": cfg.act, "steps": done, "final_loss": final_loss,
               "data": str(ds.meta.get("name", cfg.data))}
    val, val_taps = _validate(eval_step, params, get_batch, cfg.eval_batches, reader.floats)
    summary.update({f"val_{k}": v for k, v in val.items()})
    final_w = weight_fn(params)
    train_taps = last_taps if last_taps is not None else {}
    layers = {name: _layer_entry(path, init_w, init_means, final_w, val_taps.get(name, {}),
                                 train_taps.get(name, {}))
              for name, path in arch.downstream(mcfg).items()}
    heads = {path: {"reads": tap, **_layer_entry(path, init_w, init_means, final_w,
                                                   val_taps.get(tap, {}), train_taps.get(tap, {}))}
             for path, tap in arch.output_heads(mcfg).items()}
    taps = {name: {**stats, **{s: v for s, v in train_taps.get(name, {}).items()
                               if s in TRAIN_TAP_STATS}}
            for name, stats in val_taps.items()}
    summary.update(layers=layers, heads=heads, taps=taps, weights=final_w,
                   resumed_from=resumed_from, n_devices=int(mesh.devices.size), n_processes=jax.process_count(),
                   seconds=time.time() - t_start, out=str(out) if out else None)
    if out and main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    return summary
