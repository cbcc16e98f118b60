"""Instrumentation: the zero probe's gradient is dℓ/dp, and the statistics are what they claim."""

import jax
import jax.numpy as jnp
import pytest

from driftlab.activations import parse_activation
from driftlab.models.arch import instrument
from driftlab.testing import assert_close


def test_probe_gradient_equals_gradient_wrt_preactivation():
    kx, kw, kv = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (6, 5))
    w = jax.random.normal(kw, (5, 7))
    v = jax.random.normal(kv, (7, 3))
    relu = parse_activation("relu")

    def model(tap, w):
        return jnp.mean(jnp.square(tap("hidden", x @ w, relu) @ v))

    shapes = instrument.probe_shapes(lambda tap, w: model(tap, w), w)
    assert shapes["hidden"].shape == (6, 7)

    def with_probe(w, probes):
        rec = instrument.TapRecorder(probes)
        return model(rec, w), rec.records["hidden"][0]

    (value, p), (gw, gprobe) = jax.value_and_grad(with_probe, argnums=(0, 1), has_aux=True)(
        w, instrument.zero_probes(shapes))
    direct = jax.grad(lambda p: jnp.mean(jnp.square(relu(p) @ v)))(x @ w)
    assert_close(gprobe["hidden"], direct, dtype="float32")
    # The probe changes nothing else: same loss and weight gradient as the plain tap.
    assert_close(float(value), float(model(lambda n, p, a: a(p), w)), dtype="float32")
    assert_close(gw, jax.grad(lambda w: model(lambda n, p, a: a(p), w))(w), dtype="float32")


def test_duplicate_tap_name_is_an_error():
    rec = instrument.TapRecorder()
    act = parse_activation("tanh")
    rec("a", jnp.ones(3), act)
    with pytest.raises(ValueError, match="used twice"):
        rec("a", jnp.ones(3), act)


def test_activation_stats_on_known_values():
    p = jnp.array([-1.0, -2.0, 0.0005, 1.0, 2.0, 3.0, 4.0, 100.0])
    h = jax.nn.relu(p)
    s = {k: float(v) for k, v in instrument.activation_stats(p, h, eps=1e-3).items()}
    assert_close(s["sparsity"], 2 / 8, dtype="float32")
    assert_close(s["sparsity_eps"], 3 / 8, dtype="float32")
    assert_close(s["frac_pos"], 6 / 8, dtype="float32")
    assert s["max_abs"] == 100.0 and s["h_min"] == 0.0
    # Lower median of the non-zero |h| {0.0005, 1, 2, 3, 4, 100} is 2 (median_abs_nonzero).
    assert_close(s["median_abs"], 2.0, dtype="float32")
    assert_close(s["spike_ratio"], 50.0, dtype="float32")
    zero = instrument.activation_stats(jnp.zeros(4), jnp.zeros(4), eps=1e-3)
    assert float(zero["spike_ratio"]) == 0.0 and float(zero["sparsity"]) == 1.0


def test_median_is_exact_on_a_long_ramp():
    h = jnp.arange(1, 100_001, dtype=jnp.float32)
    med = float(instrument.median_abs_nonzero(h))
    assert med == 50_000.0  # lower median of 1..100000


def test_gradient_stats_are_per_example():
    p = jnp.array([[1.0, -1.0], [2.0, 3.0]])
    g = jnp.array([[0.5, 9.0], [-0.25, 0.25]])  # the -1 entry (p < 0) is ignored
    s = instrument.gradient_stats(p, g, batch_size=2)
    assert_close(float(s["grad_pos_mean"]), 2 * (0.5 - 0.25 + 0.25) / 3, dtype="float32")
    assert_close(float(s["grad_pos_abs_mean"]), 2 * (0.5 + 0.25 + 0.25) / 3, dtype="float32")
    assert_close(float(s["grad_pos_frac"]), 2 / 3, dtype="float32")


def test_weight_stats_cover_matrices_only():
    params = {"a": {"w": jnp.array([[1.0, -3.0], [-1.0, -1.0]]), "b": jnp.ones(2)},
              "conv": jnp.ones((2, 2, 1, 1))}
    stats = instrument.weight_stats(params, {"a/w": 0.5, "conv": 1.0})
    assert set(stats) == {"a/w", "conv"}
    assert float(stats["a/w"]["mean"]) == -1.0
    assert float(stats["a/w"]["frac_neg"]) == 0.75
    assert float(stats["a/w"]["mean_change"]) == -1.5
    assert float(stats["conv"]["std"]) == 0.0


def test_median_matches_exact_median_on_random_data():
    import numpy as np

    h = np.random.default_rng(0).standard_normal(2001).astype(np.float32)
    exact = float(np.median(np.abs(h)))  # odd count: lower median = median
    assert_close(float(instrument.median_abs_nonzero(jnp.asarray(h))), exact, dtype="float32")
