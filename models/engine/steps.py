"""``build_steps``: the compiled pieces of a training run (:class:`Functions`).

One step computes the loss, the gradients, the optimizer update and (``instrument=True``,
on logged steps) per-tap statistics from a zero probe added to each pre-activation
(models/arch/instrument.py), all in one forward/backward pass; steps that are not logged run
the same update without them. Every step runs under the on-device non-finite guard
(models/engine/nonfinite.py): no host sync per step.

Mixed precision (``dtype="bfloat16"``): master weights and optimizer state stay float32;
the forward/backward pass runs on bfloat16 copies of the weights and float inputs;
outputs are cast back to float32 before the loss.

Seed ensembles (``members=S``): the same functions over a leading replica axis of length
S on params, optimizer state, guard, pin references and batches (the step number is
shared), one compiled program for all members: ``jax.vmap`` (the members' arithmetic
batched) or ``lax.map`` (a loop over the members inside the program, each member running
the single-run computation); :data:`MEMBER_LOOP` picks. Member i computes exactly the
single-run function of its own slice; XLA may fuse or order reductions differently in
the ensemble's program, so members equal single runs to float32 rounding, not bit for
bit (tests/test_engine_ensemble.py).
The replica axis is sharded over the devices when S divides by their number
(no communication between members), otherwise the batch axis is, as in a single run.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from driftlab.models.engine import host_read, nonfinite, pins, sharding

from driftlab.models.arch import instrument
from driftlab.models.engine.optim import arch_routes, make_optimizer, make_schedule
from driftlab.models.engine.train_config import TrainConfig


def _cast_floats(tree, dtype):
    """Cast floating leaves of a pytree to ``dtype``; leave integer leaves alone."""
    def cast(x):
        if isinstance(x, jax.ShapeDtypeStruct):  # abstract values (eval_shape)
            floating = jnp.issubdtype(x.dtype, jnp.floating)
            return jax.ShapeDtypeStruct(x.shape, dtype if floating else x.dtype)
        x = x if hasattr(x, "dtype") else np.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, tree)


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
    """The compiled pieces of a run (shared by runs that differ only in seed/out/logging).
    With ``members`` set, every function takes and returns a leading replica axis."""

    schedule: Callable
    tx: optax.GradientTransformation
    initialize: Callable  # key(s) -> (fp32 params, opt_state)
    train_step: Callable  # (params, opt_state, batch, step[, pin_ref]) -> (params, opt_state, logs, finite)
    plain_step: Callable  # the same update without tap statistics (for steps that are not logged)
    eval_step: Callable  # (params, batch) -> (loss, metrics, tap stats without gradients)
    weight_fn: Callable  # params -> per-matrix weight statistics (mean, std, frac_neg)
    # plain_step under models.nonfinite.guarded: (params, opt_state, batch, step, guard,
    # pin_ref) -> (params, opt_state, logs, guard); what the loop runs between logged steps
    guarded_plain_step: Callable
    # What the loop runs on logged steps: the guarded instrumented step that also takes the
    # weight statistics of the parameters it is given and returns, instead of the logs, the
    # record's statistics packed for one host read (models/engine/host_read.py):
    # (params, opt_state, batch, step, guard, pin_ref) -> (params, opt_state, packed, guard)
    logged_step: Callable
    # the unpacked record of logged_step (for its structure, via jax.eval_shape)
    logged_record: Callable
    # k guarded plain steps in one program (lax.scan): (params, opt_state, batches (a tuple
    # of k step batches), step, guard, pin_ref) -> (params, opt_state, {"loss": the last
    # step's loss}, guard); jit compiles it once per k (see :func:`scan_plain`)
    plain_steps: Callable
    members: int | None = None  # replica-axis length of a seed ensemble (None: single run)
    state_sharding: object = None  # where params, opt_state, guard, pin_ref live
    batch_spec: object = None  # PartitionSpec of one step's batch


# Fields of TrainConfig that change the compiled step (seed, out, logging do not).
_STEP_FIELDS = ("steps", "batch_size", "lr", "optimizer", "weight_decay", "warmup_steps",
                "schedule", "grad_clip", "dtype", "eps", "instrument", "act_l1", "pins",
                "warmdown_steps", "adam_beta2", "muon_lr_ratio", "muon_scale", "muon_momentum",
                "muon_ns_dtype", "warmdown_end")
_CACHE: dict = {}
# How an ensemble's program runs its members: "vmap", "map" (lax.map), or None: "map" on
# the CPU backend when each device holds whole members (one device, or the replica axis
# split evenly over the devices), else "vmap". With several devices, "map" runs as a
# shard_map: each device maps over its own members, so the step has no collective at all
# and each member is computed exactly as by a single run on one device (bit for bit; a
# vmapped member differs from it by float32 rounding). XLA:CPU (jaxlib 0.10) runs a
# vmapped step slower than the same step one member at a time: a GPT-nano 4x64 step for 4
# members took 1.11 s vmapped, 0.47 s under lax.map, 0.58 s as 4 single-run steps; MLP
# 3x128 for 8 members 4.6, 4.0 and 5.3 ms (docs/training.md).
MEMBER_LOOP = None
MEMBER_LOOPS = ("vmap", "map")


def member_loop(mesh, members: int | None = None) -> str:
    """The member loop in force on ``mesh`` for ``members`` (see :data:`MEMBER_LOOP`)."""
    whole = mesh.devices.size == 1 or (members is not None and members % mesh.devices.size == 0)
    mode = MEMBER_LOOP or ("map" if jax.default_backend() == "cpu" and whole else "vmap")
    if mode not in MEMBER_LOOPS:
        raise ValueError(f"steps.MEMBER_LOOP={MEMBER_LOOP!r} invalid; allowed: None, "
                         f"{', '.join(map(repr, MEMBER_LOOPS))}")
    return mode


def step_functions(arch, mcfg, cfg: TrainConfig, mesh, example: dict,
                   members: int | None = None) -> Functions:
    """Jitted functions for this run, reused across ``train`` calls in one process when
    the architecture, model config, step-relevant fields, mesh, batch shapes and ensemble
    size agree (sweeps and tests then compile once)."""
    loop = member_loop(mesh, members) if members is not None else None
    key = (arch.name, mcfg, tuple(getattr(cfg, f) for f in _STEP_FIELDS), mesh, members, loop,
           tuple((k, np.shape(v), np.asarray(v).dtype.str) for k, v in sorted(example.items())))
    try:
        hash(key)
    except TypeError:  # an unhashable model config: build afresh
        return build_steps(arch, mcfg, cfg, mesh, example, members)
    if key not in _CACHE:
        if len(_CACHE) >= 16:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = build_steps(arch, mcfg, cfg, mesh, example, members)
    return _CACHE[key]


def _forward_fns(arch, mcfg, cfg: TrainConfig):
    """(forward(tap, params, batch) -> (loss, metrics), objective(loss, metrics))."""
    compute = jnp.dtype(cfg.dtype)
    mixed = cfg.dtype != "float32"

    def forward(tap, params, batch):
        cbatch = batch
        if mixed:
            params, cbatch = _cast_floats(params, compute), _cast_floats(batch, compute)
        if cfg.act_l1:
            tap = _L1Tap(tap)
        outputs = _cast_floats(arch.apply(params, cbatch, mcfg, tap), jnp.float32)
        value, metrics = arch.loss(outputs, batch, mcfg)
        if cfg.act_l1:
            metrics = {**metrics, "act_l1_penalty": sum(tap.l1) / len(tap.l1)}
        return value, metrics

    def objective(value, metrics):
        """The training loss: the model's loss plus the L1 activation penalty (validation
        reports the model's loss alone)."""
        return value + cfg.act_l1 * metrics["act_l1_penalty"] if cfg.act_l1 else value

    return forward, objective


