"""Theorem-suite benchmark (``driftlab bench theory``): wall time of the whole suite, split
into XLA compilation and the rest (running the programs, host quadrature).

Compile seconds are JAX's own backend-compile events, summed over both of the runner's
threads (they may overlap the run), so compile + run can exceed the wall time. With the
persistent compilation cache on (the ``driftlab`` CLI enables it), a second run loads
programs instead of compiling them: the first run on a machine is the cold figure.
"""

from __future__ import annotations

import time

from jax import monitoring

from driftlab.montecarlo.checks import default_specs, run_checks

BUDGET_S = 60.0  # issue 11: the suite runs in about a minute on 2 cores
_compile_s = [0.0]


def _listener(event: str, duration: float, **_) -> None:
    if event.endswith("backend_compile_duration"):
        _compile_s[0] += duration


def run_bench(quick: bool = False, repeats: int = 1) -> list[dict]:
    """One suite run (``quick``: its first 6 checks); ``repeats`` is ignored (one run is the
    measurement; a repeat would only measure the in-process cache)."""
    specs = default_specs()[: 6 if quick else None]
    monitoring.register_event_duration_secs_listener(_listener)
    start_compile = _compile_s[0]
    t0 = time.perf_counter()
    results = run_checks(specs)
    wall = time.perf_counter() - t0
    compile_s = _compile_s[0] - start_compile
    passed = sum(r.passed for r in results)
    note = f"{passed}/{len(results)} checks passed; compile {compile_s:.1f} s, rest {max(0.0, wall - compile_s):.1f} s"
    return [{"name": f"theory suite wall ({len(specs)} checks)", "value": wall, "unit": "s",
             "baseline": "budget", "baseline_value": BUDGET_S, "ratio": wall / BUDGET_S, "target": None,
             "compile_s": compile_s, "run_s": wall - compile_s, "note": note},
            {"name": "theory suite compile vs run", "value": compile_s, "unit": "s compile",
             "baseline": "run", "baseline_value": max(wall - compile_s, 1e-9),
             "ratio": compile_s / max(wall - compile_s, 1e-9), "target": None, "note": note}]
