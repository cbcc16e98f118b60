"""``driftlab.inspect``: the Python call of ``driftlab inspect`` (issue 33; docs/your-model.md).

Kept apart from driftlab/api.py so that importing driftlab starts no JAX: the work is in
reports/inspect.py, imported when the function is called.
"""

from __future__ import annotations


def inspect(source, seeds: int = 64, samples: int = 32, optimizer: str = "sgd", lr: float = 1e-2,
            drift_steps: int = 10, steps: int = 0, probes: int = 4, pairs: int = 4,
            alpha: float = 0.01, margin: float = 0.01, progress=None) -> list[dict]:
    """Rows answering "does my architecture drift?" for a model file path, a module, or
    ``"builtin:NAME"``: per tap the measured E[∂ℓᵢ/∂p | p > 0] at init (ratio over units,
    examples and ``seeds`` init seeds; clustered SE), the per-layer Stein prediction with its
    Gauss–Newton/curvature split (or why it does not apply), and per reading matrix the
    first-step drift prediction against the measured drift over ``drift_steps`` steps of
    ``optimizer`` at ``lr``; with ``steps`` the trajectory rows. See reports/inspect.py for
    every formula. Bad input raises ValueError (models/user_model.InspectError) in one line."""
    from driftlab.reports.inspect import inspect as run

    return run(source, seeds=seeds, samples=samples, optimizer=optimizer, lr=lr,
               drift_steps=drift_steps, steps=steps, probes=probes, pairs=pairs, alpha=alpha,
               margin=margin, progress=progress)


__all__ = ["inspect"]
