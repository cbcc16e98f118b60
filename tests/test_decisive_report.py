"""The decisive report's analysis: drift statistics exclude heads, pins pair by config,
diverged runs are flagged, ΔBIC separates a hinge from a line, spike comparisons are
paired by seed, and the claims table's verdict words follow planted effects."""

from pathlib import Path

import numpy as np
import pytest

from driftlab.reports import causal, claims, cliff, drift, spikes
from driftlab.reports.analysis import hinge_vs_line_bic, slope_change_at
from driftlab.reports.report import Run
from driftlab.testing import assert_close


def fake_run(tags: dict, config: dict | None = None, layers: dict | None = None,
             heads: dict | None = None, metrics: list | None = None, preset="drift",
             **summary) -> Run:
    run = Run(Path("/nonexistent"), {"preset": preset, "tags": tags,
                                     "config": {"steps": 100, **(config or {})}},
              {"status": "ok", "layers": layers or {}, "heads": heads or {}, **summary})
    run.__dict__["metrics"] = metrics or []  # cached_property: no file needed
    return run


def drift_run(seed, w_change, head_change=0.0, g0=1.0, arch="mlp", act="relu",
              data="synthetic", opt="adamw", sparsity=0.5, val_loss=1.0, pins=()):
    layers = {"t0": {"downstream": "l1/w", "w_std_init": 0.1, "w_mean_change": w_change,
                     "sparsity": sparsity},
              "t1": {"downstream": "l2/w", "w_std_init": 0.1, "w_mean_change": w_change,
                     "sparsity": sparsity}}
    heads = {"t1": {"downstream": "head/w", "w_std_init": 0.1, "w_mean_change": head_change}}
    weights = {"l1/w": {"mean_change": w_change / 2}, "l2/w": {"mean_change": w_change / 2}}
    metrics = [{"step": 0, "loss": 2.0, "taps": {"t0": {"grad_pos_mean": g0},
                                                 "t1": {"grad_pos_mean": g0}},
                "weights": {"l1/w": {"mean_change": 0.0}, "l2/w": {"mean_change": 0.0}}},
               {"step": 10, "loss": 1.5, "taps": {"t0": {"grad_pos_mean": g0}},
                "weights": weights}]
    tags = {"arch": arch, "act": act, "data": data, "optimizer": opt, "seed": seed}
    config = {"arch": arch, "act": act, "data": data, "optimizer": opt, "seed": seed,
              "pins": list(pins)}
    if pins:
        tags["pin"] = pins[0]
    return fake_run(tags, config, layers, heads, metrics, preset="pins" if pins else "drift",
                    val_loss=val_loss)


def test_run_drift_excludes_heads_and_reads_early_and_step0():
    d = drift.run_drift(drift_run(0, w_change=-0.05, head_change=0.3, g0=2.0))
    assert_close(d.w_rel, -0.5)  # heads' +3 std not averaged in
    assert_close(d.head_rel, 3.0)
    assert_close(d.w_rel_early, -0.25)  # step 10 = 10% of 100 steps
    assert_close(d.g0, 2.0)


def test_pins_pair_by_identical_config_and_the_test_sees_a_planted_effect():
    base = [drift_run(s, -0.05, sparsity=0.8 + 0.01 * s) for s in range(4)]
    pinned = [drift_run(s, 0.0, sparsity=0.5 + 0.012 * s, pins=("downstream-mean",))
              for s in range(4)]
    other = [drift_run(s, -0.05, data="embedded") for s in range(4)]  # no partner
    pairs = causal.pair_runs(pinned, base + other)
    assert list(pairs) == [("mlp", "synthetic", "downstream-mean")]
    assert all(b.tags["seed"] == p.tags["seed"] for b, p in pairs[list(pairs)[0]])
    (row,) = causal.pin_effects(pairs)
    assert_close(row["sparsity_test"].mean, 0.3 - 0.002 * 1.5, kind="ops")
    assert row["sparsity_test"].p < 1e-3
    null = causal.pin_effects(causal.pair_runs(
        [drift_run(s, 0.0, sparsity=0.8 + 0.01 * ((s * 7) % 3), pins=("downstream-mean",))
         for s in range(4)], base))[0]
    assert null["sparsity_test"].p > 0.05


def _trade_run(seed, sparsity, acc, losses=(2.0, 1.0), status="ok", lr=1e-3):
    metrics = [{"step": i, "loss": l} for i, l in enumerate(losses)]
    return fake_run({"act": "relu", "lr": lr, "seed": seed}, {}, {"t": {"sparsity": sparsity}},
                    metrics=metrics, preset="tradeoff", val_accuracy=acc, final_loss=losses[-1],
                    status=status)


def test_cliff_flags_diverged_runs_and_finds_a_planted_cliff():
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(3):
        for x in np.linspace(0.1, 0.95, 12):
            runs.append(_trade_run(seed, x, 0.95 - 0.05 * x - 3 * max(x - 0.7, 0)
                                   + rng.normal(0, 0.005), lr=float(x)))
    runs.append(_trade_run(0, 0.99, 0.1, losses=(2.0, 2.5)))  # loss above its start
    runs.append(_trade_run(1, 0.0, 0.0, losses=(2.0, float("nan")), status="diverged"))
    a = cliff.analyse(runs)
    flags = [(p["diverged"], p["non_finite"]) for p in a["points"][-2:]]
    assert flags == [(True, False), (True, True)]
    assert a["without_diverged"]["n"] == 36 and a["without_diverged"]["is_cliff"]
    assert all(c < -2 for c in a["slope_change_at_knee"])


