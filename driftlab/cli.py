"""driftlab: check the expected-gradient, weight-drift, sparsity and spike claims of
"Bug or Feature²" (arXiv 2605.17659) — theorems against Monte Carlo, instrumented training,
experiment sweeps and reports.

Examples:
  driftlab theory check                       every theorem vs Monte Carlo (about 2 min, CPU)
  driftlab train --arch mlp --act relu --steps 200 --out runs/mlp
  driftlab train --out runs/mlp --resume --steps 400      continue a run (its own config)
  driftlab sweep drift --size tiny --out runs/drift
  driftlab report runs/drift --out reports/mine
  driftlab bench mc                           estimator throughput vs baselines

Run ``driftlab COMMAND --help`` for a command's options and defaults.
Exit codes: 0 ok, 1 a check failed, 2 bad input (one line naming the field).

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; only the module of the chosen subcommand is imported, so
``driftlab --help`` stays fast and a bad value fails before JAX starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "theory": ("driftlab.theory_cli", "check the expected-gradient theorems against Monte Carlo"),
    "train": ("driftlab.models.engine.train_cli", "train an instrumented model"),
    "sweep": ("driftlab.reports.sweep_cli", "run an experiment preset's grid (resumable, shardable)"),
    "report": ("driftlab.reports.report_cli", "write the Markdown report with figures and tables"),
    "records": ("driftlab.reports.records", "export finished runs as compact per-preset JSON "
                "Lines records (the report rebuilds from them)"),
    "inspect": ("driftlab.reports.inspect_cli", "does my architecture drift? any JAX model "
                "file with driftlab.tap markers (docs/your-model.md)"),
    "bench": ("driftlab.bench.cli", "benchmarks against baselines (ratios in the same run)"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and every option's default appended to its help unless the
    help already states it (``default`` in its text), the option is required, or it is a
    plain on/off flag; an unset default (None, []) reads "none"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.required or action.nargs == 0 \
                or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        shown = "none" if action.default in (None, []) else "%(default)s"
        return f"{text} (default: {shown})".lstrip()


class UsageError(ValueError):
    """A bad value on the command line: reported in one line, exit code 2."""


def _docstring(module_name: str) -> str:
    """A module's docstring read from its source (without importing it, so no JAX start)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin:
        return ""
    with open(spec.origin, encoding="utf-8") as fh:
        return ast.get_docstring(ast.parse(fh.read())) or ""


def _epilog(command: str) -> str:
    """The subcommand module's docstring; for ``bench``, each suite's first paragraph."""
    if command == "bench":
        return "\n\n".join(f"{suite}: " + _docstring(f"driftlab.bench.{suite}").split("\n\n")[0]
                            for suite in ("mc", "train", "layers", "inspect"))
    return _docstring(SUBCOMMANDS[command][0])


def command_parser(command: str):
    """(module, parser) of one subcommand; importing the module starts no JAX."""
    module = importlib.import_module(SUBCOMMANDS[command][0])
    parser = argparse.ArgumentParser(prog=f"driftlab {command}",
                                     description=SUBCOMMANDS[command][1],
                                     epilog=_epilog(command), formatter_class=HelpFormatter)
    module.add_arguments(parser)
    return module, parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="driftlab",
                                     description=__doc__.split("\n\nEach subcommand")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, helptext) in SUBCOMMANDS.items():
        sub.add_parser(name, help=helptext, add_help=False)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    module, cmd_parser = command_parser(argv[0])
    args = cmd_parser.parse_args(argv[1:])
    from driftlab import compilation_cache

    compilation_cache.enable()
    try:
        return int(module.run(args) or 0)
    except (UsageError, ValueError) as err:
        print(f"driftlab {argv[0]}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
