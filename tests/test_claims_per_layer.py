"""Claim 1a rows come only from each architecture's default per-layer variant."""

from driftlab.reports.claims import per_layer_claims


def _row(variant, tap, measured, se=1e-3, seeds=64):
    return {"variant": variant, "tap": tap, "measured": measured, "measured_se": se,
            "predicted": measured, "predicted_se": se, "seeds": seeds, "agree": True}


def test_diagnostic_control_and_power_variants_are_not_claim_rows():
    rows = [_row("mlp", "layer0", 0.01), _row("mlp", "layer1", 0.02),
            _row("resnet, norm=batch", "stem.act", 0.0),
            _row("resnet, norm=none (control)", "stem.act", 0.01),
            _row("gpt untied head", "block0.mlp", 0.0),
            _row("gpt fan-in init, untied, no final norm", "block0.mlp", 0.01),
            _row("POWER: gpt default, curvature sign flipped", "block0.mlp", -0.01)]
    tests = per_layer_claims(rows)
    names = [t.claim for t in tests]
    assert names == ["1a. E[g|p>0] ≥ 0 at init, every tap: mlp",
                     "1a. E[g|p>0] ≥ 0 at init, every tap: resnet, norm=batch"]


def test_every_tap_must_hold_for_the_architecture_to_hold():
    positive = per_layer_claims([_row("mlp", "layer0", 0.01), _row("mlp", "layer1", 0.02)])
    one_zero = per_layer_claims([_row("mlp", "layer0", 0.01), _row("mlp", "layer1", 0.0)])
    assert positive[0].result.p < 1e-6
    assert one_zero[0].result.p > 0.1