def test_delta_bic_prefers_a_line_for_a_line():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 40)
    line, _ = hinge_vs_line_bic(x, 0.9 - 0.1 * x + rng.normal(0, 0.01, 40))
    hinge, _ = hinge_vs_line_bic(x, 0.9 - 2 * np.maximum(x - 0.6, 0) + rng.normal(0, 0.01, 40))
    assert line < 10 < hinge
    assert np.isnan(slope_change_at([0.1, 0.2, 0.3, 0.8], [1, 1, 1, 0], 0.7))


def _spike_row(act, p_ratio, loss):
    return {"act": act, "seeds": [0, 1, 2], "p_ratio_mid": list(p_ratio),
            "val_loss": list(loss)}


def test_spike_comparisons_pair_by_seed():
    rows = [_spike_row("relu", [10, 12, 11], [2.0, 2.1, 2.0]),
            _spike_row("relu2", [40, 50, 44], [1.9, 2.0, 1.95]),
            _spike_row("clipped_relu2:6", [20, 20, 20], [1.8, 1.9, 1.85]),
            _spike_row("gelu2", [30, 30, 30], [1.7, 1.75, 1.72])]
    c = spikes.comparisons(rows, "clipped_relu2:6", "clipped_gelu2:6")
    assert_close(np.asarray(c["relu2_amplifies"]), np.log([4, 50 / 12, 4]))
    # differences of losses ≈ 2: their rounding is relative to 2, not to the difference
    assert_close(np.asarray(c["clip_helps"]), np.array([0.1, 0.1, 0.1]), scale=2.0)
    assert_close(np.asarray(c["gelu2_below:relu"]), np.array([0.3, 0.35, 0.28]), scale=2.0)
    assert_close(np.asarray(c["gelu2_below:clipped_relu2:6"]), np.array([0.1, 0.15, 0.13]), scale=2.0)
    assert "gelu2_below:gelu2" not in c
    assert "gelu2_vs_clipped" not in c


@pytest.mark.parametrize("sign, word", [(-1, "holds"), (+1, "reversed")])
def test_claims_verdicts_follow_planted_drift(sign, word):
    """A planted drift of ±0.05 init-std (SD 0.005, 5 seeds) decides every cell of claim 2,
    one cell per (arch, data, optimizer), never pooled."""
    rng = np.random.default_rng(2)
    runs = [drift_run(s, sign * (0.05 + 0.005 * rng.standard_normal()), arch=a,
                      data=data, opt=opt)
            for a in ("mlp", "gpt") for data in ("synthetic", "embedded")
            for opt in ("adamw", "momentum") for s in range(5)]
    text, verdicts = claims.section(claims.build(drift.collect_cells(runs), [], {}, {}), "C")
    early = next(v for v in verdicts if v.claim.key == "2")
    assert len(early.cells) == 8 and all(c.result.n == 5 for c in early.cells)
    assert {c.word for c in early.cells} == {word} and early.word == word
    assert f"**{word}** (every cell; {word} 8)" in text


def test_claims_with_no_effect_are_absent_within_the_margin():
    """Zero drift with SD 0.001 (≪ δ = 0.01) over 8 seeds: every cell *absent* (TOST)."""
    rng = np.random.default_rng(3)
    runs = [drift_run(s, 0.001 * rng.standard_normal(), data=d)
            for d in ("synthetic", "embedded") for s in range(8)]
    _, verdicts = claims.section(claims.build(drift.collect_cells(runs), [], {}, {}), "C")
    early = next(v for v in verdicts if v.claim.key == "2")
    assert {c.word for c in early.cells} == {"absent"} and early.word == "absent"


def test_shift_decomposition_terms_are_read_from_first_and_last_records():
    def rec(step, p, d, a, init):
        return {"step": step, "shift": {"t0": {"p_mean": p, "drift_change": d,
                                               "align_change": a, "p_mean_init_reader": init}}}
    run = fake_run({"arch": "gpt", "act": "relu", "data": "embedded", "optimizer": "adamw"},
                   metrics=[rec(0, 0.1, 0.0, 0.0, 0.1), rec(50, -0.3, -0.05, -0.25, 0.0)])
    sh = causal.run_shift(run)
    assert_close(sh, {"dp": -0.4, "drift_change": -0.05, "align_change": -0.25,
                      "stream_change": -0.1}, scale=0.3)
    assert_close(sh["dp"], sh["drift_change"] + sh["align_change"] + sh["stream_change"], scale=0.3)
    assert causal.run_shift(fake_run({}, metrics=[rec(0, 0, 0, 0, 0)])) is None


def test_sign_turn_needs_two_logged_steps_of_the_opposite_sign():
    steps = [0, 10, 20, 30, 40, 50]
    assert drift.sign_turn(steps, [0.0, -0.1, -0.2, 0.1, 0.2, 0.3]) == 30
    assert drift.sign_turn(steps, [0.0, -0.1, 0.1, -0.2, -0.1, -0.3]) is None  # lone point
    assert drift.sign_turn(steps, [0.0] * 6) is None
