"""Compile once per shape class; traced activations match the registry; the B/chunk pilot;
the persistent compilation cache location."""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab import compilation_cache
from driftlab.activations import parse_activation
from driftlab.montecarlo import autotune, estimators, traced
from driftlab.montecarlo.estimators import Budget
from driftlab.montecarlo.traced import ShapeClass
from driftlab.theory.setting import BlockSetting

SMALL = BlockSetting(d_in=8, width=16, d_out=4)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "tanh", "relu2", "gelu2", "identity",
                                  "clipped_relu2:1", "clipped_gelu2:0.5"])
def test_traced_activation_matches_registry_value_and_slope(name):
    p = jnp.linspace(-3.0, 3.0, 601)
    params = traced.setting_params(replace(SMALL, act=name), jnp.float32)
    h, slope = jax.jit(traced.value_and_slope)(params, p)
    act = parse_activation(name)
    h_ref, slope_ref = jax.jvp(act, (p,), (jnp.ones_like(p),))
    # The helper's float32 atol (scaled by max|h| ≈ 9 on [−3, 3]) would be looser near 0.
    # tol: the same float32 elementwise formula, traced vs registry: a couple of roundings (8 ε)
    np.testing.assert_allclose(h, h_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(slope, slope_ref, rtol=1e-6, atol=1e-7)  # tol: the same
    # tol: the same
    np.testing.assert_allclose(jax.jit(traced.activation)(params, p), h_ref, rtol=1e-6, atol=1e-7)


def test_one_compiled_program_serves_every_setting_of_a_shape_class():
    budget = Budget(draws=256, inputs_per_draw=8, chunk=128)
    variants = [replace(SMALL, act=a) for a in ("relu", "gelu", "clipped_relu2:1", "clipped_relu2:4")]
    variants += [replace(SMALL, gain=1.5), replace(SMALL, w2_mean=0.05), replace(SMALL, target_coupling=2.0)]
    means = [estimators.estimate_grad_positive(s, budget).mean for s in variants]
    fn = estimators.compiled(estimators.grad_positive_cluster, ShapeClass.of(SMALL), 8, jnp.dtype("float32"), 128)
    assert fn._cache_size() == 1
    assert len(set(means)) == len(means)  # the traced numbers do reach the program
    # β = 2 flips the MSE gradient's sign exactly: (1 − β) multiplies E[∂ℓ/∂f]
    # Tighter than the helper's float32 "reduction" (2^10 ε).
    # tol: float32 means over 256 × 8 draws, β traced: the two programs' sums may round apart
    assert means[-1] == pytest.approx(-means[0], rel=1e-5)


def test_pilot_measures_and_choose_budget_keeps_the_standard_error():
    rows = autotune.pilot(SMALL, inputs=(1, 16), min_pilot_draws=512)
    by_b = {r.inputs: r for r in rows}
    assert all(r.seconds_per_draw > 0 and r.variance > 0 for r in rows)
    # more inputs sharing a weight draw average out within-draw noise: v(16) < v(1)
    assert by_b[16].variance < by_b[1].variance
    budget, _ = autotune.choose_budget(SMALL, Budget(draws=4096, inputs_per_draw=1, chunk=1024), rows=rows)
    best = max(rows, key=lambda r: r.score)
    assert (budget.inputs_per_draw, budget.chunk) == (best.inputs, min(best.chunk, budget.draws))
    expected = 4096 * best.variance / by_b[1].variance
    assert budget.draws == max(2, round(expected))


def test_choose_budget_prefers_the_lowest_variance_times_cost():
    rows = [autotune.PilotRow(4, 64, 1e-5, 2.0, 512), autotune.PilotRow(16, 64, 2e-5, 0.5, 512),
            autotune.PilotRow(16, 8, 3e-5, 0.5, 512)]
    budget, _ = autotune.choose_budget(SMALL, Budget(draws=1000, inputs_per_draw=4, chunk=64), rows=rows)
    assert (budget.inputs_per_draw, budget.chunk, budget.draws) == (16, 64, 250)
    with pytest.raises(ValueError, match="inputs"):
        autotune.pilot(SMALL, inputs=(0,))


def test_cache_dir_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv(compilation_cache.ENV_VAR, "off")
    assert compilation_cache.cache_dir() is None and compilation_cache.enable() is None
    monkeypatch.delenv(compilation_cache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.cache_dir() == tmp_path / "driftlab" / "jax"
    monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "c"))
    assert compilation_cache.cache_dir() == tmp_path / "c"
