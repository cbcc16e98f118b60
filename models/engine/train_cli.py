"""``driftlab train``: train an instrumented model and print (or save) its drift summary.

Example::

    driftlab train --recipe paper-gpt --act relu --size small --out runs/paper-relu

    driftlab train --arch mlp --act relu --data synthetic --steps 200 --out runs/mlp-relu
    driftlab train --arch gpt --act clipped_relu2:15 --set n_layer=4 --json
    driftlab train --arch gpt --set n_layer=4 --pin downstream-mean --out runs/pinned
    driftlab train --arch mlp --seeds 0-7 --steps 200 --out runs/ens   # one program, 8 seeds

Exit codes: 0 done, 2 bad value (the field is named; also a reused --out without
--resume/--overwrite, an --out in use by another run, an unreadable checkpoint, a full
disk), 3 non-finite loss (the last good checkpoint is kept; for --seeds: some member
diverged, the others finished), 143/130 stopped by SIGTERM/SIGINT after writing a
checkpoint.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys

from driftlab import names
from driftlab.names import ARCH_MODULES
from driftlab.source_registry import config_class, dataclass_defaults

# The valid names come from driftlab/names.py (JAX-free), so `driftlab train --help` lists
# them without starting JAX; TrainConfig's and the model configs' defaults are read from
# their source (driftlab/source_registry.py).
ARCHS = tuple(ARCH_MODULES)


def _one_of(name: str) -> str:
    return ", ".join(getattr(names, name))


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
    ("--act", "act", str, "activation: one of the names listed below (clipped ones take :C)"),
    ("--data", "data", str, "synthetic, embedded, or a path in the architecture's format"),
    ("--size", "size", str, f"one of {_one_of('SIZES')}"),
    ("--steps", "steps", int, "total steps of the run (a resumed run continues to it)"),
    ("--batch-size", "batch_size", int, "global batch, split over all devices"),
    ("--lr", "lr", float, "peak learning rate"),
    ("--optimizer", "optimizer", str, f"one of {_one_of('OPTIMIZERS')}"),
    ("--schedule", "schedule", str, f"one of {_one_of('SCHEDULES')}"),
    ("--warmup-steps", "warmup_steps", int, "linear warmup steps"),
    ("--warmdown-steps", "warmdown_steps", int, "wcd: linear decay to 0 over the last N steps"),
    ("--adam-beta2", "adam_beta2", float, "AdamW's beta2"),
    ("--warmdown-end", "warmdown_end", int, "wcd: the step the warmdown reaches lr 0"),
    ("--muon-lr-ratio", "muon_lr_ratio", float, "muon: Muon lr = ratio x lr"),
    ("--muon-scale", "muon_scale", str, f"muon: update scale rule, one of {_one_of('SCALINGS')}"),
    ("--muon-momentum", "muon_momentum", str,
     f"muon: momentum form, one of {_one_of('MOMENTUM_FORMS')} (sum: the paper's)"),
    ("--muon-ns-dtype", "muon_ns_dtype", str,
     f"muon: Newton-Schulz dtype, one of {_one_of('NS_DTYPES')}"),
    ("--weight-decay", "weight_decay", float, "decoupled weight decay"),
    ("--grad-clip", "grad_clip", float, "clip the global gradient norm (none: no clipping)"),
    ("--dtype", "dtype", str, f"one of {_one_of('DTYPES')}"),
    ("--seed", "seed", int, "seed of init and data order"),
    ("--eps", "eps", float, "|h| < eps counts as sparse (smooth activations)"),
    ("--log-every", "log_every", int, "log metrics every N steps"),
    ("--checkpoint-every", "checkpoint_every", int, "also checkpoint every N steps (0: off)"),
    ("--checkpoint-minutes", "checkpoint_minutes", float,
     "checkpoint after this much wall time (0: off)"),
    ("--eval-batches", "eval_batches", int, "validation batches evaluated at the end"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``driftlab train`` options (help shows each default, read from
    TrainConfig's declaration) and list the activations, recipes and ``--set`` fields."""
    d = dataclass_defaults("driftlab.models.engine.train_config", "TrainConfig")
    parser.epilog = "\n\n".join(filter(None, [parser.epilog, registries_text()]))
    parser.add_argument("--recipe", default=None,
                        help=f"named recipe applied first: {_recipe_names()} "
                             "(docs/recipes.md); flags override it, and a --steps other than "
                             "the recipe's scales its phases (default: none)")
    for flag, field, kind, text in _OPTIONS:
        default = d[field]
        parser.add_argument(flag, type=kind, default=None, dest=field,
                            help=f"{text} (default: {default})")
    parser.add_argument("--seeds", default=None, metavar="SPEC",
                        help="train these seeds as one ensemble in one compiled program, "
                             "e.g. 0-7 or 0,3,5; writes OUT/seed-<s>/ per seed (default: "
                             "none, one run with --seed)")
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
                        help="causal intervention after every update (repeatable): one of "
                             f"{_one_of('PINS')} (sham: the reader "
                             "pin's control; models/engine/pins.py) (default: none)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a model config field (repeatable), e.g. n_layer=4; the "
                             "fields of each --arch are listed below (default: none)")
    parser.add_argument("--json", action="store_true",
                        help="print the final summary as one JSON object on stdout")