def _gradients(forward, objective, cfg, shapes, reader_map, params, batch, pin_ref,
               instrumented):
    """(value, metrics, grads, tap stats, reader-input means, shift) of one batch."""
    if not instrumented:
        def plain(params_, batch_):
            tap = pins.ReaderInputs(lambda _n, p, act: act(p))
            value_, metrics_ = forward(tap, params_, batch_)
            return objective(value_, metrics_), (metrics_, tap.means)
        (value, (metrics, u_means)), grads = jax.value_and_grad(plain, has_aux=True)(
            params, batch)
        return value, metrics, grads, {}, u_means, {}

    def loss_fn(params_, probes, batch_):
        rec = instrument.TapRecorder(probes)
        tap = pins.ReaderInputs(rec)  # ū of each reading matrix's input (models/engine/pins.py)
        value_, metrics_ = forward(tap, params_, batch_)
        acts_ = instrument.tap_stats(rec.records, None, cfg.eps, cfg.batch_size)
        ps_ = {k: jax.lax.stop_gradient(p) for k, (p, _) in rec.records.items()}
        return objective(value_, metrics_), (metrics_, acts_, ps_, tap.means)

    probes = instrument.zero_probes(shapes)
    (value, (metrics, acts, ps, u_means)), (grads, gprobes) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(params, probes, batch)
    for name in acts:
        acts[name].update(instrument.gradient_stats(ps[name], gprobes[name], cfg.batch_size))
    shift = ({} if pin_ref is None
             else pins.shift_decomposition(params, ps, u_means, pin_ref, reader_map))
    return value, metrics, grads, acts, u_means, shift


