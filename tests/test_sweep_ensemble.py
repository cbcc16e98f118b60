"""Sweeps train cells differing only in seed as one seed ensemble (issue 19), bounded by
max_ensemble, with the same results as one run at a time; the sparsity-law run is one
engine call with a hook and reads no checkpoint itself."""

import csv
import json

import numpy as np
import pytest

from driftlab.reports import sweep
from driftlab.reports.presets import get_preset, sparsity_law_steps
from driftlab.reports.sweep import ensemble_groups, run_sweep


def _specs(seeds=3):
    specs = [s for s in get_preset("drift").grid("tiny", seeds)
             if s.tag_dict["arch"] == "mlp" and s.tag_dict["act"] == "relu"]
    return [s.with_config(steps=3, eval_batches=1) for s in specs]


def test_groups_differ_only_in_seed_and_respect_the_bound():
    specs = _specs(3)
    assert len(specs) == 3
    assert [len(g) for g in ensemble_groups(specs, 8)] == [3]
    assert [len(g) for g in ensemble_groups(specs, 2)] == [2, 1]
    assert [len(g) for g in ensemble_groups(specs, 1)] == [1, 1, 1]
    other = specs[0].with_config(lr=specs[0].config.lr * 2)
    assert sorted(len(g) for g in ensemble_groups(specs + [other])) == [1, 3]
    with pytest.raises(ValueError, match="max_ensemble"):
        ensemble_groups(specs, 0)


def _csv(path):
    with open(path) as fh:
        return {r["run_id"]: r for r in csv.DictReader(fh)}


def test_ensemble_sweep_equals_one_run_at_a_time(tmp_path):
    specs = _specs(2)
    ens = run_sweep("drift", out=tmp_path / "ens", specs=specs, log=None)
    one = run_sweep("drift", out=tmp_path / "one", specs=specs, log=None, max_ensemble=1)
    assert sorted(ens.ran) == sorted(one.ran) == sorted(s.run_id for s in specs)
    assert len(list((tmp_path / "ens" / sweep.ENSEMBLES_DIR).iterdir())) == 1
    a, b = _csv(tmp_path / "ens" / "summary.csv"), _csv(tmp_path / "one" / "summary.csv")
    for run_id in a:
        assert a[run_id]["status"] == "ok"
        # tol: a vmapped member's float32 loss vs the single run's: reductions in another order (as test_engine_ensemble's RTOL)
        assert float(a[run_id]["final_loss"]) == pytest.approx(float(b[run_id]["final_loss"]),
                                                                rel=1e-5)
        assert (tmp_path / "ens" / run_id / "summary.json").exists()
    again = run_sweep("drift", out=tmp_path / "ens", specs=specs, log=None)
    assert again.ran == [] and len(again.skipped) == 2


def test_sparsity_law_uses_a_hook_and_reads_no_checkpoint(tmp_path):
    assert not hasattr(sweep, "_load_params")
    spec = [s for s in get_preset("sparsity_law").grid("tiny", 1)
            if s.tag_dict["lr"] == 1e-2][0].with_config(steps=4, eval_batches=1)
    res = run_sweep("sparsity_law", out=tmp_path / "law", specs=[spec], log=None)
    assert res.ran == [spec.run_id]
    points = [json.loads(x) for x in
              (tmp_path / "law" / spec.run_id / sweep.LAW_FILE).read_text().splitlines()]
    assert [p["step"] for p in points] == sparsity_law_steps(4)
    # the hook's point at step 2 equals the law at a checkpoint of step 2
    from driftlab.models.arch.params import unflatten_dict
    from driftlab.models.engine.train import train
    import dataclasses

    cfg = dataclasses.replace(spec.config, out=str(tmp_path / "seg"))
    train(cfg, stop_at=2)
    with np.load(tmp_path / "seg" / "checkpoint.npz", allow_pickle=False) as z:
        params = unflatten_dict({k[7:]: z[k] for k in z.files if k.startswith("params/")})
    want = sweep.law_point(cfg, params, 2)
    got = next(p for p in points if p["step"] == 2)
    for layer, v in want["layers"].items():
        # tol: the law point recomputed from the saved params: only rounding of another evaluation (absolute: ≈ 0 entries)
        assert got["layers"][layer]["measured"] == pytest.approx(v["measured"], abs=1e-9)
        # tol: the same recomputation, relative
        assert got["layers"][layer]["predicted"] == pytest.approx(v["predicted"], rel=1e-9)
