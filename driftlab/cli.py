"""The ``driftlab`` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; only the module of the chosen subcommand is imported, so
``driftlab --help`` stays fast and a bad value fails before JAX starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "theory": ("driftlab.theory.cli", "check the expected-gradient theorems against Monte Carlo"),
    "train": ("driftlab.models.train_cli", "train an instrumented model"),
    "sweep": ("driftlab.reports.sweep_cli", "run an experiment preset's grid (resumable, shardable)"),
    "report": ("driftlab.reports.report_cli", "write the Markdown report with figures and tables"),
    "bench": ("driftlab.bench.cli", "benchmarks against baselines (ratios in the same run)"),
}


class UsageError(ValueError):
    """A bad value on the command line: reported in one line, exit code 2."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="driftlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, helptext) in SUBCOMMANDS.items():
        sub.add_parser(name, help=helptext, add_help=False)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    cmd_parser = argparse.ArgumentParser(prog=f"driftlab {argv[0]}",
                                         description=SUBCOMMANDS[argv[0]][1])
    module.add_arguments(cmd_parser)
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
