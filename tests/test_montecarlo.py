"""Monte Carlo estimators: reproducibility, honest standard errors, bounded memory, float64."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.special import ndtri
from scipy.stats import chi2

from driftlab.montecarlo import estimators, stats
from driftlab.montecarlo.estimators import Budget
from driftlab.theory.expected_grad import expected_grad_positive_mse
from driftlab.theory.setting import BlockSetting
from driftlab.testing import assert_close

SMALL = BlockSetting(d_in=8, width=16, d_out=4)


def test_same_seed_same_numbers_and_different_seed_differs():
    b = Budget(draws=512, inputs_per_draw=8, chunk=128, seed=3)
    r1, r2 = estimators.estimate_grad_positive(SMALL, b), estimators.estimate_grad_positive(SMALL, b)
    assert r1 == r2
    r3 = estimators.estimate_grad_positive(SMALL, Budget(draws=512, inputs_per_draw=8, chunk=128, seed=4))
    assert r3.mean != r1.mean


def test_standard_error_is_honest_across_independent_seeds():
    """The spread of 40 independent estimates matches their reported SE (χ² test, 1e-4 level).

    Within a draw 8 inputs x 16 units share the weights (strongly correlated); an SE
    computed over all samples as if independent would be far too small and fail this.
    """
    means, ses = [], []
    for seed in range(40):
        r = estimators.estimate_grad_positive(SMALL, Budget(draws=256, inputs_per_draw=8, chunk=256, seed=seed))
        means.append(r.mean)
        ses.append(r.stderr)
    stat = np.sum((np.array(means) - np.mean(means)) ** 2) / np.mean(np.square(ses))
    assert chi2.ppf(1e-4 / 2, 39) < stat < chi2.ppf(1 - 1e-4 / 2, 39)


def test_naive_iid_standard_error_would_be_too_small():
    """Clustered data: the between-draw SE exceeds the naive SE — the reason to cluster."""
    r = estimators.estimate_grad_positive(SMALL, Budget(draws=256, inputs_per_draw=32, chunk=256))
    naive_like = r.stderr / np.sqrt(32 * SMALL.width)
    assert r.stderr > 5 * naive_like


def test_chunking_bounds_memory_and_rounds_draws_up():
    r = estimators.estimate_grad_positive(SMALL, Budget(draws=1000, inputs_per_draw=4, chunk=256))
    assert r.draws == 1024 and r.samples == 1024 * 4


def test_estimate_agrees_with_theorem_small_budget():
    r = estimators.estimate_grad_positive(SMALL, Budget(draws=8192, inputs_per_draw=8, chunk=2048))
    a = expected_grad_positive_mse(SMALL).value
    assert abs(r.mean - a) <= 4.5 * r.stderr  # tol: 4.5 SE, tighter than the suite's z* ≈ 4.56


def test_float64_path_runs_in_a_fresh_process():
    code = textwrap.dedent("""
        import jax
        jax.config.update("jax_enable_x64", True)
        from driftlab.montecarlo.estimators import Budget, estimate_grad_positive
        from driftlab.theory.setting import BlockSetting
        r = estimate_grad_positive(BlockSetting(d_in=4, width=8, d_out=2),
                                   Budget(draws=64, inputs_per_draw=4, chunk=64, dtype="float64"))
        print(r.mean, r.stderr)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr
    mean, se = map(float, out.stdout.split())
    assert se > 0 and np.isfinite(mean)


def test_float64_without_x64_is_a_clear_error():
    with pytest.raises(ValueError, match="jax_enable_x64"):
        estimators.estimate_grad_positive(SMALL, Budget(draws=4, inputs_per_draw=2, chunk=4, dtype="float64"))


@pytest.mark.parametrize("field,value", [("draws", 0), ("inputs_per_draw", -1), ("chunk", 0), ("dtype", "int8")])
def test_budget_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        Budget(**{field: value})


@pytest.mark.parametrize("field,value", [("loss", "hinge"), ("act", "swish"), ("width", 0), ("gain", -1.0),
                                         ("reduction", "max")])
def test_setting_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field if field != "act" else "activation"):
        BlockSetting(**{field: value})


def test_suite_threshold_and_decision_rule():
    assert_close(stats.suite_threshold(1), float(-ndtri(0.0005)))
    assert_close(stats.suite_threshold(100, one_sided=True), float(-ndtri(1e-5)))
    assert stats.z_score(1.0, 0.0, 1.0) == 0.0
    assert stats.z_score(1.1, 0.0, 1.0) == float("inf")
    assert_close(stats.detectable_shift(1.0, 4.0), 4.0 + float(ndtri(0.99)))
    with pytest.raises(ValueError):
        stats.MCResult.from_clusters([1.0])


def test_outgoing_gram_lemma_values():
    res = estimators.estimate_outgoing_gram(SMALL, Budget(draws=4096, inputs_per_draw=1, chunk=4096))
    # tol: 4.5 SE, tighter than the suite's z* ≈ 4.56
    assert abs(res["diag"].mean - SMALL.d_out * SMALL.s2**2) <= 4.5 * res["diag"].stderr
    assert abs(res["offdiag"].mean) <= 4.5 * res["offdiag"].stderr  # tol: the same 4.5 SE


def test_cholesky_sampling_of_first_layer_matches_explicit_weights():
    """p = X W1ᵀ drawn as s1·L z (2B ≤ d) has the law of the explicit product: same
    second moments E[p_b p_e] = s1²⟨x_b, x_e⟩ for fixed inputs, and an unbiased theorem value."""
    import jax
    import jax.numpy as jnp

    x = jax.random.normal(jax.random.key(1), (1, 4, 32))
    xs = jnp.broadcast_to(x, (20000, 4, 32))
    p = estimators.first_layer_preactivations(jax.random.key(2), xs, 8, 0.5)
    emp = np.einsum("cbn,cen->be", np.asarray(p), np.asarray(p)) / (20000 * 8)
    expect = 0.25 * np.asarray(x[0] @ x[0].T)
    # tol: 5% of the largest entry: a second moment of 20000·8 draws has SE ≈ 0.35% of it
    assert np.allclose(emp, expect, atol=0.05 * np.abs(expect).max())
    s = BlockSetting(d_in=32, width=16, d_out=4)
    r = estimators.estimate_grad_positive(s, Budget(draws=8192, inputs_per_draw=4, chunk=2048))
    # tol: 4.5 SE, tighter than the suite's z* ≈ 4.56
    assert abs(r.mean - expected_grad_positive_mse(s).value) <= 4.5 * r.stderr
