"""``driftlab report [RUN_DIRS...] --out DIR [--theory/--no-theory] [--theory-json FILE]``."""

from __future__ import annotations

import argparse
import shlex


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="*", help="sweep output directories (searched "
                        "recursively for finished runs)")
    parser.add_argument("--out", default="reports/latest", help="where report.md and PNGs go")
    parser.add_argument("--theory", action=argparse.BooleanOptionalAction, default=True,
                        help="include the theorem checks (default: reuse OUT/theory_checks.json "
                        "if present, else run them: minutes of CPU)")
    parser.add_argument("--theory-json", default=None,
                        help="cached `driftlab theory check --json` output to use")
    parser.add_argument("--rerun-theory", action="store_true",
                        help="run the theorem checks even if a cache exists")
    parser.add_argument("--command", default=None,
                        help="the command line to quote as 'regenerate with' (default: this one)")


def run(args) -> int:
    import sys
    import time
    from pathlib import Path

    from driftlab.models.run_dir import check_output_dir

    check_output_dir(args.out)  # before reading runs or running checks

    for d in args.run_dirs:
        if not Path(d).is_dir():
            raise ValueError(f"run_dirs: {d!r} is not a directory")
    if args.theory_json is not None and not Path(args.theory_json).is_file():
        raise ValueError(f"theory_json={args.theory_json!r} invalid; allowed: an existing "
                         f"file written by `driftlab theory check --json`")
    if not args.theory:
        mode = "off"
    elif args.rerun_theory:
        mode = "run"
    elif args.theory_json:
        mode = "cache"
    else:
        mode = "auto"
    from driftlab.reports.report import write_report

    command = args.command or " ".join(
        ["driftlab report", *map(shlex.quote, args.run_dirs), "--out", shlex.quote(args.out)]
        + (["--no-theory"] if mode == "off" else [])
        + (["--theory-json", shlex.quote(args.theory_json)] if mode == "cache" else []))
    t0 = time.time()
    print(f"driftlab report: {len(args.run_dirs)} run director"
          f"{'y' if len(args.run_dirs) == 1 else 'ies'} -> {args.out} (theory: {mode})",
          file=sys.stderr, flush=True)
    path = write_report(args.run_dirs, args.out, theory=mode, theory_cache=args.theory_json,
                        command=command)
    print(f"driftlab report: done in {time.time() - t0:.0f} s", file=sys.stderr)
    print(path)
    return 0
