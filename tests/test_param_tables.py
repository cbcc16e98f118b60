"""Parameter tables (models/arch/params.py): each parameter declared once, and init, the
parameter count, the tap maps, the pins' readers, the Muon/AdamW routing and s_W² all
follow from that one declaration."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.arch import gpt, mlp, params as P, resnet

from driftlab.models.engine import pins
from driftlab.models.arch.base import ARCH_MODULES, get_arch
from driftlab.models.arch.params import flatten_dict
from driftlab.models.arch.init import get_init
from driftlab.models.engine.optim import MUON_ROUTES, arch_routes, route_labels
from driftlab.models.measure.per_layer import downstream_scheme, init_variance

TABLE_ARCHS = ("gpt", "mlp", "resnet", "vit")
CONFIGS = [("vit", {}), ("vit", dict(pool="mean", bias=False, depth=3)), ("gpt", {}), ("gpt", dict(tied_head=False, pos="learned", norm_affine=False)),
           ("gpt", dict(n_layer=3, final_norm=False)), ("mlp", {}),
           ("mlp", dict(depth=4, bias=False)), ("mlp", dict(depth=1)),
           ("resnet", {}), ("resnet", dict(norm="none", blocks=(2, 1), widths=(8, 8))),
           ("resnet", dict(norm="group", groups=2, head_init="xavier_normal", head_gain=0.5,
                           init="torch_default"))]
IDS = [f"{a}-{'-'.join(f'{k}{v}' for k, v in o.items()) or 'default'}".replace(" ", "")
       for a, o in CONFIGS]


def test_the_table_archs_are_the_archs_with_a_table():
    assert {n for n in ARCH_MODULES if get_arch(n).params is not None} == set(TABLE_ARCHS)
    assert {a for a, _ in CONFIGS} == set(TABLE_ARCHS)


def _cfg(arch, overrides):
    return get_arch(arch).config("tiny", "relu", **overrides)


@pytest.mark.parametrize("arch,overrides", CONFIGS, ids=IDS)
def test_init_has_exactly_the_declared_parameters(arch, overrides):
    a, cfg = get_arch(arch), _cfg(arch, overrides)
    table = a.params(cfg)
    flat = flatten_dict(jax.eval_shape(lambda: a.init(jax.random.PRNGKey(0), cfg)))
    assert {k: v.shape for k, v in flat.items()} == P.shapes(table)
    assert all(v.dtype == jnp.float32 for v in flat.values())
    assert P.count(table) == sum(int(np.prod(v.shape)) for v in flat.values())


@pytest.mark.parametrize("arch,overrides", CONFIGS, ids=IDS)
def test_table_routing_is_the_regex_routing(arch, overrides):
    """The engine routes by the table; it agrees with the rule table MUON_ROUTES that the
    archs without a table (and callers without an arch) still use."""
    a, cfg = get_arch(arch), _cfg(arch, overrides)
    shapes = jax.eval_shape(lambda: a.init(jax.random.PRNGKey(0), cfg))
    assert route_labels(shapes, arch_routes(a, cfg)) == route_labels(shapes, MUON_ROUTES)


@pytest.mark.parametrize("arch,overrides", CONFIGS, ids=IDS)
def test_per_layer_s_w2_is_the_tables(arch, overrides):
    """s_W² of every downstream matrix: the per-layer estimator's (config scheme, gain and
    the matrix's shape) equals the table's declared init."""
    a, cfg = get_arch(arch), _cfg(arch, overrides)
    table = a.params(cfg)
    scheme, gain = downstream_scheme(cfg)
    if a.readers is None:
        for path in a.downstream(cfg).values():
            shape = table[path].shape
            assert P.init_variance(table, path) == init_variance(scheme, gain, *shape)
        return
    # conv readers (ResNet): every linear reader's own scheme, gain and fans (the head too)
    linear = [r for tr in a.readers(cfg).values() for r in tr.readers]
    assert set(a.downstream(cfg).values()) <= {r.weight for r in linear}
    for r in linear:
        shape = table[r.weight].shape
        assert P.init_variance(table, r.weight) == init_variance(r.scheme, r.gain, *r.fans(shape))
        if r.weight in a.downstream(cfg).values():
            assert (r.scheme, r.gain) == (scheme, gain)


@pytest.mark.parametrize("overrides", [o for a, o in CONFIGS if a == "resnet"])
def test_resnet_conv_readers_name_the_tables_readers(overrides):
    """resnet.readers (hand-written: strides, padding, identity shortcuts) reads each tap
    with exactly the weights the table declares as reading it."""
    cfg = _cfg("resnet", overrides)
    table = resnet.param_table(cfg)
    declared = {}
    for p in table:
        if p.reads is not None:
            declared.setdefault(p.reads, set()).add(p.path)
    assert {t: {r.weight for r in tr.readers} for t, tr in resnet.readers(cfg).items()} == declared


def test_gpt_count_matches_the_closed_form():
    for cfg in (gpt.config("paper"), gpt.config("tiny", tied_head=False, pos="learned")):
        D, H, V, L = cfg.n_embd, cfg.mlp_hidden, cfg.vocab_size, cfg.n_layer
        n = V * D + L * (4 * D * D + 2 * D * H + 2 * D) + D + (0 if cfg.tied_head else D * V)
        assert gpt.param_count(cfg, include_position=False) == n
    assert gpt.param_count(gpt.config("paper")) == 123_551_232  # the count before the table
    assert gpt.param_count(gpt.config("tiny", pos="learned", tied_head=False)) == 42_144
    assert gpt.param_count(gpt.config("tiny", pos="learned"), include_position=False) \
        == gpt.param_count(gpt.config("tiny"))


def test_adding_a_gpt_parameter_is_one_line(monkeypatch):
    """One more Param in GPT's table: init draws it with its key and scheme, the count,
    the routing and the pins' readers follow, with no other edit."""
    original = gpt.param_table

    def with_gate(cfg):
        t = original(cfg)
        D, H = cfg.n_embd, cfg.mlp_hidden
        extra = P.Param("block0/mlp/w_gate", (D, H), "matrix", "adamw", key=(3,), fan_in=D,
                        fan_out=H, makes="block0.gate")  # the one line
        return dataclasses.replace(t, params=t.params + (extra,))

    monkeypatch.setattr(gpt, "param_table", with_gate)
    monkeypatch.setattr(gpt, "ARCH", dataclasses.replace(gpt.ARCH, params=with_gate))
    cfg = gpt.config("tiny", "relu", init="fan_in_normal")
    D, H = cfg.n_embd, cfg.mlp_hidden
    key = jax.random.PRNGKey(5)
    params = gpt.init(key, cfg)
    want = get_init("fan_in_normal", cfg.gain)(jax.random.fold_in(key, 3), (D, H), D, H)
    np.testing.assert_array_equal(params["block0"]["mlp"]["w_gate"], want)
    assert gpt.param_count(cfg) == P.count(original(cfg)) + D * H
    labels = flatten_dict(route_labels(params, arch_routes(get_arch("gpt"), cfg)))
    assert labels["block0/mlp/w_gate"] == "adamw" and labels["block0/mlp/w_in"] == "muon"
    assert pins.readers("gpt", cfg)["block0.gate"] == pins.Reader("block0/mlp/w_gate", None, None)
    # the parameters declared before keep their values
    before = P.init(key, original(cfg))
    np.testing.assert_array_equal(before["block0"]["mlp"]["w_in"], params["block0"]["mlp"]["w_in"])