def _recipe_names() -> str:
    from driftlab.models.engine.recipes import RECIPE_VERSIONS, RECIPES

    latest = {r.tag: name for name, r in RECIPES.items()}
    return ", ".join(f"{tag} (= {latest[tag]})" if tag in latest else tag
                     for tag in RECIPE_VERSIONS)


def registries_text() -> str:
    """The help's lists, each from its registry: activations (driftlab/activations.py),
    recipes (models/engine/recipes.py) and each architecture's model config fields for --set."""
    import textwrap

    from driftlab.activations import DEFAULT_CLIP, NAMES
    from driftlab.models.engine.recipes import RECIPE_VERSIONS

    def wrapped(head: str, body: str) -> str:
        return textwrap.fill(body, width=92, initial_indent=head,
                             subsequent_indent=" " * 4, break_on_hyphens=False)

    lines = [wrapped("activations (--act): ", f"{', '.join(NAMES)}; clipped_* take NAME:C, "
                     f"default C = {DEFAULT_CLIP:g}"), "recipes (--recipe):"]
    lines += [wrapped(f"  {tag}: ", r.description) for tag, r in RECIPE_VERSIONS.items()]
    lines.append("model config fields (--set FIELD=VALUE), per --arch:")
    for arch, module in ARCH_MODULES.items():
        fields = [f for f in dataclass_defaults(module, config_class(module)) if f != "act"]
        lines.append(wrapped(f"  {arch}: ", ", ".join(fields)))
    return "\n".join(lines)


