"""Tests of the Vision Transformer (models/arch/vit.py) on tiny configs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from driftlab.models.arch import vit
from driftlab.models.arch.base import get_arch

ACTS = ("relu", "gelu", "silu", "tanh", "relu2", "clipped_relu2")
ONE_BLOCK = dict(depth=1)  # the smallest ViT, to keep compiles short

TINY = vit.config("tiny", "gelu")
_init = jax.jit(vit.init, static_argnums=1)


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


@pytest.fixture(scope="module")
def tiny_params():
    return _init(jax.random.PRNGKey(0), TINY)


def test_registered_and_shapes(tiny_params):
    assert get_arch("vit") is vit.ARCH
    p = tiny_params
    assert TINY.num_patches == 16 and TINY.num_tokens == 17
    assert p["patch"]["w"].shape == (2, 2, 1, 32)
    assert p["pos"].shape == (1, 17, 32) and p["cls"].shape == (1, 1, 32)
    assert p["block1"]["mlp"]["fc1"]["w"].shape == (32, 128)  # 4x hidden
    assert p["block1"]["mlp"]["fc2"]["w"].shape == (128, 32)
    assert p["head"]["w"].shape == (32, 10)
    b = _batch(TINY, 3)
    out = jax.jit(vit.apply, static_argnums=2)(p, b, TINY)
    assert out.shape == (3, 10) and bool(jnp.all(jnp.isfinite(out)))
    value, metrics = vit.loss(out, b, TINY)
    assert value.shape == () and 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_mean_pooling_has_no_cls_token():
    cfg = vit.config("tiny", "gelu", pool="mean")
    shapes = jax.eval_shape(lambda k: vit.init(k, cfg), jax.random.PRNGKey(0))
    assert "cls" not in shapes and shapes["pos"].shape == (1, 16, 32)
    out = jax.eval_shape(lambda p: vit.apply(p, _batch(cfg, 2), cfg), shapes)
    assert out.shape == (2, 10)


def test_paper_size_is_vit_s():
    cfg = vit.config("paper", "gelu")
    assert (cfg.dim, cfg.depth, cfg.n_heads, cfg.mlp_ratio) == (384, 12, 6, 4)
    assert cfg.image_shape == (32, 32, 3) and cfg.num_tokens == 65
    shapes = jax.eval_shape(lambda k: vit.init(k, cfg), jax.random.PRNGKey(0))
    D = 384
    n_block = sum(math.prod(s.shape) for s in jax.tree.leaves(shapes["block0"]))
    assert n_block == 12 * D * D + 13 * D  # attention 4(D²+D), MLP 8D²+5D, two LNs 4D
    n = sum(math.prod(s.shape) for s in jax.tree.leaves(shapes))
    assert 21.0e6 < n < 21.7e6  # ViT-S/16 has ~22M with its 1000-class head


def test_taps_match_downstream_and_paths_exist(tiny_params):
    log = {}
    jax.eval_shape(lambda p: vit.apply(p, _batch(TINY, 2), TINY, _recording_tap(log)), tiny_params)
    down = vit.downstream(TINY)
    assert set(log) == set(down) == {"block0.mlp", "block1.mlp"}
    for name, path in down.items():
        assert path == name.replace(".mlp", "/mlp/fc2/w")
        w = _path(tiny_params, path)
        assert log[name][1] == (2, 17, 128)  # tapped on every token, 4x hidden
        assert w.shape[0] == log[name][1][-1]


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_loss_decreases_on_a_fixed_batch(pool, tiny_params):
    cfg = vit.config("tiny", "gelu", pool=pool)
    params = dict(tiny_params)
    if pool == "mean":  # drop the CLS entries (no recompile of init)
        params.pop("cls")
        params["pos"] = params["pos"][:, 1:]
    batch = _batch(cfg, 16)
    opt = optax.adam(3e-3)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(
            lambda p: vit.loss(vit.apply(p, batch, cfg), batch, cfg)[0])(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    state, losses = opt.init(params), []
    for _ in range(15):
        params, state, value = step(params, state)
        losses.append(float(value))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses


def test_init_is_seeded_and_uses_the_scheme(tiny_params):
    again = _init(jax.random.PRNGKey(0), TINY)
    np.testing.assert_array_equal(tiny_params["block0"]["mlp"]["fc2"]["w"],
                                  again["block0"]["mlp"]["fc2"]["w"])
    other = _init(jax.random.PRNGKey(1), TINY)
    # tol: NumPy's default tolerances: two keys' weights must not agree even loosely
    assert not np.allclose(tiny_params["block0"]["mlp"]["fc2"]["w"], other["block0"]["mlp"]["fc2"]["w"])
    # fan_in_normal, gain 1: fc2 reads 128 units.
    w = np.concatenate([np.ravel(tiny_params[f"block{i}"]["mlp"]["fc2"]["w"]) for i in range(2)])
    # tol: 4%: the sample std of 2·128·32 seeded draws has relative SE 1/√(2n) ≈ 0.78%
    assert abs(w.std() - 1 / math.sqrt(128)) < 0.04 / math.sqrt(128)
    assert float(jnp.abs(tiny_params["block0"]["mlp"]["fc1"]["b"]).max()) == 0.0


def test_every_activation_gives_finite_gradients():
    """One gradient step of every activation (traced into one jit, one compile)."""
    cfgs = [vit.config("tiny", act, **ONE_BLOCK) for act in ACTS]
    params = vit.init(jax.random.PRNGKey(0), cfgs[0])
    b = _batch(cfgs[0], 8)

    @jax.jit
    def grads(p):
        return [jax.value_and_grad(lambda q, c=c: vit.loss(vit.apply(q, b, c), b, c)[0])(p)
                for c in cfgs]

    for act, (value, g) in zip(ACTS, grads(params)):
        assert np.isfinite(float(value)), act
        gw = g["block0"]["mlp"]["fc2"]["w"]
        assert bool(jnp.all(jnp.isfinite(gw))) and float(jnp.abs(gw).max()) > 0, act


@pytest.mark.parametrize("act", ACTS)
def test_trains_through_the_engine(act):
    """Every activation trains (3 AdamW steps, finite loss) through the real engine."""
    engine = pytest.importorskip("driftlab.models.engine.train")
    summary = engine.train(engine.TrainConfig(
        arch="vit", act=act, data="synthetic", size="tiny", steps=3, batch_size=8,
        lr=1e-3, optimizer="adamw", seed=0, out=None, log_every=1, progress=False,
        model_overrides=tuple(ONE_BLOCK.items())))
    assert np.isfinite(summary["final_loss"]) and summary["steps"] == 3
    assert set(vit.downstream(vit.config("tiny", act, **ONE_BLOCK))) <= set(summary["layers"])


@pytest.mark.parametrize("overrides, field", [
    (dict(patch=3), "patch"),
    (dict(n_heads=3), "n_heads"),
    (dict(pool="max"), "pool"),
    (dict(act="swish"), "act"),
    (dict(bias="yes"), "bias"),
    (dict(init="trunc_normal"), "init"),
    (dict(dim=0), "dim"),
    (dict(gain=0.0), "gain"),
    (dict(widths=(8,)), "widths"),
])
def test_bad_config_raises_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        vit.config("tiny", **{"act": "gelu", **overrides})


def test_bad_size_raises():
    with pytest.raises(ValueError, match="size"):
        vit.config("base", "gelu")


def test_data_adapts_config_to_images():
    pytest.importorskip("driftlab.models.data.images")
    cfg, ds = vit.data("synthetic", vit.config("tiny", "gelu", image_shape=(4, 4, 3), num_classes=3), 0)
    assert cfg.image_shape == (4, 4, 3) and cfg.num_classes == 3
    assert ds.sample("train", 0, 2, 0)["x"].shape == (2, 4, 4, 3)
    cfg, _ = vit.data("embedded", vit.config("paper", "gelu"), 0)
    assert cfg.image_shape == (8, 8, 1) and cfg.num_classes == 10 and cfg.num_tokens == 5
    with pytest.raises(ValueError, match="patch"):  # 16x16 patches do not tile 8x8 digits
        vit.data("embedded", vit.config("paper", "gelu", patch=16), 0)
