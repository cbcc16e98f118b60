"""``driftlab train``: train an instrumented model and print (or save) its drift summary.

Example::

    driftlab train --recipe paper-gpt --act relu --size small --out runs/paper-relu

    driftlab train --arch mlp --act relu --data synthetic --steps 200 --out runs/mlp-relu
    driftlab train --arch gpt --act clipped_relu2:15 --set n_layer=4 --json
    driftlab train --arch gpt --set n_layer=4 --pin downstream-mean --out runs/pinned

Exit codes: 0 done, 2 bad value (the field is named; also a reused --out without
--resume/--overwrite, or an unreadable checkpoint), 3 non-finite loss (the last good
checkpoint is kept), 143/130 stopped by SIGTERM/SIGINT after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
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


# (option, TrainConfig field, type, help). Every default is None on the parser so that
# a resumed run can tell the options given on the command line from those it takes from
# the run's own config.json.
_OPTIONS = (
    ("--arch", "arch", str, f"one of {', '.join(ARCHS)}"),
    ("--act", "act", str, "activation name, e.g. relu, gelu, clipped_relu2:15"),
    ("--data", "data", str, "synthetic, embedded, or a path in the architecture's format"),
    ("--size", "size", str, "tiny, small or paper"),
    ("--steps", "steps", int, "total steps of the run (a resumed run continues to it)"),
    ("--batch-size", "batch_size", int, "global batch, split over all devices"),
    ("--lr", "lr", float, "peak learning rate"),
    ("--optimizer", "optimizer", str, "sgd, momentum, adamw or muon"),
    ("--schedule", "schedule", str, "constant, cosine, linear or wcd"),
    ("--warmup-steps", "warmup_steps", int, "linear warmup steps"),
    ("--warmdown-steps", "warmdown_steps", int, "wcd: linear decay to 0 over the last N steps"),
    ("--adam-beta2", "adam_beta2", float, "AdamW's beta2"),
    ("--muon-lr-ratio", "muon_lr_ratio", float, "muon: Muon lr = ratio x lr"),
    ("--weight-decay", "weight_decay", float, "decoupled weight decay"),
    ("--grad-clip", "grad_clip", float, "clip the global gradient norm (none: no clipping)"),
    ("--dtype", "dtype", str, "float32 or bfloat16"),
    ("--seed", "seed", int, "seed of init and data order"),
    ("--eps", "eps", float, "|h| < eps counts as sparse (smooth activations)"),
    ("--log-every", "log_every", int, "log metrics every N steps"),
    ("--checkpoint-every", "checkpoint_every", int, "also checkpoint every N steps (0: off)"),
    ("--checkpoint-minutes", "checkpoint_minutes", float,
     "checkpoint after this much wall time (0: off)"),
    ("--eval-batches", "eval_batches", int, "validation batches evaluated at the end"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``driftlab train`` options (help shows each default)."""
    from driftlab.models.train import TrainConfig

    d = TrainConfig()
    parser.add_argument("--recipe", default=None,
                        help="named recipe applied first (e.g. paper-gpt); flags override it")
    for flag, field, kind, text in _OPTIONS:
        default = getattr(d, field)
        parser.add_argument(flag, type=kind, default=None, dest=field,
                            help=f"{text} (default: {default})")
    parser.add_argument("--out", default=None,
                        help="run directory: config.json, metrics.jsonl, checkpoint.npz "
                             "(default: none, nothing is written)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT from its checkpoint, with its own "
                             "config.json (options given here override it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in OUT (without it a reused OUT is refused)")
    parser.add_argument("--no-instrument", action="store_true",
                        help="skip the per-tap statistics")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--pin", action="append", default=[], metavar="NAME",
                        help="causal intervention after every update (repeatable): "
                        "downstream-mean, reader-stream-mean or sham (the reader pin's control; models/pins.py)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a model config field (repeatable), e.g. n_layer=4")
    parser.add_argument("--json", action="store_true",
                        help="print the final summary as one JSON object on stdout")


