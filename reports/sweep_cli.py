"""``driftlab sweep PRESET [--size] [--seeds] [--shard I/N] [--out DIR] [--executor] [--json]``.

``PRESET`` is a preset name (reports/presets.py) or ``all``: a single preset writes its
runs and ``summary.csv`` to ``--out``; ``all`` writes each preset to ``--out/<preset>/``.
A path to a plan file (``reports/plans/confirm-v2.json``, reports/confirm_plan.py) runs
the plan's runs, on its reserved seeds and tagged with its digest, each preset's into
``--out/<preset>/``.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from driftlab.reports.presets import PRESETS, SCALES

    parser.add_argument("preset", help=f"one of {', '.join(PRESETS)}, or all (listed below), "
                        "or a plan file (reports/plans/*.json)")
    parser.add_argument("--size", default="tiny", help=f"scale, one of {', '.join(SCALES)}: tiny "
                        "(CPU smoke), cpu (the decisive reduced scale), small, gpu (one "
                        "H100), paper; each preset defines some of them (listed below)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per configuration (default: the preset's for the size)")
    parser.add_argument("--shard", default="0/1", help="I/N: run every N-th grid entry from I")
    parser.add_argument("--out", default="runs", help="output directory")
    parser.add_argument("--executor", default="local", help="local (in-process) or submitit")
    parser.add_argument("--max-ensemble", type=int, default=None,
                        help="train runs differing only in seed as one seed ensemble of at "
                             "most N members (1: one run at a time; default: 8)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.epilog = "\n\n".join(filter(None, [parser.epilog, presets_text()]))
    cluster = parser.add_argument_group("submitit executor")
    cluster.add_argument("--timeout-min", type=int, default=60, help="Slurm time limit per job, minutes")
    cluster.add_argument("--partition", default=None, help="Slurm partition")
    cluster.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per Slurm job")
    cluster.add_argument("--cluster", default=None,
                         help="submitit cluster (default: auto-detect; 'local' or 'debug')")


def presets_text() -> str:
    """One entry per preset of the PRESETS registry: name@version, scales, description."""
    import textwrap

    from driftlab.reports.presets import PRESETS

    return "presets (reports/presets.py):\n" + "\n".join(
        textwrap.fill(f"{p.description} (scales: {', '.join(p.scales)})", width=92,
                      initial_indent=f"  {name}@{p.version}: ", subsequent_indent=" " * 4,
                      break_on_hyphens=False)
        for name, p in PRESETS.items())


def _is_plan(name: str) -> bool:
    return name.endswith(".json")


def _validate(args) -> list[str]:
    """Check every value before JAX starts; ValueError names the field and allowed values."""
    from driftlab.reports.presets import get_preset
    from driftlab.reports.sweep import EXECUTORS, parse_shard, preset_names

    if _is_plan(args.preset):
        from driftlab.reports.confirm_plan import SCALE, load_plan

        if args.seeds is not None or args.size not in ("tiny", SCALE):
            raise ValueError("a plan fixes its seeds and scale: leave out --seeds and --size")
        names = list(dict.fromkeys(run["preset"] for run in load_plan(args.preset).data["runs"]))
    else:
        names = preset_names(args.preset)
    if args.preset == "all":  # every preset defined at that scale
        names = [n for n in names if args.size in get_preset(n).scales]
    for name in names:
        scales = get_preset(name).scales
        if not _is_plan(args.preset) and args.size not in scales:
            raise ValueError(f"size={args.size!r} invalid for preset {name!r}; allowed: "
                             f"{', '.join(scales)}")
    if not names:
        raise ValueError(f"size={args.size!r} invalid; no preset is defined at that scale")
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"seeds={args.seeds!r} invalid; allowed: a positive integer")
    parse_shard(args.shard)
    from driftlab.models.engine.run_dir import check_output_dir

    check_output_dir(args.out)
    if args.executor not in EXECUTORS:
        raise ValueError(f"executor={args.executor!r} invalid; allowed: {', '.join(EXECUTORS)}")
    if args.max_ensemble is not None and args.max_ensemble < 1:
        raise ValueError(f"max_ensemble={args.max_ensemble!r} invalid; allowed: an integer >= 1")
    if args.timeout_min < 1:
        raise ValueError(f"timeout_min={args.timeout_min!r} invalid; allowed: a positive integer")
    return names


def run(args) -> int:
    names = _validate(args)
    from pathlib import Path

    from driftlab.reports.sweep import run_sweep, unfinished_text

    options = {"timeout_min": args.timeout_min, "partition": args.partition,
               "gpus_per_node": args.gpus_per_node, "cluster": args.cluster}
    log = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    results = []
    specs = {}
    if _is_plan(args.preset):
        from driftlab.reports.confirm_plan import load_plan, plan_specs

        specs = plan_specs(load_plan(args.preset))  # its own scale and seeds: size is unused
    for name in names:
        out = Path(args.out) / name if args.preset == "all" or specs else Path(args.out)
        res = run_sweep(name, size=args.size, seeds=args.seeds, shard=args.shard, out=out,
                        executor=args.executor, executor_options=options, log=log,
                        specs=specs.get(name),
                        **({} if args.max_ensemble is None
                           else {"max_ensemble": args.max_ensemble}))
        results.append(res.as_dict())
        if res.interrupted:
            print(f"{name}: stopped by {res.interrupted} after checkpointing; run the same "
                  f"command again to resume", file=sys.stderr)
            return 128 + (15 if res.interrupted == "SIGTERM" else 2)
        if not args.json:
            print(f"{name}: {len(res.ran)} ran, {len(res.skipped)} skipped "
                  f"(shard {args.shard}: {res.selected} of {res.total} runs) in "
                  f"{res.seconds:.0f} s -> {res.csv}")
        if res.unfinished:
            print(unfinished_text(res), file=sys.stderr)
    if args.json:
        print(json.dumps(results if args.preset == "all" else results[0], indent=1))
    # "done" only when every run of the grid (this shard) has its result
    return 1 if any(r["unfinished"] for r in results) else 0
