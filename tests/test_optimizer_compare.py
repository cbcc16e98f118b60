"""reports/optimizer_compare: the grid's configs, and the section + figure end to end on a
tiny 3-optimizer × 2-seed × 40-step grid; the tests can detect a planted difference."""

import dataclasses
import json

import numpy as np
import pytest

from driftlab.reports import optimizer_compare as oc
from driftlab.testing import assert_close


def test_grid_configs():
    cfgs = oc.optimizer_configs(1500, [0, 1, 2], "/tmp/x")
    assert len(cfgs) == 9
    by = {(c.optimizer, c.seed): c for c in cfgs}
    assert set(by) == {(o, s) for o in ("muon", "adamw", "sgd") for s in (0, 1, 2)}
    m, a, s = by["muon", 0], by["adamw", 0], by["sgd", 0]
    assert (m.lr, m.muon_lr_ratio, m.adam_beta2) == (0.005, 0.1, 0.95)
    assert a.lr == 0.005 and s.lr == oc.SGD_LR
    for c in cfgs:  # only the optimizer differs
        # paper-gpt@2's schedule as run, boundaries scaled: 4350 → 910, 5800 → 1214 of 1500
        assert (c.steps, c.schedule, c.warmup_steps, c.warmdown_steps, c.warmdown_end,
                c.batch_size) == (1500, "wcd", 0, 304, 1214, 16)
        assert (c.recipe, c.muon_scale, c.muon_momentum, c.muon_ns_dtype) == \
            ("paper-gpt@2", "paper", "sum", "bfloat16")
        assert dict(c.model_overrides)["n_embd"] == 64 and c.act == "relu"
        assert c.out.endswith(f"{c.optimizer}-s{c.seed}")
    with pytest.raises(ValueError, match="optimizer='lion' invalid"):
        oc.optimizer_configs(100, [0], "/tmp/x", optimizers=("lion",))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from driftlab.models.engine.train import train

    root = tmp_path_factory.mktemp("opt")
    dirs = []
    for cfg in oc.optimizer_configs(40, [0, 1], root, log_every=1):
        # Tiny model (the grid's shape is checked above); keeps the test < 60 s on 2 cores.
        cfg = dataclasses.replace(cfg, size="tiny", eval_batches=1, model_overrides=tuple(
            (k, v) for k, v in cfg.model_overrides
            if k not in ("n_layer", "n_embd", "n_heads", "block_size")))
        train(cfg)
        dirs.append(cfg.out)
    return dirs


def test_section_and_figure_end_to_end(tiny_runs, tmp_path):
    md = oc.optimizer_section(tiny_runs, figure="optimizers.png")
    assert md.startswith("## Drift under Muon vs AdamW vs SGD")
    for o in ("muon", "adamw", "sgd"):
        assert f"| {o} | block0.mlp |" in md and f"| {o} | block1.mlp |" in md
    for a, b in oc.PAIRS:
        assert md.count(f"| {a} vs {b} |") == 2  # drift and sparsity
    runs = [oc.load_run(d) for d in tiny_runs]
    assert {(r["optimizer"], r["seed"]) for r in runs} == \
        {(o, s) for o in oc.OPTIMIZERS for s in (0, 1)}
    assert all(r["steps"] == 40 and len(r["curve"]) >= 4 for r in runs)
    assert all(np.isfinite(b["drift_z"]) for r in runs for b in r["blocks"].values())
    rows = oc.compare(runs)
    assert len(rows) == 6 and all(r["n"] == 2 for r in rows)
    md_path = oc.write_section(tiny_runs, tmp_path)
    assert (tmp_path / "optimizers.png").stat().st_size > 10_000
    assert open(md_path).read().endswith("![drift and sparsity by optimizer](optimizers.png)\n")


def _fake_runs(drift_by_opt, n_seeds=8, seed=0):
    rng = np.random.default_rng(seed)
    runs = []
    for opt, mu in drift_by_opt.items():
        for s in range(n_seeds):
            runs.append({"optimizer": opt, "seed": s, "val_loss": 1.0, "steps": 10,
                         "blocks": {f"block{i}.mlp": {"drift_z": mu + rng.normal(0, 0.5),
                                                      "sparsity": 0.5 + rng.normal(0, 0.01),
                                                      "grad_pos_mean": 0.0}
                                    for i in range(2)}})
    return runs


def test_compare_detects_planted_difference_and_not_a_null_one():
    rows = oc.compare(_fake_runs({"muon": -1.0, "adamw": -6.0, "sgd": -6.0}))
    word = {(r["a"], r["b"], r["metric"]): r["word"] for r in rows}
    assert word["muon", "adamw", "drift_z"] == "muon > adamw"
    assert word["muon", "sgd", "drift_z"] == "muon > sgd"
    assert word["adamw", "sgd", "drift_z"] == "inconclusive at this scale"
    assert word["muon", "adamw", "sparsity"] == "inconclusive at this scale"


def test_load_run_reads_summary(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({
        "steps": 5, "status": "ok", "val_loss": 2.0,
        "layers": {"block0.mlp": {"downstream": "block0/mlp/w_out", "w_mean_change": -0.02,
                                  "w_mean_se": 0.01, "sparsity": 0.6, "grad_pos_mean": 0.1}}}))
    (tmp_path / "config.json").write_text(json.dumps({"train": {"optimizer": "sgd",
                                                                "seed": 3}}))
    r = oc.load_run(tmp_path)
    assert_close(r["blocks"]["block0.mlp"]["drift_z"], -2.0)
    assert (r["optimizer"], r["seed"], r["curve"]) == ("sgd", 3, [])
