"""The MLP architecture: config validation, shapes, taps, downstream map, losses."""

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.arch.base import get_arch


@pytest.fixture(scope="module")
def arch():
    return get_arch("mlp")


def test_config_presets_and_validation(arch):
    cfg = arch.config("tiny", "gelu")
    assert cfg.act == "gelu" and cfg.depth >= 1 and cfg.width >= 1
    assert arch.config("small", "relu").width > cfg.width
    for field, value in [("depth", 0), ("width", -3), ("init", "he"), ("task", "rank"),
                         ("gain", 0.0), ("bias", "yes")]:
        with pytest.raises(ValueError, match=f"MLPConfig.{field}"):
            arch.config("tiny", "relu", **{field: value})
    with pytest.raises(ValueError, match="act"):
        arch.config("tiny", "relu3")
    with pytest.raises(ValueError, match="size"):
        arch.config("huge", "relu")
    with pytest.raises(ValueError, match="unknown config field"):
        arch.config("tiny", "relu", widht=3)


def test_data_sets_input_and_classes(arch):
    cfg, ds = arch.data("synthetic", arch.config("tiny", "relu", in_dim=3, out_dim=2), 0)
    assert cfg.in_dim == 64 and cfg.out_dim == 10 and ds.meta["num_classes"] == 10


@pytest.fixture(scope="module")
def model(arch):
    cfg = arch.config("tiny", "relu", depth=3, width=64, in_dim=12, out_dim=5)
    return cfg, jax.jit(arch.init, static_argnums=1)(jax.random.PRNGKey(0), cfg)


def test_init_apply_taps_and_downstream(arch, model):
    cfg, params = model
    assert params["layer0"]["w"].shape == (12, 64) and params["head"]["w"].shape == (64, 5)
    assert params["layer2"]["b"].shape == (64,) and not np.asarray(params["layer2"]["b"]).any()
    batch = {"x": jnp.ones((4, 2, 3, 2)), "y": jnp.array([0, 1, 2, 3])}
    seen = []

    def tap(name, p, act):
        seen.append((name, p.shape))
        return act(p)

    logits = jax.eval_shape(lambda p, b: arch.apply(p, b, cfg, tap), params, batch)
    assert logits.shape == (4, 5) and logits.dtype == jnp.float32
    assert seen == [("layer0", (4, 64)), ("layer1", (4, 64)), ("layer2", (4, 64))]
    down = arch.downstream(cfg)
    assert down == {"layer0": "layer1/w", "layer1": "layer2/w"}
    assert arch.output_heads(cfg) == {"head/w": "layer2"}
    # The downstream matrix really reads the tap's output: its fan-in is the width.
    for path in down.values():
        layer, leaf = path.split("/")
        assert params[layer][leaf].shape[0] == cfg.width
    # Zero-mean init at the theory's scale N(0, 1/fan_in).
    w = np.asarray(params["layer1"]["w"])
    assert abs(w.mean()) < 4 * w.std() / np.sqrt(w.size)
    # tol: 5%: the sample std of 64·64 seeded draws has relative SE 1/√(2n) ≈ 1.1%
    assert w.std() == pytest.approx(1 / 8, rel=0.05)


def test_no_bias_structure(arch):
    cfg = arch.config("tiny", "tanh", bias=False, in_dim=4, out_dim=3)
    shapes = jax.eval_shape(lambda k: arch.init(k, cfg), jax.random.PRNGKey(0))
    assert all(set(layer) == {"w"} for layer in shapes.values())
    assert set(shapes) == {"layer0", "layer1", "head"}


def test_losses(arch, model):
    cfg, params = model
    batch = {"x": jax.random.normal(jax.random.PRNGKey(2), (8, 12)), "y": jnp.arange(8) % 5}
    logits = arch.apply(params, batch, cfg)
    value, metrics = arch.loss(logits, batch, cfg)
    manual = -np.mean(np.asarray(jax.nn.log_softmax(logits))[np.arange(8), np.arange(8) % 5])
    # tol: the float32 loss vs a NumPy mean of the log-softmax: another op order (~84 ε)
    assert float(value) == pytest.approx(float(manual), rel=1e-5)
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0
    reg = dataclasses.replace(cfg, task="regress")
    value_r, _ = arch.loss(logits, batch, reg)
    target = np.eye(5)[np.arange(8) % 5]
    expect = float(np.mean(np.sum((np.asarray(logits) - target) ** 2, -1)))
    # tol: the float32 squared error vs its float64 NumPy recomputation (~84 ε)
    assert float(value_r) == pytest.approx(expect, rel=1e-5)


def test_bfloat16_inputs(arch, model):
    cfg, params = model
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params)
    cfg = dataclasses.replace(cfg, act="silu")
    logits = arch.apply(params, {"x": jnp.ones((2, 12), jnp.bfloat16)}, cfg)
    assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