def test_adding_a_resnet_parameter_is_one_line(monkeypatch):
    """One more conv kernel in ResNet's table: init draws it (conv fans, its own key), the
    count and the routing follow, the parameters declared before keep their values."""
    original = resnet.param_table

    def with_extra(cfg):
        t = original(cfg)
        shape = (3, 3, cfg.widths[0], cfg.widths[0])
        extra = P.Param("stem/conv2/w", shape, "conv", "muon", key=(20_000,),
                        fan_in=P.conv_fans(shape)[0], fan_out=P.conv_fans(shape)[1])  # the line
        return dataclasses.replace(t, params=t.params + (extra,))

    monkeypatch.setattr(resnet, "param_table", with_extra)
    monkeypatch.setattr(resnet, "ARCH", dataclasses.replace(resnet.ARCH, params=with_extra))
    cfg = resnet.config("tiny", "relu")
    C = cfg.widths[0]
    key = jax.random.PRNGKey(5)
    params = resnet.init(key, cfg)
    want = get_init(cfg.init, cfg.gain)(jax.random.fold_in(key, 20_000), (3, 3, C, C),
                                        9 * C, 9 * C)
    np.testing.assert_array_equal(params["stem"]["conv2"]["w"], want)
    assert resnet.param_count(cfg) == P.count(original(cfg)) + 9 * C * C
    labels = flatten_dict(route_labels(params, arch_routes(get_arch("resnet"), cfg)))
    assert labels["stem/conv2/w"] == "muon" and labels["stem/conv/w"] == "adamw"
    before = P.init(key, original(cfg))
    np.testing.assert_array_equal(before["head"]["w"], params["head"]["w"])


def test_a_parameters_own_scheme_and_gain():
    """An entry's scheme/gain (ResNet's head_init/head_gain) override the table's, in init
    and in s_W²."""
    cfg = resnet.config("tiny", "relu", head_init="xavier_normal", head_gain=0.5)
    table = resnet.param_table(cfg)
    D, K = cfg.widths[-1], cfg.num_classes
    key = jax.random.PRNGKey(3)
    want = get_init("xavier_normal", 0.5)(jax.random.fold_in(key, 10_000), (D, K), D, K)
    np.testing.assert_array_equal(P.init(key, table)["head"]["w"], want)
    assert P.init_variance(table, "head/w") == 2 * 0.5**2 / (D + K)
    assert P.init_variance(table, "stem/conv/w") == cfg.gain**2 / (9 * cfg.image_shape[2])