def _make_train_step(arch, mcfg, cfg, schedule, tx, shapes):
    """train_step(params, opt_state, batch, step, pin_ref=None, instrumented=...)."""
    forward, objective = _forward_fns(arch, mcfg, cfg)
    reader_map = pins.readers(arch.name, mcfg)

    def train_step(params, opt_state, batch, step, pin_ref=None, instrumented=cfg.instrument):
        value, metrics, grads, acts, u_means, shift = _gradients(
            forward, objective, cfg, shapes, reader_map, params, batch, pin_ref, instrumented)
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

    return train_step, eval_step


def _logged_record_fn(cfg, train_step):
    """logged_record(params, opt_state, batch, step, guard, *extra) -> (params, opt_state,
    record, guard): the guarded instrumented update and the statistics of a logged record
    (weights: of ``params``, before the update)."""
    guarded_train = nonfinite.guarded(train_step)

    def logged_record(params, opt_state, batch, step, guard, *extra):
        wstats = instrument.weight_stats(params) if cfg.instrument else None
        new_params, new_opt, logs, guard = guarded_train(params, opt_state, batch, step,
                                                         guard, *extra)
        record = {"guard": guard, "loss": logs["loss"], "grad_norm": logs["grad_norm"],
                  "lr": logs["lr"], "metrics": logs["metrics"], "taps": logs["taps"],
                  "shift": logs["shift"], "pins": logs["pins"], "weights": wstats}
        return new_params, new_opt, record, guard

    return logged_record


def member_sharding(mesh, members: int | None) -> NamedSharding:
    """Where a run's state lives: replicated for a single run; for an ensemble, the
    replica axis split over the devices when it divides evenly, else replicated."""
    if members is not None and members % mesh.devices.size == 0:
        return NamedSharding(mesh, P(sharding.AXIS))
    return sharding.replicated(mesh)


def build_steps(arch, mcfg, cfg: TrainConfig, mesh, example: dict,
                members: int | None = None) -> Functions:
    """Build the jitted functions of :class:`Functions` (see there)."""
    schedule = make_schedule(cfg.lr, cfg.steps, cfg.warmup_steps, cfg.schedule,
                             cfg.warmdown_steps, cfg.warmdown_end)
    tx = make_optimizer(cfg.optimizer, schedule, cfg.weight_decay, cfg.grad_clip,
                        cfg.adam_beta2, cfg.muon_lr_ratio, routes=arch_routes(arch, mcfg),
                        muon_scale=cfg.muon_scale, muon_momentum=cfg.muon_momentum,
                        muon_ns_dtype=cfg.muon_ns_dtype)

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
    train_step, eval_step = _make_train_step(arch, mcfg, cfg, schedule, tx, shapes)
    # Tap statistics are only read on logged steps, so other steps run the plain update
    # (compiled lazily, on first use): instrumentation then costs ~1/log_every of a step.
    plain_step = partial(train_step, instrumented=False)
    logged_record = _logged_record_fn(cfg, train_step)
    fns = dict(initialize=initialize, train_step=train_step, plain_step=plain_step,
               eval_step=eval_step, weight_fn=instrument.weight_stats,
               guarded_plain_step=nonfinite.guarded(plain_step), logged_record=logged_record)
    if members is not None:
        fns = _over_members(fns, member_loop(mesh, members), mesh, members)
    return _jitted(fns, schedule, tx, mesh, members)


def scan_plain(guarded_plain_step):
    """k guarded plain steps ``step, step+1, …`` as one ``lax.scan`` (one dispatch instead
    of k). Each iteration is exactly the one-step program's computation on that step's
    batch and number, so the state equals k single dispatches bit for bit; the per-step
    logs nobody reads are dropped (the loop reads a plain step only at a sync point, and
    then only its loss, which is the last one here), and the guard still records the first
    non-finite step's own number."""

    def plain_steps(params, opt_state, batches, step, guard, pin_ref=None):
        xs = jax.tree_util.tree_map(lambda *b: jnp.stack(b), *batches)
        offsets = jnp.arange(len(batches), dtype=jnp.int32)

        def body(carry, x):
            batch, offset = x
            p, o, g = carry
            p, o, logs, g = guarded_plain_step(p, o, batch, step + offset, g, pin_ref)
            return (p, o, g), logs["loss"]

        (params, opt_state, guard), losses = jax.lax.scan(
            body, (params, opt_state, guard), (xs, offsets))
        return params, opt_state, {"loss": losses[-1]}, guard

    return plain_steps


