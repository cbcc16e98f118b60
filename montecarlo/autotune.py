"""Choose inputs per draw B and draws per chunk for the best precision per second.

For an estimator averaging i.i.d. cluster values, SE² = v(B)/draws and the cost is
draws·t(B, chunk), where v(B) is the between-draw variance of a cluster value and
t the seconds per draw. Precision per second, 1/(relative SE²·s) = mean²/(v(B)·t(B, chunk)),
is therefore maximised by the (B, chunk) minimising v·t, whatever the total budget.

A pilot measures both on this device: for each candidate B and chunk it compiles the
kernel, times ``pilot_chunks`` chunks (after one warm-up call) and estimates v from their
cluster values. Variance depends on B only, so it is pooled over the chunks tried for
a B. The pilot's own cost is a few compiles and a few chunks per candidate; it pays
off for runs of more than a few seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import jax
import numpy as np

from driftlab.montecarlo import traced
from driftlab.montecarlo.estimators import Budget, chunk_for, compiled, grad_positive_cluster
from driftlab.montecarlo.traced import ShapeClass
from driftlab.theory.setting import BlockSetting

DEFAULT_INPUTS = (4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class PilotRow:
    """One candidate: B, chunk, seconds per draw t, between-draw variance v, and 1/(v·t)."""

    inputs: int
    chunk: int
    seconds_per_draw: float
    variance: float
    draws: int

    @property
    def score(self) -> float:
        return 1.0 / (self.variance * self.seconds_per_draw)


def _chunks_for(setting: BlockSetting, inputs: int) -> tuple[int, ...]:
    """Chunk sizes to try: the memory-bounded maximum and 1/8 of it (small chunks can be
    faster on CPU, where a chunk's arrays then stay in cache)."""
    top = chunk_for(setting, inputs)
    return tuple(sorted({max(1, top // 8), top}))


def _measure(cluster_fn, shape, params, inputs: int, chunk: int, dtype, key, pilot_chunks: int,
             min_pilot_draws: int):
    """(seconds per draw, cluster values) of one candidate, after a compile/warm-up call."""
    fn = compiled(cluster_fn, shape, inputs, dtype, chunk)
    fn(key, params).block_until_ready()
    n_calls = max(pilot_chunks, -(-min_pilot_draws // chunk))
    t0 = time.perf_counter()
    outs = [fn(jax.random.fold_in(key, i + 1), params) for i in range(n_calls)]
    outs = [np.asarray(o, np.float64) for o in outs]
    return (time.perf_counter() - t0) / (n_calls * chunk), np.concatenate(outs)


def pilot(setting: BlockSetting, inputs=DEFAULT_INPUTS, cluster_fn=grad_positive_cluster,
          pilot_chunks: int = 2, min_pilot_draws: int = 256, seed: int = 12345,
          dtype: str = "float32") -> list[PilotRow]:
    """Measure candidates for ``cluster_fn`` in ``setting`` (see module doc): every B at
    its memory-bounded chunk, then the other chunk sizes for the best B only (one compile
    per candidate; chunk size changes t, not v)."""
    if not inputs or any(not isinstance(b, int) or b < 1 for b in inputs):
        raise ValueError(f"inputs must be positive integers, got {inputs!r}")
    shape, dt = ShapeClass.of(setting), np.dtype(dtype)
    params = traced.setting_params(setting, dt)
    rows, values = [], {}
    for i, b in enumerate(sorted(set(inputs))):
        chunk = chunk_for(setting, b)
        t, v = _measure(cluster_fn, shape, params, b, chunk, dt, jax.random.key(seed + 1000 * i),
                        pilot_chunks, min_pilot_draws)
        values[b] = v
        rows.append(PilotRow(b, chunk, t, float(v.var(ddof=1)), v.size))
    best = max(rows, key=lambda r: r.score)
    for j, chunk in enumerate(c for c in _chunks_for(setting, best.inputs) if c != best.chunk):
        t, v = _measure(cluster_fn, shape, params, best.inputs, chunk, dt, jax.random.key(seed + 77 + j),
                        pilot_chunks, min_pilot_draws)
        values[best.inputs] = np.concatenate([values[best.inputs], v])  # v depends on B only: pool
        rows.append(PilotRow(best.inputs, chunk, t, 0.0, v.size))
    pooled = float(values[best.inputs].var(ddof=1))
    return [replace(r, variance=pooled, draws=values[best.inputs].size) if r.inputs == best.inputs else r
            for r in rows]


def choose_budget(setting: BlockSetting, budget: Budget, rows: list[PilotRow] | None = None,
                  **pilot_kw) -> tuple[Budget, list[PilotRow]]:
    """``budget`` re-expressed with the (B, chunk) of best measured precision per second at
    the same expected standard error: draws' = draws·v(B')/v(B) (draws kept when B was not
    piloted). Returns it and the pilot rows (pass ``rows`` to reuse a pilot)."""
    rows = rows or pilot(setting, **pilot_kw)
    best = max(rows, key=lambda r: r.score)
    ref = [r for r in rows if r.inputs == budget.inputs_per_draw]
    scale = best.variance / ref[0].variance if ref else 1.0
    draws = max(2, int(round(budget.draws * scale)))
    return replace(budget, inputs_per_draw=best.inputs, chunk=min(best.chunk, draws), draws=draws), rows
