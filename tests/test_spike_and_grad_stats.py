"""Pre-activation spike statistics, massive activations, and gradient statistics over the
positions that carry gradient (ViT with CLS pooling)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.activations import parse_activation
from driftlab.models.arch import instrument
from driftlab.models.arch.base import get_arch
from driftlab.testing import assert_close


def _lower_median_nonzero(x):
    nz = np.sort(np.abs(x[x != 0]))
    return nz[(nz.size - 1) // 2]


def test_preactivation_spike_stats_and_relu2_square_relation():
    p = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
    p[3, 7] = 40.0  # one spike
    h = np.asarray(parse_activation("relu2")(jnp.asarray(p)))
    s = {k: float(v) for k, v in instrument.activation_stats(jnp.asarray(p), jnp.asarray(h),
                                                             1e-3).items()}
    assert s["max_abs_p"] == 40.0
    assert s["median_abs_p"] == _lower_median_nonzero(p)
    assert_close(s["spike_ratio_p"], 40.0 / _lower_median_nonzero(p), dtype="float32")
    # relu²: the h-ratio is the square of the ratio over the positive p.
    pp = p[p > 0]
    # tol: float32: max/median squared on device vs from the positive p in NumPy (a few roundings, doubled)
    assert s["spike_ratio"] == pytest.approx((pp.max() / _lower_median_nonzero(pp)) ** 2,
                                             rel=1e-5)


def test_massive_activation_count_needs_both_thresholds():
    h = np.full((10, 100), 0.05, np.float32)
    h[0, 0] = 150.0   # > 100 and > 1000 × 0.05 = 50: massive
    h[1, 1] = 60.0    # > 50 but not > 100: not massive
    h[2, 2] = -120.0  # |h| counts
    s = instrument.activation_stats(jnp.asarray(h), jnp.asarray(h), 1e-3)
    assert float(s["massive_count"]) == 2.0
    assert_close(float(s["massive_frac"]), 2 / 1000, dtype="float32")
    big = np.full((10, 100), 1.0, np.float32)
    big[0, 0] = 150.0  # > 100 but only 150 × the median 1: not massive
    assert float(instrument.activation_stats(jnp.asarray(big), jnp.asarray(big),
                                             1e-3)["massive_count"]) == 0.0


@pytest.fixture(scope="module")
def vit_grads():
    arch = get_arch("vit")
    cfg = arch.config("tiny", "gelu", depth=2, pool="cls")
    cfg, ds = arch.data("synthetic", cfg, 0)
    params = arch.init(jax.random.PRNGKey(0), cfg)
    batch = ds.sample("train", 0, 16, 0)
    shapes = instrument.probe_shapes(lambda tap, p: arch.apply(p, batch, cfg, tap), params)

    def loss(probes):
        rec = instrument.TapRecorder(probes)
        value, _ = arch.loss(arch.apply(params, batch, cfg, rec), batch, cfg)
        return value, {k: p for k, (p, _) in rec.records.items()}

    g, ps = jax.grad(loss, has_aux=True)(instrument.zero_probes(shapes))
    return cfg, ps, g, batch["x"].shape[0]


def test_vit_last_block_gradient_stats_cover_only_the_cls_token(vit_grads):
    cfg, ps, g, B = vit_grads
    T = cfg.num_tokens
    last, first = f"block{cfg.depth - 1}.mlp", "block0.mlp"
    p, gl = np.asarray(ps[last]), np.asarray(g[last])
    assert not gl[:, 1:].any() and gl[:, 0].any()  # only CLS carries gradient
    s = {k: float(v) for k, v in instrument.gradient_stats(ps[last], g[last], B).items()}
    assert_close(s["grad_positions_frac"], 1 / T, dtype="float32")
    pos_cls = p[:, 0] > 0
    expected = B * gl[:, 0][pos_cls].sum() / pos_cls.sum()
    # tol: float32 sums over the batch's CLS positions in another order
    assert s["grad_pos_mean"] == pytest.approx(expected, rel=1e-5)
    assert_close(s["grad_pos_frac"], (gl[:, 0][pos_cls] > 0).mean(), dtype="float32")
    diluted = B * gl[p > 0].sum() / (p > 0).sum()  # the old statistic over all 17 tokens
    assert abs(expected / diluted) > 0.5 * T
    assert float(instrument.gradient_stats(ps[first], g[first], B)["grad_positions_frac"]) == 1.0
