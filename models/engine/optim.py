"""Optimizers and learning-rate schedules for the training engine (all from optax).

``make_schedule`` gives a linear warmup from 0 to ``lr`` over ``warmup_steps``, then
``constant``, ``cosine`` (to 0 at ``steps``) or ``linear`` (to 0 at ``steps``) decay.
``wcd`` is warmup–constant–warmdown (the paper's code, modded-nanogpt's ``get_lr``): the
multiplier is (t+1)/W for t < W, 1 until E − D, then (E − t)/D, reaching 0 at t = E and
staying 0 until the run's end S (E = S unless ``warmdown_end`` is given: the paper's code as
it runs has E = 5800 of S = 7168 steps, models/engine/recipes.py).
``make_optimizer`` chains optional global-norm clipping with ``sgd``, ``momentum``
(SGD with heavy-ball momentum 0.9), ``adamw``, or ``muon``: per-parameter routing by the
architecture's parameter table (each entry's ``group``, models/arch/params.py; :func:`arch_routes`)
or, for an architecture without one, the rule table :data:`MUON_ROUTES` (first match of
path regex and rank wins) between Muon
(models/engine/muon.py, at ``muon_lr_ratio`` × the schedule; its scale rule, momentum form and
Newton–Schulz precision by name) and AdamW (β = 0.9/``adam_beta2``).

The schedule is a function of the optimizer's own step counter, which lives in the
optimizer state; a resumed run restores that state, so it continues on the same
schedule as an uninterrupted one.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from driftlab.models.engine.muon import muon
from driftlab.names import MOMENTUM, OPTIMIZERS, SCHEDULES  # noqa: F401 (declared in driftlab/names.py)



class Route(NamedTuple):
    """Parameters whose "/"-joined path matches ``pattern`` (re.search) and whose rank is
    ``rank`` (None: any rank) go to the optimizer labelled ``label``."""

    pattern: str
    rank: int | None
    label: str


# The routing of architectures without a parameter table (MP-SENet) and of callers
# that name no architecture (first match wins); tests/test_param_tables.py keeps it equal
# to the tables' groups for GPT, MLP, ViT and ResNet (all AdamW). Muon gets the 2-D
# matrices inside transformer blocks (GPT: attn/w_q..w_o, mlp/w_in, w_out; ViT: the same
# blocks) and the MLP's hidden-to-hidden matrices (layer1/w, …: the MLP's analogue of
# block matrices); embeddings, the (tied) head, the MLP's input layer, norms, biases and
# 4-D convolutions go to AdamW, as in the paper's code.
MUON_ROUTES = (
    Route(r"^block\d+/", 2, "muon"),
    Route(r"^layer[1-9]\d*/w$", 2, "muon"),
    Route(r"", None, "adamw"),
)


def table_routes(table) -> tuple[Route, ...]:
    """The routing of a parameter table (models/params.ParamTable): one exact-path route
    per parameter to its declared ``group``, and no catch-all, so a parameter the table
    does not declare is an error rather than silently AdamW."""
    return tuple(Route(f"^{re.escape(p.path)}$", None, p.group) for p in table)


def arch_routes(arch, mcfg) -> tuple[Route, ...]:
    """The routing of ``arch`` (models/base.Arch) at config ``mcfg``: its parameter
    table's groups when it declares one, else :data:`MUON_ROUTES`."""
    return MUON_ROUTES if arch.params is None else table_routes(arch.params(mcfg))


def route_labels(params, routes=MUON_ROUTES):
    """The label tree of ``params`` (same structure, a route label per leaf)."""
    def label(path, leaf):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        for r in routes:
            if re.search(r.pattern, name) and (r.rank is None or jnp.ndim(leaf) == r.rank):
                return r.label
        raise ValueError(f"no route matches parameter {name!r} (rank {jnp.ndim(leaf)}); "
                         f"add a catch-all Route('', None, label)")
    return jax.tree_util.tree_map_with_path(label, params)


