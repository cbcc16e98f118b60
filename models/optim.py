"""Optimizers and learning-rate schedules for the training engine (all from optax).

``make_schedule`` gives a linear warmup from 0 to ``lr`` over ``warmup_steps``, then
``constant``, ``cosine`` (to 0 at ``steps``) or ``linear`` (to 0 at ``steps``) decay.
``make_optimizer`` chains optional global-norm clipping with ``sgd``, ``momentum``
(SGD with heavy-ball momentum 0.9) or ``adamw``.

The schedule is a function of the optimizer's own step counter, which lives in the
optimizer state; a resumed run restores that state, so it continues on the same
schedule as an uninterrupted one.
"""

from __future__ import annotations

import optax

OPTIMIZERS = ("sgd", "momentum", "adamw")
SCHEDULES = ("constant", "cosine", "linear")
MOMENTUM = 0.9


def make_schedule(lr: float, steps: int, warmup_steps: int = 0, schedule: str = "constant"):
    """Learning rate as a function of the step: linear warmup, then the named decay."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} invalid; allowed: {', '.join(SCHEDULES)}")
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
                   grad_clip: float | None = None) -> optax.GradientTransformation:
    """The named optimizer on ``schedule``, after global-norm clipping when ``grad_clip`` is set.

    For ``sgd``/``momentum`` a non-zero ``weight_decay`` adds ``weight_decay · w`` to the
    gradient (L2); ``adamw`` uses decoupled decay.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} invalid; allowed: {', '.join(OPTIMIZERS)}")
    parts = []
    if grad_clip is not None:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if name == "adamw":
        parts.append(optax.adamw(schedule, weight_decay=weight_decay))
    else:
        if weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay))
        parts.append(optax.sgd(schedule, momentum=MOMENTUM if name == "momentum" else None))
    return optax.chain(*parts)
