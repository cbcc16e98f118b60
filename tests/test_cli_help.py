"""Issue 10: --help texts, the train summary table, pytest's summary line."""

import sys
from pathlib import Path

import pytest

from driftlab.cli import main
from driftlab.models.train_cli import format_table


def _help(capsys, argv):
    with pytest.raises(SystemExit):
        main(argv)
    return capsys.readouterr().out


def test_help_texts(capsys):
    top = _help(capsys, ["--help"])
    assert "Bug or Feature" in top and "Examples" in top and "driftlab train --out" in top
    train = _help(capsys, ["train", "--help"])
    for needle in ("(default: mlp)", "(default: 100)", "--overwrite", "--checkpoint-minutes"):
        assert needle in train
    bench = _help(capsys, ["bench", "--help"])
    assert "mc: Monte Carlo benchmark" in bench and "train: Training benchmarks" in bench


def _summary(**extra):
    return {"arch": "gpt", "act": "clipped_relu2:15", "steps": 300, "final_loss": 3.21,
            "layers": {"blocks/3/mlp/activation_out": {
                "downstream": "blocks/3/mlp/fc_out/very/long/path", "w_mean_change": -1.2345e+03,
                "w_mean_se": 1e-6, "sparsity": 0.5, "spike_ratio": 123456.7}}, **extra}


def test_train_table_columns_never_merge_and_show_validation():
    text = format_table(_summary(val_loss=3.3, val_accuracy=0.125))
    head, cols, row = text.splitlines()
    assert "val accuracy 0.125" in head and "val loss 3.3" in head
    cells = row.split("  ")
    cells = [c.strip() for c in cells if c.strip()]
    assert cells[0] == "blocks/3/mlp/activation_out"
    assert cells[1] == "blocks/3/mlp/fc_out/very/long/path"
    assert len(cells) == 6 and cells[-1] == "123456.7"


def test_train_table_without_validation_prints_a_dash_not_nan():
    text = format_table(_summary(final_loss=float("nan"),
                                 layers={"t": {"downstream": "w", "sparsity": None}}))
    assert "nan" not in text and "—" in text and "no validation" in text


def test_pytest_summary_line_is_not_hidden():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        pytest.skip("tomllib needs Python 3.11")
    root = Path(__file__).resolve().parents[1]
    addopts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]["addopts"]
    assert "-q" not in addopts.split()
    ci = (root / ".ci" / "run").read_text()
    assert "python -m pytest -q" not in ci


def test_train_table_says_when_speech_fell_back_to_synthetic():
    text = format_table(_summary(data="embedded:synthetic-fallback"))
    assert "synthetic signals" in text.splitlines()[1]