def wcd_schedule(lr: float, steps: int, warmup_steps: int, warmdown_steps: int,
                 warmdown_end: int | None = None):
    """η_t = lr · clip(min((t+1)/W, 1, (E − t)/D), 0, 1) with W = warmup, D = warmdown,
    E = ``warmdown_end`` (None: S = steps); terms with W = 0 or D = 0 dropped; η_t = 0 for
    t >= E. This is the paper's ``get_lr_multiplier`` (step clamped to E) when W + D <= E."""
    end = steps if warmdown_end is None else warmdown_end
    if not warmup_steps + warmdown_steps <= end <= steps:
        raise ValueError(f"warmup_steps + warmdown_steps = {warmup_steps + warmdown_steps} "
                         f"invalid; allowed: <= warmdown_end = {end} <= steps = {steps}")

    def schedule(t):
        t = jnp.asarray(t, jnp.float32)
        mult = jnp.ones_like(t)
        if warmup_steps > 0:
            mult = jnp.minimum(mult, (t + 1) / warmup_steps)
        if warmdown_steps > 0:
            mult = jnp.minimum(mult, (end - t) / warmdown_steps)
        elif end < steps:  # no warmdown: a step down to 0 at E
            mult = jnp.where(t < end, mult, 0.0)
        return lr * jnp.clip(mult, 0.0, 1.0)

    return schedule


def make_schedule(lr: float, steps: int, warmup_steps: int = 0, schedule: str = "constant",
                  warmdown_steps: int = 0, warmdown_end: int | None = None):
    """Learning rate as a function of the step: linear warmup, then the named decay
    (``wcd``: see :func:`wcd_schedule`; ``warmdown_steps`` and ``warmdown_end`` are used by
    it alone)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} invalid; allowed: {', '.join(SCHEDULES)}")
    if schedule == "wcd":
        return wcd_schedule(lr, steps, warmup_steps, warmdown_steps, warmdown_end)
    decay_steps = max(steps - warmup_steps, 1)
    if schedule == "constant":
        main = optax.constant_schedule(lr)
    elif schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps)
    else:
        main = optax.linear_schedule(lr, 0.0, decay_steps)
    if warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(0.0, lr, warmup_steps)
    return optax.join_schedules([warm, main], [warmup_steps])


def make_optimizer(name: str, schedule, weight_decay: float = 0.0,
                   grad_clip: float | None = None, adam_beta2: float = 0.999,
                   muon_lr_ratio: float = 0.1, routes=MUON_ROUTES, muon_scale: str = "jordan",
                   muon_momentum: str = "ema", muon_ns_dtype: str = "float32"
                   ) -> optax.GradientTransformation:
    """The named optimizer on ``schedule``, after global-norm clipping when ``grad_clip`` is set.

    For ``sgd``/``momentum`` a non-zero ``weight_decay`` adds ``weight_decay · w`` to the
    gradient (L2); ``adamw`` uses decoupled decay. ``muon``: :func:`route_labels` sends each
    parameter to Muon (lr = ``muon_lr_ratio`` · schedule, decoupled decay) or to AdamW
    (β₁ = 0.9, β₂ = ``adam_beta2``) through one ``optax.multi_transform``; Muon's
    ``scaling``/``momentum``/``ns_dtype`` are ``muon_scale``/``muon_momentum``/``muon_ns_dtype``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} invalid; allowed: {', '.join(OPTIMIZERS)}")
    parts = []
    if grad_clip is not None:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if name == "adamw":
        parts.append(optax.adamw(schedule, b2=adam_beta2, weight_decay=weight_decay))
    elif name == "muon":
        muon_part = muon(lambda t: muon_lr_ratio * schedule(t), weight_decay=weight_decay,
                         scaling=muon_scale, momentum=muon_momentum, ns_dtype=muon_ns_dtype)
        parts.append(optax.multi_transform(
            {"muon": muon_part,
             "adamw": optax.adamw(schedule, b2=adam_beta2, weight_decay=weight_decay)},
            lambda params: route_labels(params, routes)))
    else:
        if weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay))
        parts.append(optax.sgd(schedule, momentum=MOMENTUM if name == "momentum" else None))
    return optax.chain(*parts)
