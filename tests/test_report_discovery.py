"""``driftlab report`` on what a user has: ``driftlab train`` runs and seed-* ensembles as
well as sweeps; and what it cannot use (damaged, unfinished, unknown preset, another preset
version, diverged only) is skipped and named, never stops the report or vanishes."""

import dataclasses
import json
import shutil

import pytest

from driftlab.cli import main
from driftlab.reports import report, sweep
from driftlab.reports.discover import discover
from driftlab.reports.presets import get_preset


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    from driftlab.models.engine.train import TrainConfig, train

    out = tmp_path_factory.mktemp("train") / "mlp"
    train(TrainConfig(arch="mlp", size="tiny", steps=3, eval_batches=1, out=str(out),
                      progress=False))
    return out


def _copy_run(src, dst, seed=None):
    shutil.copytree(src, dst)
    if seed is not None:
        cfg = json.loads((dst / "config.json").read_text())
        cfg["train"]["seed"] = seed
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _sweep_run(root, name, preset="drift", version=None, status="ok"):
    spec = get_preset("drift").grid("tiny", 1)[0].as_dict()
    spec["preset"] = preset
    if version is not None:
        spec["version"] = version
    d = root / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps(spec))
    (d / "summary.json").write_text(json.dumps({"status": status, "steps": 2,
                                                "final_loss": float("nan")}))
    return d


def test_report_takes_a_train_run_and_a_seed_ensemble(train_run, tmp_path, capsys):
    ens = tmp_path / "ens"
    for s in (0, 1):
        _copy_run(train_run, ens / f"seed-{s}", seed=s)
    out = tmp_path / "rep"
    assert main(["report", str(train_run), str(ens), "--out", str(out), "--no-theory"]) == 0
    text = (out / "report.md").read_text()
    assert "Runs: 3 completed and 0 diverged" in text
    section = text.split("## Training runs (`driftlab train`)")[1].split("\n## ")[0]
    # The two ensemble members pool into one row with both seeds (and the copy of seed 0).
    assert "| mlp | relu | synthetic | adamw | 3 | 0, 0, 1 |" in section


def test_damaged_summary_is_skipped_and_named(train_run, tmp_path):
    root = tmp_path / "tree"
    _copy_run(train_run, root / "good")
    bad = _copy_run(train_run, root / "bad")
    (bad / "summary.json").write_text('{"status": "ok", "arch"')  # killed mid-write
    path = report.write_report([root], tmp_path / "rep", theory="off")
    text = path.read_text()
    assert "Runs: 1 completed" in text
    assert f"`{bad}`: summary.json damaged" in text


def test_unknown_preset_and_other_version_are_named_not_pooled(tmp_path):
    current = get_preset("drift").version
    _sweep_run(tmp_path, "a", preset="no_such_preset")
    _sweep_run(tmp_path, "b", version=str(int(current) - 1))
    found = discover([tmp_path])
    assert found.runs == []
    reasons = dict(found.skipped)
    assert "unknown preset 'no_such_preset'" in reasons[str(tmp_path / "a")]
    assert f"current v{current}: versions are not pooled" in reasons[str(tmp_path / "b")]


def test_diverged_only_directory_says_so(tmp_path):
    _sweep_run(tmp_path / "runs", "d", status="diverged")
    text = report.write_report([tmp_path / "runs"], tmp_path / "rep", theory="off").read_text()
    assert "Runs: 0 completed and 1 diverged" in text and "finished runs" not in text
    assert "**Only diverged runs** for drift (1)" in text


def test_sweep_moves_a_finished_run_of_another_spec_aside(tmp_path, capsys):
    spec = get_preset("drift").grid("tiny", 1)[0]
    old = _sweep_run(tmp_path, spec.run_id, version="0")
    sweep._start(spec, old, keep=True)
    moved = tmp_path / sweep.SUPERSEDED_DIR / f"{spec.run_id}.v0"
    assert json.loads((moved / "summary.json").read_text())["status"] == "ok"
    assert json.loads((old / "run.json").read_text()) == spec.as_dict()
    assert "moved to" in capsys.readouterr().err


def test_load_run_gives_flat_rows_for_a_run_and_an_ensemble(train_run, tmp_path):
    import driftlab

    rows = driftlab.load_run(train_run)
    taps = {r["tap"] for r in rows}
    steps = sorted({r["step"] for r in rows})
    assert len(rows) == len(taps) * len(steps) and steps[0] == 0
    assert all(isinstance(v, (int, float, str, type(None))) for r in rows for v in r.values())
    assert {"run", "arch", "seed", "loss", "sparsity", "grad_pos_mean"} <= set(rows[0])
    ens = tmp_path / "ens"
    for s in (3, 4):
        _copy_run(train_run, ens / f"seed-{s}", seed=s)
    rows = driftlab.load_run(ens)
    assert {r["seed"] for r in rows} == {3, 4}
    final = driftlab.load_run(ens, final=True)
    assert len(final) == 2 * len(taps) and "val_loss" in final[0]


def test_load_run_gives_flat_rows_for_a_sweep_directory(tmp_path):
    """A sweep run as an ensemble (its checkpoint in _ensembles/) and a real
    ``train_ensemble`` directory: every member's rows, scalar values only, nothing read
    from the ensembles' own files."""
    import driftlab
    from driftlab.models.engine.train import train_ensemble
    from driftlab.reports.sweep import run_sweep

    specs = [s.with_config(steps=3, eval_batches=1) for s in get_preset("drift").grid("tiny", 2)
             if s.tag_dict["arch"] == "mlp" and s.tag_dict["act"] == "relu"]
    run_sweep("drift", out=tmp_path / "sweep", specs=specs, log=None)
    # the sweep's config and ensemble size: its compiled steps are reused
    train_ensemble(dataclasses.replace(specs[0].config, out=str(tmp_path / "sweep" / "ens")),
                   "5,6")
    rows = driftlab.load_run(tmp_path / "sweep")
    assert all(isinstance(v, (int, float, str, type(None))) for r in rows for v in r.values())
    by_run = {}
    for r in rows:
        by_run.setdefault(r["run"], set()).add((r["preset"], r["seed"]))
    want = {str(tmp_path / "sweep" / s.run_id): {("drift", s.tag_dict["seed"])} for s in specs}
    want.update({str(tmp_path / "sweep" / "ens" / f"seed-{s}"): {("train", s)} for s in (5, 6)})
    assert by_run == want
    member = str(tmp_path / "sweep" / "ens" / "seed-5")
    assert sorted({r["step"] for r in rows if r["run"] == member}) == [0, 1, 2]  # log_every 1
    assert {"loss", "tap", "sparsity", "w_mean"} <= set(rows[0])
