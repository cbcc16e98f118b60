"""Every ``driftlab bench`` mode runs with ``--quick`` at its default scale (issue 31:
``bench train --ensemble 8`` crashed at the cpu scale and no test ran it). Row contents are
checked by the per-suite tests (test_bench_mc, test_bench_train, test_bench_layers); here
only that each mode runs end to end through the command line and prints rows."""

import argparse
import json

import pytest

from driftlab.bench import cli as bench_cli
from driftlab.cli import main

# (suite, extra arguments) for each mode whose CLI run no other test makes
MODES = [("theory", ()), ("layers", ()), ("train", ("--ensemble", "8")),
         ("train", ("--ensemble", "2", "--scale", "tiny")), ("inspect", ())]
COVERED_ELSEWHERE = {"mc": "test_bench_mc", "train": "test_bench_train"}


def test_every_suite_has_a_mode_here_or_a_cli_test_elsewhere():
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    suites = next(a.choices for a in parser._actions if a.dest == "suite")
    assert set(suites) == {m for m, _ in MODES} | set(COVERED_ELSEWHERE)


@pytest.mark.parametrize("suite,extra", MODES, ids=[" ".join((s, *e)) for s, e in MODES])
def test_bench_mode_runs_quick_at_its_default_scale(suite, extra, capsys):
    assert main(["bench", suite, *extra, "--quick", "--repeats", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all({"name", "value", "baseline", "ratio"} <= set(r) for r in rows)
    if "--ensemble" in extra:
        scale = "tiny" if "tiny" in extra else "cpu"
        assert all(f"[mlp {scale}]" in r["name"] for r in rows)
