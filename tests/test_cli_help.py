"""Issue 10: --help texts, the train summary table, pytest's summary line."""

import sys
from pathlib import Path

import pytest

from driftlab.cli import main
from driftlab.models.engine.train_cli import format_table


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


# --- help that is true (issue 22): fast, complete, and read from the registries ----------

def _all_help_argvs():
    """argv of `driftlab --help` and of every subcommand's (and sub-action's) --help."""
    import argparse

    from driftlab.cli import SUBCOMMANDS, command_parser

    argvs = [["--help"]]
    for name in SUBCOMMANDS:
        argvs.append([name, "--help"])
        _, parser = command_parser(name)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                argvs += [[name, sub, "--help"] for sub in action.choices]
    return argvs


def test_no_help_imports_jax():
    """`--help` answers before JAX starts (it took ~9 s when JAX came first). One fresh
    interpreter asks every help in turn and names the first one after which jax is loaded."""
    import json
    import subprocess
    import textwrap

    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from driftlab.cli import main
        for argv in {json.dumps(_all_help_argvs())}:
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    main(argv)
                except SystemExit:
                    pass
            if "jax" in sys.modules:
                print("jax imported by: driftlab " + " ".join(argv))
                break
        else:
            print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean", out.stdout


def test_the_check_for_jax_can_fail():
    """The subprocess check above sees an import: planted via a module that loads jax."""
    import subprocess

    code = ("import sys; import driftlab.models.engine.train_config; "
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_every_option_states_its_default():
    import argparse

    from driftlab.cli import SUBCOMMANDS, command_parser

    def parsers():
        for name in SUBCOMMANDS:
            _, parser = command_parser(name)
            yield name, parser
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    yield from ((f"{name} {k}", p) for k, p in action.choices.items())

    missing = []
    for name, parser in parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.required \
                    or action.default is argparse.SUPPRESS:
                continue  # flags, required options, positionals, --help
            text = formatter._get_help_string(action) or ""
            if "default" not in text.lower():
                missing.append(f"driftlab {name} {action.option_strings[0]}")
    assert not missing, missing


def test_train_help_lists_the_registries(capsys):
    import dataclasses

    from driftlab.activations import NAMES
    from driftlab.models.arch.base import ARCH_MODULES, get_arch
    from driftlab.models.engine.recipes import RECIPE_VERSIONS
    from driftlab.models.engine.train import TrainConfig

    text = " ".join(_help(capsys, ["train", "--help"]).split())  # unwrap the lines
    for name in NAMES:
        assert name in text.split("activations (--act): ")[1].split(";")[0]
    for tag in RECIPE_VERSIONS:
        assert f"{tag}:" in text
    for arch in ARCH_MODULES:
        cfg = get_arch(arch).config("tiny", "relu")
        listed = text.split(f" {arch}: ")[1].split(" ")
        fields = [f.name for f in dataclasses.fields(cfg) if f.name != "act"]
        assert [w.rstrip(",") for w in listed[:len(fields)]] == fields, arch
    from driftlab.cli import command_parser

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    _, parser = command_parser("train")
    checked = 0
    for action in parser._actions:
        if action.dest in defaults and action.nargs != 0 and action.dest not in ("out", "recipe"):
            assert f"(default: {defaults[action.dest]})" in action.help, action.dest
            checked += 1
    assert checked >= 20


def test_source_registry_matches_the_imported_values():
    import dataclasses
    import importlib

    from driftlab.models.arch.base import ARCH_MODULES
    from driftlab.models.engine.train import TrainConfig
    from driftlab.source_registry import config_class, dataclass_defaults

    read = dataclass_defaults("driftlab.models.engine.train_config", "TrainConfig")
    assert read == {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for module in ARCH_MODULES.values():
        cls = getattr(importlib.import_module(module), config_class(module))
        assert list(dataclass_defaults(module, cls.__name__)) == \
            [f.name for f in dataclasses.fields(cls)]


def test_sweep_help_lists_every_preset(capsys):
    from driftlab.reports.presets import PRESETS

    text = _help(capsys, ["sweep", "--help"])
    for name, preset in PRESETS.items():
        assert f"  {name}@{preset.version}: " in text
