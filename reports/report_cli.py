"""``driftlab report [RUN_DIRS...] --out DIR [--theory/--no-theory] [--theory-json FILE]
[--sweep SCALE --workers N]``.

With ``--sweep SCALE`` the command first runs (or resumes) every preset defined at that
scale into the single RUN_DIR, split over ``--workers`` processes (disjoint shards), then
writes the report: the reduced report is ``driftlab report runs/reduced --sweep cpu
--workers 2 --out reports/reduced``.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="*", help="sweep output directories, `driftlab "
                        "train` run directories and seed-* ensembles, searched recursively "
                        "for finished runs (runs it cannot use are named in the header)")
    parser.add_argument("--from", dest="from_dir", default=None, metavar="REPORT_DIR",
                        help="rebuild from the checked-in records REPORT_DIR/records/*.jsonl "
                             "(and REPORT_DIR/theory_checks.json) instead of run directories "
                             "(`driftlab records` exports them)")
    parser.add_argument("--out", default="reports/latest", help="where report.md and PNGs go")
    parser.add_argument("--theory", action=argparse.BooleanOptionalAction, default=True,
                        help="include the theorem checks (default: reuse OUT/theory_checks.json "
                        "if present, else run them: minutes of CPU)")
    parser.add_argument("--theory-json", default=None,
                        help="cached `driftlab theory check --json` output to use")
    parser.add_argument("--rerun-theory", action="store_true",
                        help="run the theorem checks even if a cache exists")
    parser.add_argument("--sweep", default=None, metavar="SCALE",
                        help="first run/resume `driftlab sweep all --size SCALE` into RUN_DIR")
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel sweep processes with --sweep (disjoint shards)")
    parser.add_argument("--command", default=None,
                        help="the command line to quote as 'regenerate with' (default: this one)")


def run(args) -> int:
    import sys
    import time
    from pathlib import Path

    from driftlab.models.engine.run_dir import check_output_dir

    check_output_dir(args.out)  # before reading runs or running checks
    if args.from_dir is not None:
        return _from_records(args)

    if args.sweep is not None:
        from driftlab.reports.presets import PRESETS

        scales = sorted({s for p in PRESETS.values() for s in p.scales})
        if args.sweep not in scales:
            raise ValueError(f"sweep={args.sweep!r} invalid; allowed: {', '.join(scales)}")
        if len(args.run_dirs) != 1:
            raise ValueError("run_dirs: --sweep needs exactly one run directory")
        if args.workers < 1:
            raise ValueError(f"workers={args.workers!r} invalid; allowed: a positive integer")
        Path(args.run_dirs[0]).mkdir(parents=True, exist_ok=True)
    for d in args.run_dirs:
        if not Path(d).is_dir():
            raise ValueError(f"run_dirs: {d!r} is not a directory")
    if args.theory_json is not None and not Path(args.theory_json).is_file():
        raise ValueError(f"theory_json={args.theory_json!r} invalid; allowed: an existing "
                         f"file written by `driftlab theory check --json`")
    if not args.run_dirs:
        raise ValueError("run_dirs: none given; allowed: one or more run directories, or "
                         "--from REPORT_DIR (checked-in records)")
    if args.sweep is not None and not _sweep_first(args):
        return 1
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
        + (["--sweep", args.sweep, "--workers", str(args.workers)] if args.sweep else [])
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


def _from_records(args) -> int:
    """``--from DIR``: materialize DIR/records as run directories in a temporary folder and
    report them with the same analysis code; theorem checks from DIR/theory_checks.json."""
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    from driftlab.reports import records
    from driftlab.reports.report import THEORY_CACHE, write_report

    if args.run_dirs or args.sweep:
        raise ValueError("--from: give no run directories and no --sweep with it")
    src = Path(args.from_dir)
    recs = records.load(src / records.RECORDS_DIR)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    theory_json = src / THEORY_CACHE
    if args.theory and not args.rerun_theory and theory_json.is_file() \
            and theory_json.resolve() != (out / THEORY_CACHE).resolve():
        shutil.copyfile(theory_json, out / THEORY_CACHE)
    mode = "off" if not args.theory else ("run" if args.rerun_theory else "auto")
    command = args.command or (f"driftlab report --from {shlex.quote(args.from_dir)}"
                               + (" --no-theory" if mode == "off" else "")
                               + f" --out {shlex.quote(args.out)}")
    print(f"driftlab report: {len(recs)} records from {src / records.RECORDS_DIR} -> {out}",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="driftlab-records-") as tmp:
        records.materialize(recs, tmp)
        path = write_report([tmp], out, theory=mode, command=command,
                            source=f"the records in {src / records.RECORDS_DIR}",
                            dirs_relative_to=tmp)
    print(path)
    return 0


def _sweep_first(args) -> bool:
    """``driftlab sweep all --size SCALE --shard i/N`` in N processes; True if all succeed."""
    import subprocess

    procs = []
    for i in range(args.workers):
        argv = ["sweep", "all", "--size", args.sweep, "--shard", f"{i}/{args.workers}",
                "--out", args.run_dirs[0]]
        procs.append(subprocess.Popen([sys.executable, "-c", "import sys; from driftlab.cli "
                                       "import main; sys.exit(main(sys.argv[1:]))", *argv]))
    codes = [p.wait() for p in procs]
    if any(codes):
        print(f"driftlab report: sweep workers exited with {codes}; re-run the same command "
              f"to resume (finished runs are skipped)", file=sys.stderr)
    return not any(codes)