def _map_members(f, in_axes=0):
    """``jax.vmap(f, in_axes)`` (axes 0 or None only) as a ``lax.map`` over the members:
    the arguments with axis None are shared, the others sliced per member."""
    def mapped(*args):
        axes = (in_axes,) * len(args) if not isinstance(in_axes, tuple) else in_axes
        axes = axes + (0,) * (len(args) - len(axes))  # trailing defaults (pin_ref) map
        sliced = tuple(a for a, ax in zip(args, axes) if ax == 0)

        def one(xs):
            it = iter(xs)
            return f(*(next(it) if ax == 0 else a for a, ax in zip(args, axes)))

        return jax.lax.map(one, sliced)

    return mapped


def _shard_members(mesh):
    """``_map_members`` with the replica axis split over the devices of ``mesh``: each
    device maps over its own members (a shard_map), so no member's step crosses devices."""
    def over(f, in_axes=0):
        mapped = _map_members(f, in_axes)

        def sharded(*args):
            axes = (in_axes,) * len(args) if not isinstance(in_axes, tuple) else in_axes
            axes = axes + (0,) * (len(args) - len(axes))
            specs = tuple(P(sharding.AXIS) if ax == 0 else P() for ax in axes)
            return jax.shard_map(mapped, mesh=mesh, in_specs=specs, out_specs=P(sharding.AXIS),
                                 check_vma=False)(*args)

        return sharded

    return over


def _over_members(fns: dict, loop: str, mesh=None, members: int | None = None) -> dict:
    """Every function over a leading replica axis (``loop``: "vmap" or "map", see
    :data:`MEMBER_LOOP`); the step number is shared."""
    over = jax.vmap if loop == "vmap" else _map_members
    if loop == "map" and mesh is not None and mesh.devices.size > 1 \
            and member_sharding(mesh, members).spec == P(sharding.AXIS):
        over = _shard_members(mesh)
    step_axes = (0, 0, 0, None, 0, 0)  # params, opt_state, batch, step, guard, pin_ref
    v = dict(fns)
    v["initialize"] = over(fns["initialize"])
    v["train_step"] = over(fns["train_step"], in_axes=(0, 0, 0, None, 0))
    v["plain_step"] = over(fns["plain_step"], in_axes=(0, 0, 0, None, 0))
    v["eval_step"] = over(fns["eval_step"])
    v["weight_fn"] = over(fns["weight_fn"])
    v["guarded_plain_step"] = over(fns["guarded_plain_step"], in_axes=step_axes)
    v["logged_record"] = over(fns["logged_record"], in_axes=step_axes)
    return v


def _jitted(fns: dict, schedule, tx, mesh, members) -> Functions:
    state = member_sharding(mesh, members)
    rep = sharding.replicated(mesh)
    # Donating params/opt_state halves peak memory on accelerators. The CPU backend honors
    # donation too (jaxlib 0.10: the donated input is deleted, no warning), but memory is
    # not what limits a CPU run, and a donated input cannot be read again, so on CPU the
    # engine keeps it off: bench and test code may reuse a step's inputs (not measured
    # for speed; issue 34).
    donate = (0, 1) if jax.default_backend() != "cpu" else ()
    logged_record = fns["logged_record"]

    def logged_step(*args):
        new_params, new_opt, record, guard = logged_record(*args)
        if members is None:
            return new_params, new_opt, host_read.pack(record), guard
        # each member's record packed in its own row, where the member lives: no
        # collective (replicating the packed record took one all-gather per leaf, ~150 per
        # logged step on two devices); the host reads the rows in tree order
        return new_params, new_opt, jax.vmap(host_read.pack)(record), guard

    step_out = (state, state, state, state)
    jit_step = lambda f, out=step_out: jax.jit(f, out_shardings=out, donate_argnums=donate)  # noqa: E731
    # a batch is split on its batch axis, or for an ensemble with the replica axis split
    # over the devices, on that axis (each device trains whole members)
    split_members = members is not None and state.spec == P(sharding.AXIS)
    batch_spec = P(None, sharding.AXIS) if members is not None and not split_members \
        else P(sharding.AXIS)
    return Functions(schedule, tx, jax.jit(fns["initialize"]),
                     jit_step(fns["train_step"]), jit_step(fns["plain_step"]),
                     jax.jit(fns["eval_step"], out_shardings=state),
                     jax.jit(fns["weight_fn"], out_shardings=state),
                     jit_step(fns["guarded_plain_step"]),
                     jit_step(logged_step, (state, state, rep if members is None else state,
                                            state)),
                     logged_record, jit_step(scan_plain(fns["guarded_plain_step"])),
                     members, state, batch_spec)
