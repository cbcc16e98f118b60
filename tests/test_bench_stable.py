"""The steady-state rule (driftlab/bench/stable.py) on scripted draws: no timing, so no
dependence on machine load. A median <= 0 or a wide spread is "too noisy", never a rate."""

import itertools

import pytest

from driftlab.bench.stable import MIN_DRAWS, stable_median
from driftlab.bench import timing
from driftlab.bench.cli import format_rows
from driftlab.testing import assert_close


def _draws(values):
    it = iter(values)
    return lambda: next(it)


def test_stable_draws_stop_early():
    res = stable_median(_draws([1.0, 1.1, 9.0]), repeats=1)
    assert_close(res.value, 1.05)
    assert len(res.draws) == MIN_DRAWS


def test_negative_or_zero_differences_are_too_noisy():
    # The case seen under load: the stopped call took longer than the full one.
    res = stable_median(_draws(itertools.cycle([-0.002, 0.001, -0.003])), repeats=1)
    assert res.value is None and res.note.startswith("too noisy") and "median ≤ 0" in res.note
    res = stable_median(_draws(itertools.repeat(0.0)), repeats=3)
    assert res.value is None


def test_wide_spread_is_too_noisy_after_the_extra_draws():
    res = stable_median(_draws(itertools.cycle([1.0, 5.0, 9.0])), repeats=2, extra=3)
    assert res.value is None and len(res.draws) == 5 and "MAD" in res.note


def test_a_noisy_row_has_no_rate_and_prints():
    row = timing.row("engine loop", None, "steps/s", "bare", 100.0, 0.95, "too noisy: 6 draws")
    assert row["value"] is None and row["ratio"] is None
    assert "too noisy" in format_rows([row])
    with pytest.raises(ValueError, match="rate"):
        timing.row("engine loop", -8547.0, "tokens/s", "bare", 100.0)
