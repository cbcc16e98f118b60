"""The worked examples of docs/your-model.md (issue 33): each file validates with the taps and
readers its docstring describes; the checked-in results are internally consistent (every
verdict word follows from its stored mean, SE and n) and the docs table is the results'
table; and ``--steps`` gives trajectory rows."""

import json
from pathlib import Path

import pytest

from driftlab.models.arch import user_model as um
from driftlab.reports.inspect import t_tests, verdict_table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TAPS = {
    "mlp_relu": {"layer0": ("w2",), "layer1": ("w3",)},
    "swiglu": {f"block{i}.{k}": (f"blocks/{i}/w_down",) for i in (0, 1) for k in ("gate", "up")},
    "relu2_mlp": {f"block{i}.mlp": (f"blocks/{i}/w_proj",) for i in (0, 1)},
    "transformer_prenorm": {f"block{i}.mlp": (f"blocks/{i}/w_out",) for i in (0, 1)},
    "transformer_postnorm": {f"block{i}.mlp": (f"blocks/{i}/w_out",) for i in (0, 1)},
    "moe": {f"expert{e}": (f"experts/{e}/w_out",) for e in range(4)},
}


@pytest.mark.parametrize("name", sorted(TAPS))
def test_example_taps_and_readers(name):
    program = um.validate(um.load(EXAMPLES / f"{name}.py"), 4)
    assert {t.name: t.readers for t in program.taps} == TAPS[name]
    assert program.n_params < 1_000_000


def _results(name):
    lines = (EXAMPLES / "results" / f"{name}.jsonl").read_text().splitlines()
    return json.loads(lines[0]), [json.loads(x) for x in lines[1:]]


@pytest.mark.parametrize("name", sorted(TAPS))
def test_checked_in_verdicts_follow_from_their_numbers(name):
    settings, rows = _results(name)
    assert settings["settings"]["seeds"] == 64
    for r in rows:
        if r["quantity"] == "E[g|p>0]":
            assert t_tests(r["value"], r["se"], r["n"], r["alpha"])["verdict"] == r["verdict"]
            assert len(r["per_seed"]) == r["n"] == 64
        if r["quantity"] == "drift":
            again = t_tests(r["measured"], r["measured_se"], r["n"], r["alpha"], r["margin"])
            assert again["verdict"] == r["verdict"]
    # a planted error in one E[g|p>0] (its sign flipped, or 6 SE added to an inconclusive
    # one) changes its word: the re-derivation has power
    g = next(r for r in rows if r["quantity"] == "E[g|p>0]")
    planted = g["value"] + 6 * g["se"] if g["verdict"] == "inconclusive" else -g["value"]
    assert t_tests(planted, g["se"], g["n"], g["alpha"])["verdict"] != g["verdict"]


def test_docs_table_is_the_results_table():
    named = {name: _results(name)[1] for name in TAPS}
    table = verdict_table(named)
    assert (EXAMPLES / "results" / "table.md").read_text().strip() == table
    assert table in (ROOT / "docs" / "your-model.md").read_text()


def test_steps_gives_trajectory_rows():
    from driftlab.reports.inspect import inspect, render

    rows = inspect(str(EXAMPLES / "mlp_relu.py"), seeds=3, samples=8, drift_steps=2, steps=3,
                   probes=1, pairs=1)
    traj = [r for r in rows if r["quantity"] == "trajectory"]
    # steps 0…3 of both readers' means, steps 0…2 of both taps' E[g|p>0]
    assert {(r["of"], r["step"]) for r in traj} == \
        {(f"mean:{w}", t) for w in ("w2", "w3") for t in range(4)} | \
        {(f"g+:{k}", t) for k in ("layer0", "layer1") for t in range(3)}
    assert all(r["n"] == 3 and r["tap"] in ("layer0", "layer1") for r in traj)
    step0 = [r for r in traj if r["of"].startswith("mean:") and r["step"] == 0]
    assert all(r["measured"] == 0 and r["first_order"] == 0 for r in step0)
    assert "trajectory (theory trajectory rows)" in render(rows)