def test_downstream_is_the_first_declared_reader():
    """A tap read by conv1 and a projection shortcut: conv1, declared first, is downstream."""
    cfg = resnet.config("tiny", "relu")
    table = resnet.param_table(cfg)
    assert table["stage2/block0/short_conv/w"].reads == "stage1.block0.act2"
    assert resnet.downstream(cfg)["stage1.block0.act2"] == "stage2/block0/conv1/w"
    with pytest.raises(ValueError, match="made by several weights"):
        P.readers(resnet.param_table(resnet.config("tiny", "relu", norm="none")))


def test_pins_readers_come_from_the_tables():
    cfg = mlp.config("tiny", "relu", depth=3)
    assert pins.readers("mlp", cfg) == {
        "layer0": pins.Reader("layer0/w", "layer0/b", None),
        "layer1": pins.Reader("layer1/w", "layer1/b", "layer0"),
        "layer2": pins.Reader("layer2/w", "layer2/b", "layer1")}
    g = gpt.config("tiny", "relu", n_layer=2)
    assert pins.readers("gpt", g) == {f"block{i}.mlp": pins.Reader(f"block{i}/mlp/w_in", None, None)
                                      for i in range(2)}
    assert pins.readers("vit", get_arch("vit").config("tiny")) == {}  # not a reader arch
    assert pins.readers("resnet", resnet.config("tiny")) == {}


def test_a_bad_declaration_names_the_field():
    with pytest.raises(ValueError, match=r"Param\('w'\)\.group='sgd' invalid; allowed: muon, adamw"):
        P.Param("w", (2, 2), "matrix", "sgd", key=(0,), fan_in=2, fan_out=2)
    with pytest.raises(ValueError, match="needs fan_in"):
        P.Param("w", (2, 2), "matrix", "muon")
    with pytest.raises(ValueError, match=r"Param\('w'\)\.scheme='he' invalid; allowed: fan_in_normal"):
        P.Param("w", (2, 2), "matrix", "adamw", key=(0,), fan_in=2, fan_out=2, scheme="he")
    with pytest.raises(ValueError, match=r"Param\('w'\)\.gain=0 invalid"):
        P.Param("w", (2, 2), "matrix", "adamw", key=(0,), fan_in=2, fan_out=2, gain=0)
    with pytest.raises(ValueError, match="scheme/gain go with init='scheme' only"):
        P.Param("w", (2,), "norm", "adamw", init="ones", gain=2.0)
    p = P.Param("w", (2,), "norm", "adamw", init="ones")
    with pytest.raises(ValueError, match="declared twice"):
        P.ParamTable((p, p), "fan_in_normal", 1.0)


def role_problems(a, cfg) -> list[str]:
    """Where the table's ``makes`` (the pins' readers: weight and bias of each tap's p) or
    ``reads`` (every matrix and head) differ from the traced forward pass (models/arch/readers.py)."""
    from driftlab.models.arch.readers import traced_matrices

    cfg, ds = a.data("synthetic", cfg, 0)
    params = jax.eval_shape(lambda k: a.init(k, cfg), jax.random.PRNGKey(0))
    reads, makes = traced_matrices(a, cfg, params, ds.sample("train", 0, 2, 0))
    table = a.params(cfg)
    declared = {t: set() for t in makes}
    for p in table:
        if p.makes is not None:
            declared.setdefault(p.makes, set()).add(p.path)
    problems = [f"{t}: made by {sorted(makes.get(t, ()))}, declared {sorted(declared[t])}"
                for t in declared if declared[t] != makes.get(t, set())]
    for p in table:
        traced = {t for t, ws in reads.items() if p.path in ws}
        if traced != ({p.reads} if p.reads else set()):
            problems.append(f"{p.path}: reads {sorted(traced)}, declared {p.reads}")
    return problems


@pytest.mark.parametrize("arch,overrides", CONFIGS, ids=IDS)
def test_declared_roles_match_the_traced_program(arch, overrides):
    assert role_problems(get_arch(arch), _cfg(arch, overrides)) == []


def test_traced_roles_catch_a_wrong_declaration():
    """Power: a table whose layer1/w claims to read the input (not tap layer0) fails."""
    def wrong(cfg):
        t = mlp.param_table(cfg)
        return dataclasses.replace(t, params=tuple(
            dataclasses.replace(p, reads=None) if p.path == "layer1/w" else p for p in t))

    problems = role_problems(dataclasses.replace(mlp.ARCH, params=wrong), mlp.config("tiny"))
    assert problems == ["layer1/w: reads ['layer0'], declared None"]
