"""Behaviour pins for the parameter tables (issue 23): the init values, the Muon/AdamW
routing and the tap → matrix maps of every architecture, as fingerprints taken on the
code *before* the tables replaced the hand-written init/count/routing.

A refactor of how parameters are declared must keep every fingerprint: the same seed gives
bit-identical parameters (paths, shapes, dtypes and bytes), the same leaves go to Muon, and
``downstream``/``output_heads``/the pins' readers name the same matrices. A deliberate
change of layout updates the pinned digest in the same commit, with a reason.
"""

from __future__ import annotations

import hashlib
import json

import jax
import numpy as np
import pytest

from driftlab.models.engine import pins
from driftlab.models.arch.base import get_arch
from driftlab.models.arch.params import flatten_dict
from driftlab.models.engine.optim import arch_routes, route_labels

def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(arch_name: str, size: str, overrides: tuple) -> tuple[str, str, int]:
    arch = get_arch(arch_name)
    cfg = arch.config(size, **dict(overrides))
    params = arch.init(jax.random.PRNGKey(7), cfg)
    flat = flatten_dict(params)
    h = hashlib.sha256()
    for path in sorted(flat):
        a = np.asarray(flat[path])
        h.update(f"{path}|{a.shape}|{a.dtype}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    labels = flatten_dict(route_labels(params, arch_routes(arch, cfg)))  # as the engine routes
    maps = {"muon": sorted(p for p, lab in labels.items() if lab == "muon"),
            "downstream": arch.downstream(cfg),
            "heads": arch.output_heads(cfg),
            "readers": {t: list(r) for t, r in pins.readers(arch_name, cfg).items()}}
    count = int(sum(np.size(v) for v in flat.values()))
    return h.hexdigest()[:16], _digest(maps), count


# (arch, size, overrides) -> (init digest, routing + maps digest, parameter count), seed 7.
PINNED = {
    ('gpt', 'tiny', ()): ('0abd8fbf8333ecc5', '4ee240876461ee4d', 32928),
    ('gpt', 'tiny', (('tied_head', False), ('pos', 'learned'), ('init', 'fan_in_normal'), ('norm_affine', False), ('final_norm', False))): ('f89c12a258962ac9', '004f06ffc0a9da79', 41984),
    # ^ one deliberate change with the GPT table: an untied GPT's output head is its 'head'
    # matrix, no longer 'wte' (was '4ee240876461ee4d'; init, routing, readers unchanged).
    ('mlp', 'tiny', ()): ('305498f33e493908', 'a4486a21dfc6874a', 3466),
    ('mlp', 'tiny', (('bias', False), ('init', 'torch_default'), ('depth', 3))): ('f75a5e912214a1ce', 'ee6dcef3db56c52f', 4416),
    ('vit', 'tiny', ()): ('bfae3ed5d3b0a607', 'c43673baa3f36cb3', 26538),
    ('resnet', 'tiny', ()): ('523ff7c8d9ea09c3', '79f49561aa3b1ad2', 19810),
    # taken on the hand-written resnet.init before its table (norm none/group, another head
    # init, a repeated stage width with a strided projection, the small preset)
    ('resnet', 'tiny', (('norm', 'none'),)): ('b82629e380f0c6f2', '79f49561aa3b1ad2', 19642),
    ('resnet', 'tiny', (('norm', 'group'), ('groups', 2), ('head_init', 'xavier_normal'), ('head_gain', 0.5), ('init', 'torch_default'))): ('ee39e8f893723b2e', '79f49561aa3b1ad2', 19810),
    ('resnet', 'tiny', (('blocks', (2, 1)), ('widths', (8, 8)), ('norm', 'none'))): ('96d394e89437c30b', '4a8a666f5654bf1e', 3746),
    ('resnet', 'small', ()): ('3b339024ce96be63', '4e7ba78ed6f73e3b', 174970),
    ('mpsenet', 'tiny', ()): ('b8dd743de4f9c826', 'fb470900b1596add', 14884),
}


@pytest.mark.parametrize("case", list(PINNED), ids=lambda c: f"{c[0]}-{c[1]}-{len(c[2])}")
def test_init_routing_and_maps_are_pinned(case):
    assert fingerprint(*case) == PINNED[case]
