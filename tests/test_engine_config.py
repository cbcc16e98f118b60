"""TrainConfig validation, the ``driftlab train`` CLI, and the files a run writes."""

import json

import pytest

from driftlab.cli import main
from driftlab.models.engine.train import TrainConfig
from driftlab.models.engine.train_cli import parse_override

# Matches BASE in test_engine_checkpoint.py, so the compiled step is shared.
FLAGS = ["--arch", "mlp", "--act", "relu", "--data", "synthetic", "--size", "tiny",
         "--steps", "8", "--batch-size", "8", "--lr", "0.05", "--optimizer", "momentum",
         "--schedule", "cosine", "--warmup-steps", "2", "--grad-clip", "1.0",
         "--log-every", "2", "--eval-batches", "1", "--no-progress"]


@pytest.mark.parametrize("field,value,allowed", [
    ("arch", "lstm", "mlp"), ("size", "huge", "tiny"), ("optimizer", "lion", "adamw"),
    ("schedule", "step", "cosine"), ("dtype", "float16", "bfloat16"), ("steps", 0, "positive"),
    ("batch_size", 2.5, "positive"), ("lr", -1.0, "positive"), ("grad_clip", 0.0, "None"),
    ("eps", -1e-3, ">= 0"), ("warmup_steps", -1, "non-negative"), ("log_every", 0, "positive"),
    ("model_overrides", (("depth",),), "pairs"), ("instrument", "yes", "True"),
    ("out", "", "non-empty"),
])
def test_validate_names_field_and_allowed_values(field, value, allowed):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}=.*allowed: .*{allowed}"):
        TrainConfig(**{field: value}).validate()


def test_validate_act_and_resume():
    with pytest.raises(ValueError, match="TrainConfig.act.*relu"):
        TrainConfig(act="swish").validate()
    with pytest.raises(ValueError, match="TrainConfig.resume"):
        TrainConfig(resume=True).validate()
    assert TrainConfig().validate() == TrainConfig()


def test_parse_override():
    assert parse_override("depth=3") == ("depth", 3)
    assert parse_override("gain=1.5") == ("gain", 1.5)
    assert parse_override("bias=false") == ("bias", False)
    assert parse_override("init=xavier_normal") == ("init", "xavier_normal")
    assert parse_override("shape=[2, 3]") == ("shape", (2, 3))
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_override("depth")


@pytest.mark.parametrize("args,named", [
    (["--optimizer", "lion"], "optimizer"), (["--dtype", "float16"], "dtype"),
    (["--arch", "lstm"], "arch"), (["--set", "depth=0"], "depth"),
    (["--set", "widht=4"], "widht"), (["--batch-size", "0"], "batch_size"),
    (["--resume"], "resume"), (["--act", "swish"], "act"), (["--size", "huge"], "size"),
])
def test_cli_bad_values_exit_2_naming_the_field(args, named, capsys):
    assert main(["train", *FLAGS, *args]) == 2
    err = capsys.readouterr().err
    assert "error" in err and named in err


def test_cli_json_run_writes_metrics_and_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FLAGS, "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 8 and summary["status"] == "ok"
    assert set(summary["layers"]) == {"layer0"}  # layer1 is read by the head
    assert summary["layers"]["layer0"]["downstream"] == "layer1/w"
    assert summary["heads"]["head/w"]["reads"] == "layer1"
    assert "w_mean_change" in summary["heads"]["head/w"]
    assert set(summary["taps"]) == {"layer0", "layer1"}
    for key in ("final_loss", "val_loss", "val_accuracy"):
        assert isinstance(summary[key], float)
    conf = json.loads((out / "config.json").read_text())
    assert conf["train"]["optimizer"] == "momentum" and conf["model"]["in_dim"] == 64
    assert conf["data"]["name"] == "synthetic" and conf["n_devices"] >= 1
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 4, 6, 7]
    first = records[0]
    assert set(first["taps"]) == {"layer0", "layer1"}
    assert set(first["weights"]) == {"layer0/w", "layer1/w", "head/w"}
    # Step 0 describes the initial weights: no change yet; ReLU at init ~50% sparse.
    assert all(w["mean_change"] == 0.0 for w in first["weights"].values())
    assert 0.3 < first["taps"]["layer0"]["sparsity"] < 0.7
    assert first["lr"] == 0.0 and records[1]["lr"] > 0  # warmup starts at 0
    assert all(r["loss"] > 0 for r in records)
