"""Sweeps: shards partition the grid, finished runs are skipped, summary.csv, CLI errors."""

import csv
import importlib.util

import pytest

from driftlab.cli import main
from driftlab.reports.presets import get_preset
from driftlab.reports.sweep import (is_finished, parse_shard, run_sweep, select_shard)


def _tiny_drift_specs():
    """Two short MLP runs of the drift preset (same model config: one compilation)."""
    specs = [s for s in get_preset("drift").grid("tiny", 2)
             if s.tag_dict["arch"] == "mlp" and s.tag_dict["act"] == "relu"]
    return [s.with_config(steps=3, eval_batches=1) for s in specs]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_the_grid(n):
    grid = get_preset("drift").grid("tiny", 2)
    shards = [select_shard(grid, f"{i}/{n}") for i in range(n)]
    ids = [s.run_id for shard in shards for s in shard]
    assert sorted(ids) == sorted(s.run_id for s in grid)
    assert len(ids) == len(set(ids))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("bad", ["2/2", "-1/2", "0/0", "a/b", "1", "1/2/3"])
def test_bad_shard_raises_naming_the_field(bad):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(bad)


def test_sweep_skips_finished_runs_and_splits_by_shard(tmp_path):
    specs = _tiny_drift_specs()
    out = tmp_path / "sweep"
    first = run_sweep("drift", shard="0/2", out=out, specs=specs, log=None)
    assert first.ran == [specs[0].run_id] and first.selected == 1 and first.total == 2
    second = run_sweep("drift", shard="1/2", out=out, specs=specs, log=None)
    assert second.ran == [specs[1].run_id]
    again = run_sweep("drift", out=out, specs=specs, log=None)
    assert again.ran == [] and sorted(again.skipped) == sorted(s.run_id for s in specs)
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["run_id"] for r in rows) == sorted(s.run_id for s in specs)
    assert all(r["status"] == "ok" and float(r["final_loss"]) > 0 for r in rows)
    assert {r["tag_seed"] for r in rows} == {"0", "1"}
    # A changed config is a different run; a tampered run.json is not "finished".
    changed = specs[0].with_config(steps=4)
    assert not is_finished(changed, out / specs[0].run_id)
    (out / specs[1].run_id / "run.json").write_text("{}")
    assert not is_finished(specs[1], out / specs[1].run_id)
    assert run_sweep("drift", out=out, specs=specs, log=None).ran == [specs[1].run_id]


@pytest.mark.parametrize("argv, field", [
    (["sweep", "nope"], "preset"),
    (["sweep", "drift", "--size", "huge"], "size"),
    (["sweep", "drift", "--shard", "3/2"], "shard"),
    (["sweep", "drift", "--seeds", "0"], "seeds"),
    (["sweep", "drift", "--executor", "ray"], "executor"),
])
def test_cli_bad_values_exit_2(argv, field, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert field in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                    reason="submitit not installed (optional: pip install 'driftlab[cluster]')")
def test_submitit_local_executor(tmp_path):
    spec = _tiny_drift_specs()[:1]
    res = run_sweep("drift", out=tmp_path, specs=spec, executor="submitit",
                    executor_options={"cluster": "local", "timeout_min": 5}, log=None)
    assert res.ran == [spec[0].run_id]
    assert is_finished(spec[0], tmp_path / spec[0].run_id)
