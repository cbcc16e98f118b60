"""Tests of the CIFAR-style ResNet (models/arch/resnet.py) on tiny configs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from driftlab.models.arch import resnet
from driftlab.models.arch.base import get_arch

ACTS = ("relu", "gelu", "silu", "tanh", "relu2", "clipped_relu2")
# One stage of one block (stem + 2 convs + head): the smallest ResNet, to keep compiles short.
SMALL = dict(widths=(4,), blocks=(1,))


def _batch(cfg, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n,) + tuple(cfg.image_shape)).astype(np.float32),
            "y": (np.arange(n) % cfg.num_classes).astype(np.int32)}


def _recording_tap(log):
    def tap(name, p, act):
        assert name not in log, f"duplicate tap name {name}"
        h = act(p)
        log[name] = (p.shape, h.shape)
        return h
    return tap


def _path(params, path):
    node = params
    for key in path.split("/"):
        node = node[key]
    return node


def _fit(cfg, params, batch, steps, lr=1e-2):
    """Adam on one fixed batch; returns the list of losses (one jit compile)."""
    opt = optax.adam(lr)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        def f(p):
            return resnet.loss(resnet.apply(p, batch, cfg), batch, cfg)[0]
        value, grads = jax.value_and_grad(f)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    losses = []
    for _ in range(steps):
        params, state, value = step(params, state)
        losses.append(float(value))
    return losses


# One tiny config and one parameter draw shared by the tests: every new parameter
# shape costs an XLA compile, which dominates the runtime of these tests.
TINY = resnet.config("tiny", "relu")
_init = jax.jit(resnet.init, static_argnums=1)


@pytest.fixture(scope="module")
def tiny_params():
    return _init(jax.random.PRNGKey(0), TINY)


def test_registered_and_shapes(tiny_params):
    assert get_arch("resnet") is resnet.ARCH
    params = tiny_params
    assert params["stem"]["conv"]["w"].shape == (3, 3, 1, 8)
    assert params["stage2"]["block0"]["short_conv"]["w"].shape == (1, 1, 8, 16)
    assert "short_conv" not in params["stage1"]["block0"]  # identity shortcut
    assert params["head"]["w"].shape == (32, 10)
    b = _batch(TINY, 3)
    out = jax.jit(resnet.apply, static_argnums=2)(params, b, TINY)
    assert out.shape == (3, 10) and bool(jnp.all(jnp.isfinite(out)))
    value, metrics = resnet.loss(out, b, TINY)
    assert value.shape == () and 0.0 <= float(metrics["accuracy"]) <= 1.0
    # Deterministic apply: batch statistics, no hidden state.
    np.testing.assert_array_equal(out, jax.jit(resnet.apply, static_argnums=2)(params, b, TINY))


def test_paper_size_is_resnet20():
    cfg = resnet.config("paper", "relu")
    assert cfg.widths == (16, 32, 64) and cfg.blocks == (3, 3, 3)
    assert cfg.image_shape == (32, 32, 3)
    shapes = jax.eval_shape(lambda k: resnet.init(k, cfg), jax.random.PRNGKey(0))
    n = sum(math.prod(s.shape) for s in jax.tree.leaves(shapes))
    # He et al. report 0.27M parameters for ResNet-20 (ours adds 1x1 projection shortcuts).
    assert 0.26e6 < n < 0.28e6
    # 6n+2 = 20 weighted layers: 19 3x3 convs + the head.
    n3x3 = sum(1 for s in jax.tree.leaves(shapes) if s.shape[:2] == (3, 3))
    assert n3x3 == 19
    out = jax.eval_shape(lambda p: resnet.apply(p, _batch(cfg, 2), cfg), shapes)
    assert out.shape == (2, 10)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_taps_match_downstream_and_paths_exist(norm):
    # Shapes only (jax.eval_shape traces without compiling).
    cfg = resnet.config("tiny", "relu", blocks=(2, 1, 1), norm=norm)
    params = jax.eval_shape(lambda k: resnet.init(k, cfg), jax.random.PRNGKey(0))
    log = {}
    jax.eval_shape(lambda p: resnet.apply(p, _batch(cfg, 2), cfg, _recording_tap(log)), params)
    down = resnet.downstream(cfg)
    assert set(log) == set(down) | set(resnet.output_heads(cfg).values())
    assert {"stem.act", "stage1.block0.act1", "stage1.block1.act2", "stage3.block0.act2"} <= set(log)
    assert down["stage1.block0.act1"] == "stage1/block0/conv2/w"
    assert down["stage1.block0.act2"] == "stage1/block1/conv1/w"
    assert "stage3.block0.act2" not in down
    assert resnet.output_heads(cfg) == {"head/w": "stage3.block0.act2"}
    for name, path in down.items():
        w = _path(params, path)
        channels = log[name][1][-1]
        # The reading weight's input axis matches the tap's channel count.
        assert w.shape[-2] == channels, (name, path, w.shape)
    has_norm = "norm1" in params["stage1"]["block0"] and params["stage1"]["block0"]["norm1"]
    assert bool(has_norm) == (norm != "none")
    assert ("b" in params["stage1"]["block0"]["conv1"]) == (norm == "none")


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_loss_decreases_on_a_fixed_batch(norm, tiny_params):
    cfg = resnet.config("tiny", "relu", norm=norm)  # same parameter shapes as TINY
    losses = _fit(cfg, tiny_params, _batch(cfg, 16), steps=12)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses


def test_params_hold_no_running_state_and_init_is_seeded(tiny_params):
    paths = ["/".join(str(k.key) for k in path)
             for path, _ in jax.tree_util.tree_leaves_with_path(tiny_params)]
    assert not any("mean" in p or "var" in p for p in paths)
    again = _init(jax.random.PRNGKey(0), TINY)
    np.testing.assert_array_equal(tiny_params["stem"]["conv"]["w"], again["stem"]["conv"]["w"])
    other = _init(jax.random.PRNGKey(1), TINY)
    # tol: NumPy's default tolerances: two keys' weights must not agree even loosely
    assert not np.allclose(tiny_params["stem"]["conv"]["w"], other["stem"]["conv"]["w"])


def test_init_scheme_and_gain_are_used(tiny_params):
    # TINY uses fan_in_normal with gain √2 (He normal); stage3 convs have fan-in 3·3·32.
    w = tiny_params["stage3"]["block0"]["conv2"]["w"]
    expected = math.sqrt(2.0) / math.sqrt(3 * 3 * 32)
    # tol: 4%: the sample std of 3·3·32·32 seeded draws has relative SE 1/√(2n) ≈ 0.74%
    assert abs(float(jnp.std(w)) - expected) < 0.04 * expected
    cfg = resnet.config("tiny", "relu", init="torch_default", gain=1.0, widths=(4,), blocks=(1,))
    w = resnet.init(jax.random.PRNGKey(0), cfg)["stage1"]["block0"]["conv1"]["w"]
    bound = 1 / math.sqrt(3 * 3 * 4)
    assert float(jnp.max(jnp.abs(w))) <= bound + 1e-7
    assert float(jnp.max(jnp.abs(w))) > 0.8 * bound  # uniform, not a narrow normal


@pytest.mark.parametrize("overrides, field", [
    (dict(norm="layer"), "norm"),
    (dict(act="swish"), "act"),
    (dict(widths=(8, 16), blocks=(1, 1, 1)), "blocks"),
    (dict(norm="group", groups=3), "groups"),
    (dict(init="he"), "init"),
    (dict(gain=-1.0), "gain"),
    (dict(num_classes=1), "num_classes"),
    (dict(image_shape=(8, 8)), "image_shape"),
    (dict(depth=3), "depth"),
])
def test_bad_config_raises_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        resnet.config("tiny", **{"act": "relu", **overrides})


def test_bad_size_and_list_overrides():
    with pytest.raises(ValueError, match="size"):
        resnet.config("huge", "relu")
    cfg = resnet.config("tiny", "relu", widths=[4, 8], blocks=[1, 1])
    assert cfg.widths == (4, 8) and hash(cfg)


def test_data_adapts_config_to_images():
    pytest.importorskip("driftlab.models.data.images")
    cfg = resnet.config("tiny", "relu", image_shape=(4, 4, 3), num_classes=5)
    cfg2, ds = resnet.data("synthetic", cfg, 0)
    assert cfg2.image_shape == (4, 4, 3) and cfg2.num_classes == 5
    b = ds.sample("train", 0, 4, 0)
    assert b["x"].shape == (4, 4, 4, 3)
    cfg3, _ = resnet.data("embedded", resnet.config("paper", "relu"), 0)
    assert cfg3.image_shape == (8, 8, 1) and cfg3.num_classes == 10


def test_every_activation_gives_finite_gradients():
    """One gradient step of every activation (traced into one jit, one compile)."""
    cfgs = [resnet.config("tiny", act, **SMALL) for act in ACTS]
    params = resnet.init(jax.random.PRNGKey(0), cfgs[0])
    b = _batch(cfgs[0], 8)

    @jax.jit
    def grads(p):
        return [jax.value_and_grad(lambda q, c=c: resnet.loss(resnet.apply(q, b, c), b, c)[0])(p)
                for c in cfgs]

    for act, (value, g) in zip(ACTS, grads(params)):
        assert np.isfinite(float(value)), act
        gw = g["stage1"]["block0"]["conv2"]["w"]
        assert bool(jnp.all(jnp.isfinite(gw))) and float(jnp.abs(gw).max()) > 0, act


@pytest.mark.parametrize("act", ACTS)
def test_trains_through_the_engine(act):
    """Every activation trains (3 AdamW steps, finite loss) through the real engine."""
    engine = pytest.importorskip("driftlab.models.engine.train")
    summary = engine.train(engine.TrainConfig(
        arch="resnet", act=act, data="synthetic", size="tiny", steps=3, batch_size=8,
        lr=1e-3, optimizer="adamw", seed=0, out=None, log_every=1, progress=False,
        model_overrides=tuple(SMALL.items())))
    assert np.isfinite(summary["final_loss"]) and summary["steps"] == 3
    assert set(resnet.downstream(resnet.config("tiny", act, **SMALL))) <= set(summary["layers"])