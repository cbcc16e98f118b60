"""``driftlab.tap``: the marker a user's model puts on each pre-activation (issue 33).

    h = jax.nn.relu(driftlab.tap("mlp0", p))      # identity form: tap(name, p) returns p
    h = driftlab.tap("mlp0", p, jax.nn.relu)      # activation form: tap(name, p, σ) returns σ(p)

Outside ``driftlab inspect`` both forms are plain values (p, or σ(p)): a model that calls
``tap`` runs unchanged. Under inspection a *handler* (installed with :func:`handling`) sees
every call and may add a zero probe to p (so one backward pass yields g = ∂ℓ/∂p), mark it
for the traced-program walk, or shift σ(p); the activation form is the built-in tap
protocol (models/base.Tap: ``tap(name, p, act)``) and lets the per-layer Stein prediction
use σ and σ′, which the identity form hides inside the user's code.

This module imports no JAX (``driftlab --help`` stays fast). The handler is read when
``apply`` is traced, so ``apply`` must not be wrapped in ``jax.jit`` by the user (driftlab
compiles it; a cached trace would not see the handler).
"""

from __future__ import annotations

import contextlib
import contextvars

_HANDLER: contextvars.ContextVar = contextvars.ContextVar("driftlab_tap_handler", default=None)


def tap(name: str, p, act=None):
    """Mark pre-activation ``p`` as tap ``name``; return p (``act`` None) or act(p).

    ``name`` must be a non-empty string, unique within one forward pass.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"driftlab.tap: name={name!r} invalid; allowed: a non-empty string")
    handler = _HANDLER.get()
    if handler is None:
        return p if act is None else act(p)
    return handler(name, p, act)


@contextlib.contextmanager
def handling(handler):
    """Within the block, every ``tap(name, p, act)`` returns ``handler(name, p, act)``."""
    token = _HANDLER.set(handler)
    try:
        yield
    finally:
        _HANDLER.reset(token)


__all__ = ["tap", "handling"]
