"""``driftlab bench {mc,train,theory,layers,inspect} [--json]``: a table of rows, each with its baseline and the ratio."""

from __future__ import annotations

import argparse
import importlib
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=("mc", "train", "theory", "layers", "inspect"), help="which benchmark suite")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument("--quick", action="store_true", help="smallest sizes only (seconds; for tests)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    parser.add_argument("--ensemble", default=None, metavar="S[,S...]",
                        help="train suite only: seed-ensemble throughput at these ensemble "
                             "sizes (e.g. 1,4,8,16) against as many sequential runs")
    parser.add_argument("--scale", default="cpu", choices=("cpu", "tiny"),
                        help="--ensemble only: the cpu-scale sweep's models (default) or the "
                             "tiny presets")


def run(args) -> int:
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    module = importlib.import_module(f"driftlab.bench.{args.suite}")
    if args.ensemble is not None:
        if args.suite != "train":
            raise ValueError(f"--ensemble is a train-suite option; got suite {args.suite!r}")
        from driftlab.bench.ensemble_profile import bench_rows

        rows = bench_rows(args)
    else:
        rows = module.run_bench(quick=args.quick, repeats=args.repeats)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(format_rows(rows))
    return 0


def format_rows(rows: list[dict]) -> str:
    """Rows: name, value, baseline, baseline_value, unit, ratio, target (None or a number), note."""
    head = f"{'benchmark':44} {'value':>12} {'baseline':>28} {'ratio':>8} {'target':>8}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        target = "" if r.get("target") is None else f"≥{r['target']:g}"
        base = f"{r['baseline']}={r['baseline_value']:.4g}"
        # value None: a difference of timings too noisy to give a rate (bench/stable.py)
        value = "too noisy" if r["value"] is None else f"{r['value']:.4g}"
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.3g}"
        lines.append(f"{r['name']:44} {value:>12} {base:>28} {ratio:>8} {target:>8}  "
                     f"{r.get('unit', '')} {r.get('note', '')}")
    return "\n".join(lines)
