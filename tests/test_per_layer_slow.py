"""Heavier per-layer agreement checks (GPT variants, ViT, MP-SENet) and their power."""

import pytest

from driftlab.models.measure.per_layer import LayersSpec, agreement_threshold, run_layers
from driftlab.reports.per_layer import TORCH_VARIANCE_GAUSS

pytestmark = pytest.mark.slow
Z_STAR = agreement_threshold(12)
UNTIED, NO_NORM = ("tied_head", False), ("final_norm", False)


def _agree(spec):
    rows = run_layers(spec, n_checks=12)
    assert all(abs(r.z) <= Z_STAR for r in rows), [(r.tap, r.z) for r in rows]
    return rows


@pytest.mark.parametrize("overrides", [(), (UNTIED,), (UNTIED, NO_NORM)])
def test_gpt_variants_agree(overrides):
    _agree(LayersSpec("gpt", seeds=16, batch_size=16, probes=2, overrides=overrides))


def test_gpt_curvature_decides_and_a_flipped_curvature_is_caught():
    rows = _agree(LayersSpec("gpt", seeds=16, batch_size=16, probes=2))
    assert all(r.curvature < 0 < r.gauss_newton for r in rows)  # RMSNorm + tied head
    bad = run_layers(LayersSpec("gpt", seeds=16, batch_size=16, probes=2,
                                planted_curvature_sign=-1.0), n_checks=12)
    assert all(abs(r.z) > Z_STAR for r in bad)


def test_vit_agrees():
    _agree(LayersSpec("vit", seeds=12, batch_size=16, probes=2))


def test_mpsenet_agrees_with_gaussian_torch_variance():
    _agree(LayersSpec("mpsenet", seeds=3, batch_size=1, probes=2,
                      overrides=TORCH_VARIANCE_GAUSS))
