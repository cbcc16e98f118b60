"""Every architecture's tap → downstream map and output heads match the traced program
(models/arch/readers.py): the listed matrix really contracts with the tap's output."""

import jax
import pytest

from driftlab.models.arch.base import get_arch
from driftlab.models.arch.readers import reading_matrices

# Configurations that exercise every kind of tap (identity and projection shortcuts,
# conv taps of MP-SENet, several blocks).
CASES = [
    ("mlp", dict(depth=3, width=16)),
    ("resnet", dict(blocks=(2, 1, 1), norm="batch")),
    ("resnet", dict(blocks=(1, 1), widths=(4, 8), norm="none")),
    ("vit", dict(depth=3)),
    ("vit", dict(depth=2, pool="mean")),
    ("gpt", dict(n_layer=3)),
    ("mpsenet", dict(conv_act="same")),
    ("mpsenet", dict(conv_act="prelu")),
]


def _readers(arch_name, overrides):
    arch = get_arch(arch_name)
    cfg = arch.config("tiny", "relu", **overrides)
    cfg, ds = arch.data("synthetic", cfg, 0)
    params = jax.eval_shape(lambda k: arch.init(k, cfg), jax.random.PRNGKey(0))
    return arch, cfg, reading_matrices(arch, cfg, params, ds.sample("train", 0, 2, 0))


def check_maps(down: dict, heads: dict, readers: dict) -> list[str]:
    """Problems with declared maps against traced readers (empty when they agree).

    Each mapped matrix reads its tap; each head reads its declared tap (or no tap when
    None) and is never a hidden layer's downstream matrix; every tap that some matrix
    reads is either mapped or read by a head, so no reader is silently left out.
    """
    problems = []
    for tap, path in down.items():
        if path not in readers.get(tap, set()):
            problems.append(f"{tap} -> {path}: not read (readers {sorted(readers.get(tap, ()))})")
        if path in heads:
            problems.append(f"{tap} -> {path}: an output head in the hidden map")
    for path, tap in heads.items():
        actual = {t for t, ws in readers.items() if path in ws}
        if actual != ({tap} if tap else set()):
            problems.append(f"head {path}: declared reads {tap}, traced {sorted(actual)}")
    for tap, ws in readers.items():
        if ws and tap not in down and not (ws & set(heads)):
            problems.append(f"{tap}: read by {sorted(ws)} but not mapped")
    return problems


@pytest.mark.parametrize("arch_name,overrides", CASES,
                         ids=[f"{a}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for a, o in CASES])
def test_declared_maps_match_traced_readers(arch_name, overrides):
    arch, cfg, readers = _readers(arch_name, overrides)
    down, heads = arch.downstream(cfg), arch.output_heads(cfg)
    assert check_maps(down, heads, readers) == []
    assert heads and set(down) <= set(readers)
    if arch_name in ("mlp", "vit", "gpt"):  # one reader per tap, exactly the mapped one
        for tap, path in down.items():
            assert readers[tap] == {path}


def test_check_catches_a_planted_wrong_map():
    arch, cfg, readers = _readers("gpt", dict(n_layer=2))
    down = dict(arch.downstream(cfg))
    down["block0.mlp"] = "block1/mlp/w_out"  # the next block's matrix does not read it
    assert any("block0.mlp" in p for p in check_maps(down, arch.output_heads(cfg), readers))
    arch, cfg, readers = _readers("mlp", dict(depth=2, width=8))
    legacy = {"layer0": "layer1/w", "layer1": "head/w"}  # the old map, head included
    assert any("output head" in p for p in check_maps(legacy, arch.output_heads(cfg), readers))
    assert any("head/w" in p for p in check_maps(arch.downstream(cfg), {"head/w": None}, readers))
