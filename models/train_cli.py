"""``driftlab train``: train an instrumented model and print (or save) its drift summary.

Example::

    driftlab train --recipe paper-gpt --act relu --size small --out runs/paper-relu

    driftlab train --arch mlp --act relu --data synthetic --steps 200 --out runs/mlp-relu
    driftlab train --arch gpt --act clipped_relu2:15 --set n_layer=4 --json
    driftlab train --arch gpt --set n_layer=4 --pin downstream-mean --out runs/pinned

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


# CLI option -> TrainConfig field, for the options whose value is given on the command line.
_FIELDS = {"arch": "arch", "act": "act", "data": "data", "size": "size", "steps": "steps",
           "batch_size": "batch_size", "lr": "lr", "optimizer": "optimizer",
           "schedule": "schedule", "warmup_steps": "warmup_steps",
           "warmdown_steps": "warmdown_steps", "adam_beta2": "adam_beta2",
           "muon_lr_ratio": "muon_lr_ratio", "weight_decay": "weight_decay",
           "grad_clip": "grad_clip", "dtype": "dtype", "seed": "seed", "eps": "eps",
           "log_every": "log_every", "checkpoint_every": "checkpoint_every",
           "eval_batches": "eval_batches", "out": "out"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``driftlab train`` options.

    Value options default to None ("not given") so that a ``--recipe`` can fill them and
    an explicit flag still overrides the recipe; the effective defaults are TrainConfig's.
    """
    from driftlab.models.train import TrainConfig

    d = TrainConfig()
    parser.add_argument("--recipe", default=None,
                        help="named recipe applied first (e.g. paper-gpt); flags override it")
    parser.add_argument("--arch", help=f"one of {', '.join(ARCHS)} (default {d.arch})")
    parser.add_argument("--act", help="activation name, e.g. relu, gelu, "
                        f"clipped_relu2:15 (default {d.act})")
    parser.add_argument("--data", help="synthetic, embedded, or a path in the "
                        f"architecture's format (default {d.data})")
    parser.add_argument("--size", help=f"tiny, small or paper (default {d.size})")
    parser.add_argument("--steps", type=int, help=f"default {d.steps}")
    parser.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=float, help=f"default {d.lr}")
    parser.add_argument("--optimizer", help=f"sgd, momentum, adamw or muon (default {d.optimizer})")
    parser.add_argument("--schedule", help=f"constant, cosine, linear or wcd (default {d.schedule})")
    parser.add_argument("--warmup-steps", type=int, help=f"default {d.warmup_steps}")
    parser.add_argument("--warmdown-steps", type=int,
                        help=f"wcd: linear decay to 0 over the last N steps (default {d.warmdown_steps})")
    parser.add_argument("--adam-beta2", type=float, help=f"default {d.adam_beta2}")
    parser.add_argument("--muon-lr-ratio", type=float,
                        help=f"muon: Muon lr = ratio x lr (default {d.muon_lr_ratio})")
    parser.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay}")
    parser.add_argument("--grad-clip", type=float, default=None)
    parser.add_argument("--dtype", help=f"float32 or bfloat16 (default {d.dtype})")
    parser.add_argument("--seed", type=int, help=f"default {d.seed}")
    parser.add_argument("--eps", type=float,
                        help=f"|h| < eps counts as sparse (smooth activations; default {d.eps})")
    parser.add_argument("--log-every", type=int, help=f"default {d.log_every}")
    parser.add_argument("--checkpoint-every", type=int, help=f"default {d.checkpoint_every}")
    parser.add_argument("--eval-batches", type=int, help=f"default {d.eval_batches}")
    parser.add_argument("--out", default=None, help="run directory (metrics, checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    parser.add_argument("--no-instrument", action="store_true",
                        help="skip the per-tap statistics")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--pin", action="append", default=[], metavar="NAME",
                        help="causal intervention after every update (repeatable): "
                        "downstream-mean or reader-stream-mean (models/pins.py)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a model config field (repeatable)")
    parser.add_argument("--json", action="store_true",
                        help="print the final summary as one JSON object on stdout")


def config_from_args(args: argparse.Namespace):
    """A validated TrainConfig from parsed arguments (ValueError names a bad field):
    TrainConfig defaults, then the recipe (``--recipe``), then the flags given."""
    from driftlab.models.recipes import recipe_config
    from driftlab.models.train import TrainConfig

    given = {field: getattr(args, opt) for opt, field in _FIELDS.items()
             if getattr(args, opt, None) is not None}
    if given.get("arch", "mlp") not in ARCHS:
        raise ValueError(f"--arch={given['arch']!r} invalid; allowed: {', '.join(ARCHS)}")
    given.update(resume=args.resume, instrument=not args.no_instrument,
                 progress=not args.no_progress, pins=tuple(args.pin),
                 model_overrides=tuple(parse_override(s) for s in args.set))
    recipe = getattr(args, "recipe", None)
    if recipe is not None:
        return recipe_config(recipe, **given)
    return TrainConfig(**given).validate()


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
