"""Engine knobs for the decisive sweeps: the L1 activation penalty enters the training
objective exactly, and a diverging sweep run is kept as a flagged, finished run."""

import json

import pytest

from driftlab.models.engine.train import TrainConfig, train
from driftlab.reports.presets import get_preset
from driftlab.reports.sweep import run_sweep
from driftlab.testing import assert_close


def test_act_l1_adds_lambda_times_the_penalty_to_the_training_loss(tmp_path):
    # lr ≈ 0: both runs end at the init, so their validation losses must agree.
    base = dict(arch="mlp", steps=1, log_every=1, progress=False, eval_batches=1, lr=1e-30)
    plain = train(TrainConfig(**base, out=str(tmp_path / "a")))
    lam = 0.5
    pen = train(TrainConfig(**base, act_l1=lam, out=str(tmp_path / "b")))
    rec = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0])
    rec0 = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["act_l1_penalty"] > 0
    # tol: float32: the penalized loss is summed on device; the test re-adds the logged terms
    assert rec["loss"] == pytest.approx(rec0["loss"] + lam * rec["act_l1_penalty"], rel=1e-5)
    # Validation reports the model's loss alone.
    assert_close(pen["val_loss"], plain["val_loss"], dtype="float32")


@pytest.mark.parametrize("value", [-0.1, float("inf"), "0.1"])
def test_bad_act_l1_names_the_field(value):
    with pytest.raises(ValueError, match="act_l1"):
        TrainConfig(act_l1=value).validate()


def test_a_diverging_sweep_run_is_finished_and_flagged(tmp_path):
    spec = get_preset("tradeoff").grid("tiny", 1)[0].with_config(lr=1e12, steps=20,
                                                                  eval_batches=1)
    res = run_sweep("tradeoff", out=tmp_path, specs=[spec], log=None)
    summary = json.loads((tmp_path / spec.run_id / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["reason"]
    again = run_sweep("tradeoff", out=tmp_path, specs=[spec], log=None)
    assert len(res.ran) == 1 and len(again.skipped) == 1
