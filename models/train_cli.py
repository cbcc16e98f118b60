"""``driftlab train``: train an instrumented model and print (or save) its drift summary.

Example::

    driftlab train --arch mlp --act relu --data synthetic --steps 200 --out runs/mlp-relu
    driftlab train --arch gpt --act clipped_relu2:15 --set n_layer=4 --json

Exit codes: 0 done, 2 bad value (the field is named), 3 non-finite loss (the last good
checkpoint is kept).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys

ARCHS = ("mlp", "resnet", "vit", "gpt", "mpsenet")


def parse_override(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` -> (field, value); VALUE is read as a Python/JSON literal
    (int, float, bool, None, tuple) when it parses as one, else kept as a string."""
    field, sep, raw = text.partition("=")
    field = field.strip()
    if not sep or not field.isidentifier():
        raise ValueError(f"--set {text!r} invalid; allowed: FIELD=VALUE with FIELD a "
                         f"model config field name")
    raw = raw.strip()
    aliases = {"true": True, "false": False, "none": None, "null": None}
    if raw.lower() in aliases:
        return field, aliases[raw.lower()]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return field, raw
    return field, tuple(value) if isinstance(value, list) else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``driftlab train`` options."""
    from driftlab.models.train import TrainConfig

    d = TrainConfig()
    parser.add_argument("--arch", default=d.arch, help=f"one of {', '.join(ARCHS)}")
    parser.add_argument("--act", default=d.act, help="activation name, e.g. relu, gelu, "
                        "clipped_relu2:15")
    parser.add_argument("--data", default=d.data,
                        help="synthetic, embedded, or a path in the architecture's format")
    parser.add_argument("--size", default=d.size, help="tiny, small or paper")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--optimizer", default=d.optimizer, help="sgd, momentum or adamw")
    parser.add_argument("--schedule", default=d.schedule, help="constant, cosine or linear")
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--grad-clip", type=float, default=None)
    parser.add_argument("--dtype", default=d.dtype, help="float32 or bfloat16")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--eps", type=float, default=d.eps,
                        help="|h| < eps counts as sparse (smooth activations)")
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--eval-batches", type=int, default=d.eval_batches)
    parser.add_argument("--out", default=None, help="run directory (metrics, checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    parser.add_argument("--no-instrument", action="store_true",
                        help="skip the per-tap statistics")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a model config field (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help="print the final summary as one JSON object on stdout")


def config_from_args(args: argparse.Namespace):
    """A validated TrainConfig from parsed arguments (ValueError names a bad field)."""
    from driftlab.models.train import TrainConfig

    if args.arch not in ARCHS:
        raise ValueError(f"--arch={args.arch!r} invalid; allowed: {', '.join(ARCHS)}")
    cfg = TrainConfig(
        arch=args.arch, act=args.act, data=args.data, size=args.size, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        schedule=args.schedule, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, dtype=args.dtype,
        seed=args.seed, eps=args.eps, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, eval_batches=args.eval_batches,
        out=args.out, resume=args.resume, instrument=not args.no_instrument,
        progress=not args.no_progress,
        model_overrides=tuple(parse_override(s) for s in args.set))
    return cfg.validate()


def _print_table(summary: dict) -> None:
    print(f"{summary['arch']}/{summary['act']}: {summary['steps']} steps, "
          f"final loss {summary['final_loss']:.4g}"
          + (f", val loss {summary['val_loss']:.4g}" if "val_loss" in summary else ""))
    print(f"{'tap':<16}{'downstream':<22}{'Δmean(W)':>11}{'/SE':>8}{'sparsity':>10}"
          f"{'spike':>9}")
    # output heads last, labelled: the zero-drift control, not a hidden layer
    rows = list(summary["layers"].items()) + [
        (f"[head] {e.get('reads') or '-'}", e) for e in summary.get("heads", {}).values()]
    for name, e in rows:
        change = e.get("w_mean_change", float("nan"))
        se = e.get("w_mean_se", float("nan"))
        print(f"{name:<16}{e['downstream']:<22}{change:>11.2e}{change / se:>8.1f}"
              f"{e.get('sparsity', float('nan')):>10.3f}{e.get('spike_ratio', float('nan')):>9.1f}")


def run(args: argparse.Namespace) -> int:
    """Train per ``args``; 0 on success, 3 on a non-finite loss."""
    cfg = config_from_args(args)
    from driftlab.models.train import NonFiniteLossError, train

    try:
        summary = train(cfg)
    except NonFiniteLossError as err:
        print(f"driftlab train: {err}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        _print_table(summary)
    return 0