def _stored_train_config(out: str) -> dict:
    """The ``train`` section of OUT/config.json (or of an ensemble's OUT/ensemble.json,
    with its ``seeds``); {} if absent. A damaged file is recovered from the checkpoint's
    own run identity (:func:`_recovered_config`), never by deleting anything."""
    from pathlib import Path

    from driftlab.models.engine.ensemble import ENSEMBLE_FILE

    for name in (ENSEMBLE_FILE, "config.json"):
        path = Path(out) / name
        if not path.exists():
            continue
        try:
            whole = json.loads(path.read_text())
            stored = dict(whole["train"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            return _recovered_config(out, path, type(err).__name__)
        if "seeds" in whole:
            stored["seeds"] = whole["seeds"]
        return stored
    return {}


def _recovered_config(out: str, path, problem: str) -> dict:
    """The TrainConfig fields stored in OUT/checkpoint.npz's run identity (arch, act,
    data, size, optimizer settings, seed(s), model overrides), after ``path`` was found
    unreadable. ValueError with non-destructive advice when the checkpoint has none."""
    from pathlib import Path

    from driftlab.models.engine import checkpoint

    try:
        meta = checkpoint.read_meta(Path(out) / checkpoint.FILENAME)
    except (checkpoint.CheckpointDamaged, OSError) as err:
        raise ValueError(f"{path}: unreadable run config ({problem}) and no readable "
                         f"checkpoint identity ({err}); restore {path.name} from a backup, "
                         f"or start a new run in another --out (this one is kept)") from None
    stored = {k: v for k, v in meta.items() if k not in ("model", "pins", "seeds")}
    if meta.get("pins"):
        stored["pins"] = meta["pins"]
    if "seeds" in meta:
        stored["seeds"] = meta["seeds"]
    stored["model_overrides"] = _model_overrides(meta)
    stored["_recovered_from"] = str(path)
    print(f"driftlab train: {path}: unreadable ({problem}); configuration recovered from "
          f"the checkpoint's run identity; pass --steps (the run's total) and any logging "
          f"options again", file=sys.stderr)
    return stored


def _model_overrides(meta: dict) -> list:
    """The model config fields of the identity that differ from the arch's defaults."""
    from driftlab.models.arch.base import current_field_names, get_arch

    try:
        base = get_arch(meta["arch"]).config(meta["size"], meta["act"])
    except (KeyError, ValueError):
        return []
    import dataclasses

    default = json.loads(json.dumps(dataclasses.asdict(base), default=str))
    model = current_field_names(meta["arch"], meta.get("model", {}), note=False)
    return [[k, tuple(v) if isinstance(v, list) else v]
            for k, v in sorted(model.items()) if k in default and default[k] != v]


def config_from_args(args: argparse.Namespace):
    """A validated TrainConfig from parsed arguments (ValueError names a bad field):
    TrainConfig defaults — or, with ``--resume``, the run's own ``OUT/config.json`` — then
    the recipe (``--recipe``), then the flags given."""
    import dataclasses

    from driftlab.models.engine.recipes import recipe_config
    from driftlab.models.engine.train import TrainConfig
    from driftlab.models.engine.train_config import check_resume_measurement

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
        stored = _stored_train_config(args.out)
        if "_recovered_from" in stored and "steps" not in given:
            raise ValueError(f"{stored['_recovered_from']}: unreadable; the configuration "
                             f"was recovered from the checkpoint, but not the run's total "
                             f"steps: rerun with --resume --steps N (nothing was deleted)")
        check_resume_measurement(stored, given, f"{args.out}/config.json")
        if stored.get("seeds") is not None and getattr(args, "seeds", None) is None:
            args.seeds = ",".join(str(s) for s in stored["seeds"])
        for key, value in stored.items():
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


# Ensembles up to this many seeds start without a memory estimate (a few MB per member).
ESTIMATE_FROM_SEEDS = 16
# Copies of the parameters each member holds while training: parameters, gradients, two
# optimizer moments and the initial parameters kept for the drift statistics.
STATE_COPIES = 5


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def check_ensemble_fits(cfg, seeds_text, probe: int = 4) -> None:
    """Refuse (ValueError with the estimate) an ensemble of more than
    :data:`ESTIMATE_FROM_SEEDS` seeds whose memory cannot fit, before any member is built:
    per member, the data set (resident memory measured while building ``probe`` members'
    data) plus :data:`STATE_COPIES` copies of the parameters (shapes traced, nothing
    allocated); a lower bound, compared with the memory available now."""
    import jax
    import numpy as np

    from driftlab.models.arch.base import get_arch
    from driftlab.models.engine.ensemble import parse_seeds
    from driftlab.models.engine.train_config import model_config
    from driftlab.montecarlo.memory import available_bytes

    seeds = parse_seeds(seeds_text)
    limit = available_bytes()
    if len(seeds) <= ESTIMATE_FROM_SEEDS or limit is None:
        return
    arch = get_arch(cfg.arch)
    base = model_config(arch, cfg)
    before = _rss_bytes()
    built = [arch.data(cfg.data, base, s) for s in seeds[:probe]]
    data_bytes = max(0, _rss_bytes() - before) / len(built)
    mcfg = built[0][0]
    del built
    shapes = jax.eval_shape(lambda k: arch.init(k, mcfg), jax.random.PRNGKey(0))
    state = STATE_COPIES * sum(int(np.prod(x.shape)) * x.dtype.itemsize
                               for x in jax.tree_util.tree_leaves(shapes))
    need = len(seeds) * (data_bytes + state)
    if need > limit:
        raise ValueError(f"--seeds {seeds_text}: {len(seeds)} seeds need at least "
                         f"{need / 1e9:.1f} GB of memory (per member: data "
                         f"{data_bytes / 1e6:.2f} MB measured, state {state / 1e6:.2f} MB), "
                         f"more than the {limit / 1e9:.1f} GB available; allowed: at most "
                         f"about {int(limit // max(data_bytes + state, 1))} seeds per ensemble")


def run(args: argparse.Namespace) -> int:
    """Train per ``args``; 0 on success, 3 on a non-finite loss."""
    cfg = config_from_args(args)
    from driftlab.atomic_io import DiskFullError
    from driftlab.models.engine.train import NonFiniteLossError, train, train_ensemble

    seeds = getattr(args, "seeds", None)
    if seeds is not None and args.seed is not None:
        raise ValueError("--seed and --seeds: give one of them (--seeds 0-7 trains "
                         "seeds 0 … 7 as one ensemble)")
    if seeds is not None:
        check_ensemble_fits(cfg, seeds)
    if cfg.phase_scaling:
        print(f"driftlab train: {cfg.phase_scaling}", file=sys.stderr)

    try:
        summary = train(cfg) if seeds is None else train_ensemble(cfg, seeds)
    except NonFiniteLossError as err:
        print(f"driftlab train: {err}", file=sys.stderr)
        return 3
    except DiskFullError as err:
        print(f"driftlab train: {err.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second signal: stop now, the last checkpoint stays
        print(f"driftlab train: stopped by a second signal; the last checkpoint in "
              f"{cfg.out} is kept (continue with --out {cfg.out} --resume)", file=sys.stderr)
        return 130
    if summary["status"] == "interrupted":
        print(f"driftlab train: {summary['signal']} at step {_steps(summary)}: checkpoint "
              f"written to {summary['checkpoint']}; continue with --out {cfg.out} --resume",
              file=sys.stderr)
        return 128 + (15 if summary["signal"] == "SIGTERM" else 2)
    return _print_result(summary, args.json)


def _steps(summary: dict) -> int:
    return summary["members"][0]["steps"] if "members" in summary else summary["steps"]


def _print_result(summary: dict, as_json: bool) -> int:
    """Print a run's (or each ensemble member's) summary; 3 if a member diverged."""
    members = summary.get("members", [summary])
    for m in members:
        m.pop("records", None)  # in-memory records (no --out): not for the terminal
    if as_json:
        print(json.dumps(summary, default=str))
    diverged = [m for m in members if m["status"] == "diverged"]
    for m in diverged:
        print(f"driftlab train: seed {m.get('seed')}: {m['reason']}", file=sys.stderr)
    if not as_json:
        print("\n\n".join((f"seed {m['seed']}: " if "seed" in m else "") + format_table(m)
                          for m in members))
    return 3 if diverged else 0
