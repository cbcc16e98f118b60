"""A median of noisy timing differences that is repeated until it is stable, or refused.

Some benchmark rows time a quantity as a difference of two wall times (the engine's steady
state is a full ``train()`` call minus the same call stopped early). On a loaded machine a
single difference can be zero or negative, and a rate 1/difference is then meaningless.
:func:`stable_median` draws differences until their median is positive and their spread
is small against it, and otherwise returns None with the reason, so that a benchmark
reports "too noisy" instead of a negative or infinite rate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

# Stable: median absolute deviation <= REL_SPREAD · median. 0.25 keeps a rate within about
# ±25% of the typical draw; tighter would rarely stop on a shared 2-core machine.
REL_SPREAD = 0.25
MIN_DRAWS = 2  # one draw has no spread to judge
EXTRA_DRAWS = 4  # draws beyond the requested repeats before giving up


@dataclass(frozen=True)
class Stable:
    """``value``: the median of ``draws`` (None when too noisy); ``note`` says which."""

    value: float | None
    draws: tuple
    note: str


def mad(values) -> float:
    """Median absolute deviation from the median."""
    m = statistics.median(values)
    return statistics.median(abs(v - m) for v in values)


def stable_median(draw: Callable[[], float], repeats: int, extra: int = EXTRA_DRAWS,
                  rel_spread: float = REL_SPREAD) -> Stable:
    """Call ``draw()`` at least max(repeats, MIN_DRAWS) and at most that + ``extra`` times;
    stop at the first point where median > 0 and MAD <= rel_spread·median."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} invalid; allowed: a positive integer")
    need = max(repeats, MIN_DRAWS)
    values: list[float] = []
    for _ in range(need + extra):
        values.append(float(draw()))
        if len(values) < need:
            continue
        med = statistics.median(values)
        if med > 0 and mad(values) <= rel_spread * med:
            return Stable(med, tuple(values), f"median of {len(values)} (MAD ≤ "
                                              f"{rel_spread:g}×median)")
    med = statistics.median(values)
    why = "median ≤ 0" if med <= 0 else f"MAD {mad(values):.3g} > {rel_spread:g}×median {med:.3g}"
    return Stable(None, tuple(values), f"too noisy: {len(values)} draws, {why}")
