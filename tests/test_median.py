"""median_abs_nonzero: the exact lower median of the non-zero |h|, on layouts that broke
the old strided subsample (issue 9: its stride aliased with the hidden width)."""

import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.arch import instrument
from driftlab.testing import assert_close


def strided_median_abs(h, samples: int = 4096):
    """The pre-issue-9 estimator: median of the non-zero |h| over h.ravel()[::size//4096]."""
    flat = np.abs(np.ravel(h))
    sub = flat[::max(1, flat.size // samples)]
    nz = np.sort(sub[sub > 0])
    return float(nz[(nz.size - 1) // 2]) if nz.size else 0.0


def lower_median_nonzero(h):
    nz = np.sort(np.abs(np.ravel(h))[np.ravel(h) != 0])
    return float(nz[(nz.size - 1) // 2]) if nz.size else 0.0


def _relu_acts(rows, width, seed=0):
    return np.maximum(np.random.default_rng(seed).standard_normal((rows, width)), 0).astype(np.float32)


def _layouts():
    """(name, array) pairs; every width is a multiple of the old stride size // 4096."""
    out = []
    h = _relu_acts(4096, 128)  # stride 128 = width: old samples dead unit 0 only -> 0
    h[:, 0] = 0.0
    out.append(("dead_unit0", h))
    h = _relu_acts(1024, 256, seed=1)  # stride 64: old samples units 0, 64, 128, 192
    h[:, ::64] *= 10.0  # every 64th unit 10× larger
    out.append(("every64th_10x", h))
    h = _relu_acts(2048, 512, seed=2)  # stride 256 = width/2: old samples units 0 and 256
    h[:, 0] = 0.0
    h[:, 256] *= 50.0
    out.append(("width_multiple_of_stride", h))
    h = _relu_acts(4096, 64, seed=3)  # stride 64 = width: old samples unit 0 only
    h[:, 0] *= 10.0
    out.append(("stride_equals_width", h))
    out.append(("all_zeros", np.zeros((64, 64), np.float32)))
    one = np.zeros((300, 70), np.float32)
    one[123, 45] = -3.5
    out.append(("one_nonzero", one))
    out.append(("gaussian_even_count", np.random.default_rng(4).standard_normal(10_000)
                .astype(np.float32)))
    return out


@pytest.mark.parametrize("name,h", _layouts(), ids=[n for n, _ in _layouts()])
def test_exact_lower_median_bit_for_bit(name, h):
    got = float(instrument.median_abs_nonzero(jnp.asarray(h)))
    assert got == lower_median_nonzero(h), name
    nz = np.abs(h[h != 0])
    if nz.size:
        # numpy's median averages the two middle order statistics for an even count;
        # the lower median is within half their gap of it.
        srt = np.sort(nz)
        gap = float(srt[nz.size // 2] - srt[(nz.size - 1) // 2])
        # tol: half the middle gap (lower vs averaged median) plus float32 rounding of got
        assert abs(got - float(np.median(nz))) <= gap / 2 + 1e-6 * got


@pytest.mark.parametrize("name", ["dead_unit0", "every64th_10x",
                                  "width_multiple_of_stride", "stride_equals_width"])
def test_old_strided_subsample_fails_the_same_check(name):
    """The planted error: the old estimator is off by > 10 % on each aliasing layout
    (the new one is exact), so the check above can fail."""
    h = dict(_layouts())[name]
    exact = lower_median_nonzero(h)
    assert abs(strided_median_abs(h) - exact) > 0.1 * exact


def test_spike_ratio_uses_the_exact_median():
    h = _relu_acts(1024, 256, seed=1)
    h[:, ::64] *= 10.0
    s = instrument.activation_stats(jnp.asarray(h), jnp.asarray(h), eps=1e-3)
    exact = lower_median_nonzero(h)
    assert float(s["median_abs"]) == exact
    assert_close(float(s["spike_ratio"]), h.max() / exact, dtype="float32")


def test_median_of_bfloat16_and_tiny_values():
    h = jnp.asarray([0.0, 1e-30, 2e-30, 3e-30, 0.0], jnp.float32)
    assert float(instrument.median_abs_nonzero(h)) == np.float32(2e-30)
    hb = jnp.asarray([[0.5, -1.5, 2.5]], jnp.bfloat16)
    assert float(instrument.median_abs_nonzero(hb)) == 1.5


@pytest.mark.parametrize("select", ["_select_bisect", "_select_radix"])
@pytest.mark.parametrize("name,h", _layouts(), ids=[n for n, _ in _layouts()])
def test_both_selections_are_exact(select, name, h, monkeypatch):
    """median_abs_nonzero picks bisection or radix select by size; each alone is exact."""
    chosen = getattr(instrument, select)
    monkeypatch.setattr(instrument, "_select_bisect", chosen)
    monkeypatch.setattr(instrument, "_select_radix", chosen)
    assert float(instrument.median_abs_nonzero(jnp.asarray(h))) == lower_median_nonzero(h)


def test_size_threshold_picks_each_selection():
    small = np.ones(instrument.RADIX_SELECT_MIN_SIZE - 1, np.float32)
    large = np.ones(instrument.RADIX_SELECT_MIN_SIZE, np.float32)
    large[::3] = 2.0
    assert float(instrument.median_abs_nonzero(small)) == 1.0
    assert float(instrument.median_abs_nonzero(large)) == lower_median_nonzero(large)