def _stored_train_config(out: str) -> dict:
    """The ``train`` section of OUT/config.json ({} if absent); ValueError if unreadable."""
    from pathlib import Path

    path = Path(out) / "config.json"
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())["train"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: unreadable run config ({type(err).__name__}); "
                         f"pass every option explicitly with --overwrite") from None
    return stored if isinstance(stored, dict) else {}


def config_from_args(args: argparse.Namespace):
    """A validated TrainConfig from parsed arguments (ValueError names a bad field):
    TrainConfig defaults — or, with ``--resume``, the run's own ``OUT/config.json`` — then
    the recipe (``--recipe``), then the flags given."""
    import dataclasses

    from driftlab.models.recipes import recipe_config
    from driftlab.models.train import TrainConfig

    given = {field: getattr(args, field) for _, field, _, _ in _OPTIONS
             if getattr(args, field, None) is not None}
    if given.get("arch", "mlp") not in ARCHS:
        raise ValueError(f"--arch={given['arch']!r} invalid; allowed: {', '.join(ARCHS)}")
    given.update(out=args.out, resume=args.resume, overwrite=args.overwrite,
                 progress=not args.no_progress)
    if args.no_instrument:
        given["instrument"] = False
    if args.pin:
        given["pins"] = tuple(args.pin)
    if args.set:
        given["model_overrides"] = tuple(parse_override(s) for s in args.set)
    if getattr(args, "recipe", None) is not None:
        return recipe_config(args.recipe, **given)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {}
    if args.resume and args.out is not None:
        for key, value in _stored_train_config(args.out).items():
            if key in fields and key not in ("out", "resume", "overwrite", "progress"):
                if key == "model_overrides":
                    value = tuple(tuple(kv) for kv in value)
                elif isinstance(value, list):
                    value = tuple(value)
                values[key] = value
    values.update(given)
    return TrainConfig(**values).validate()


def _fmt(value, spec: str) -> str:
    """``value`` formatted with ``spec``; "—" for a missing or non-finite number."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def format_table(summary: dict) -> str:
    """The human-readable summary: a header line, then one row per tap with columns sized
    to their contents (two spaces apart, so long names and large values never merge);
    output heads last, labelled ``[head]``: the zero-drift control, not a hidden layer."""
    val = [f"val {k[4:]} {_fmt(v, '.4g')}" for k, v in summary.items()
           if k.startswith("val_") and isinstance(v, (int, float))]
    head = (f"{summary['arch']}/{summary['act']}: {summary['steps']} steps, final loss "
            f"{_fmt(summary.get('final_loss'), '.4g')}, "
            + (", ".join(val) if val else "no validation (--eval-batches 0)"))
    if str(summary.get("data", "")).endswith("synthetic-fallback"):
        head += "\ndata: synthetic signals (embedded:synthetic-fallback, no real speech installed)"
    cols = ("tap", "downstream", "Δmean(W)", "Δ/SE", "sparsity", "spike")
    entries = list(summary["layers"].items()) + [
        (f"[head] {e.get('reads') or '-'}", e) for e in summary.get("heads", {}).values()]
    rows = []
    for name, e in entries:
        change, se = e.get("w_mean_change"), e.get("w_mean_se")
        ratio = change / se if change is not None and se else None
        rows.append((name, e["downstream"], _fmt(change, ".2e"), _fmt(ratio, ".1f"),
                     _fmt(e.get("sparsity"), ".3f"), _fmt(e.get("spike_ratio"), ".1f")))
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(cols)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([head, line(cols)] + [line(r) for r in rows])


def run(args: argparse.Namespace) -> int:
    """Train per ``args``; 0 on success, 3 on a non-finite loss."""
    cfg = config_from_args(args)
    from driftlab.models.train import NonFiniteLossError, train

    try:
        summary = train(cfg)
    except NonFiniteLossError as err:
        print(f"driftlab train: {err}", file=sys.stderr)
        return 3
    if summary["status"] == "interrupted":
        print(f"driftlab train: {summary['signal']} at step {summary['steps']}: checkpoint "
              f"written to {summary['checkpoint']}; continue with --out {cfg.out} --resume",
              file=sys.stderr)
        return 128 + (15 if summary["signal"] == "SIGTERM" else 2)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(format_table(summary))
    return 0
