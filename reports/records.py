"""Compact per-run records: the checked-in form of a sweep, from which the report rebuilds.

    driftlab records /work/runs/reduced --out reports/reduced/records   # export
    driftlab report --from reports/reduced --out DIR                     # rebuild

One JSON Lines file per preset, ``<preset>.jsonl``, one line per finished run in run-id
order: ``run_id``, ``preset``, ``version``, ``kind``, ``label``, ``tags`` and ``config``
(the run's identity, as in its ``run.json``); ``summary`` (its ``summary.json`` without
the final per-matrix weight statistics and the output path, which no report section
reads); ``metrics``, the logged-step trajectory reduced to what the report reads (step,
loss, per tap ``grad_pos_mean`` and ``grad_pos_abs_mean``, per downstream matrix ``mean_change``, the mean
pre-activation shift terms), stored by column ({field path: [value per logged step]},
None where a step lacks it) with floats to :data:`DIGITS` significant digits; and ``law``
(sparsity_law runs: the law evaluations). Exporting again after more runs finish
rewrites the files (a partial sweep exports what has finished).

:func:`materialize` writes the records back as minimal run directories (``run.json``,
``config.json``, ``summary.json``, ``metrics.jsonl``, ``law.jsonl``) for the report's
readers, so the report from records and the report from the runs share every line of
analysis code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from driftlab.atomic_io import write_text
from driftlab.jsonl import numbered_jsonl, read_jsonl

RECORDS_DIR = "records"
DIGITS = 6
# Summary keys no report section reads (final per-matrix stats; the run's own path).
DROP_SUMMARY = ("weights", "out")
TAP_KEYS = ("grad_pos_mean", "grad_pos_abs_mean")
SHIFT_KEYS = ("p_mean", "drift_change", "align_change", "p_mean_init_reader")
FINISHED = ("ok", "diverged")


def _round(x):
    if isinstance(x, float):
        return float(f"{x:.{DIGITS}g}") if math.isfinite(x) else x
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v) for v in x]
    return x


def _compact_metric(rec: dict, downstream: set) -> dict:
    out = {"step": rec["step"]}
    for key in ("loss", "accuracy"):
        if key in rec:
            out[key] = rec[key]
    if rec.get("taps"):
        out["taps"] = {t: {k: v[k] for k in TAP_KEYS if k in v}
                       for t, v in rec["taps"].items() if "grad_pos_mean" in v}
    if rec.get("weights"):
        out["weights"] = {p: {"mean_change": v["mean_change"]}
                          for p, v in rec["weights"].items()
                          if p in downstream and "mean_change" in v}
    if rec.get("shift"):
        out["shift"] = {t: {k: v[k] for k in SHIFT_KEYS if k in v}
                        for t, v in rec["shift"].items()}
    return out


def _flatten(rec: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + SEP))
        else:
            out[key] = v
    return out


SEP = "\t"  # joins nested keys of a column name (no tap or parameter path contains a tab)


def to_columns(rows: list[dict]) -> dict:
    """[{nested record}] -> {flattened key: [value or None per row]} (key order stable)."""
    flat = [_flatten(r) for r in rows]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    return {k: [f.get(k) for f in flat] for k in keys}


def from_columns(cols: dict) -> list[dict]:
    """Inverse of :func:`to_columns` (a None value is a field the step did not have)."""
    n = max((len(v) for v in cols.values()), default=0)
    rows = []
    for i in range(n):
        row: dict = {}
        for key, values in cols.items():
            if values[i] is None:
                continue
            *path, leaf = key.split(SEP)
            node = row
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = values[i]
        rows.append(row)
    return rows


def record_of(run_dir: Path) -> dict | None:
    """The record of one run directory, or None if it has not finished."""
    run_dir = Path(run_dir)
    try:
        spec = json.loads((run_dir / "run.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise ValueError(f"{run_dir}: unreadable run files ({err})") from None
    if summary.get("status") not in FINISHED:
        return None
    layers = summary.get("layers", {})
    heads = summary.get("heads", {})
    downstream = {e.get("downstream") for e in layers.values()} | set(heads)
    metrics = [r for r in read_jsonl(run_dir / "metrics.jsonl")
               if "step" in r and "event" not in r]
    rec = {k: spec[k] for k in ("run_id", "preset", "version", "kind", "label", "tags",
                                "config") if k in spec}
    rec["summary"] = {k: v for k, v in summary.items() if k not in DROP_SUMMARY}
    rec["metrics"] = _round(to_columns([_compact_metric(r, downstream)
                                        for r in sorted(metrics, key=lambda r: r["step"])]))
    law = read_jsonl(run_dir / "law.jsonl")
    if law:
        rec["law"] = law
    return rec


def lot(rec: dict) -> tuple:
    """(scale, plan tag) of a record: records of different lots never share a directory."""
    tags = rec.get("tags") or {}
    return (tags.get("size") or (rec.get("config") or {}).get("size"), tags.get("plan"))


def _lot_text(lots) -> str:
    return ", ".join(f"scale {s}" + (f" plan {p}" if p else " (no plan)")
                     for s, p in sorted(lots, key=str))


def export(run_dirs, out, overwrite: bool = False) -> dict[str, int]:
    """Write ``out/<preset>.jsonl`` for every preset with finished runs under
    ``run_dirs`` (searched recursively for ``run.json``); {preset: runs written}.

    Records of one lot (:func:`lot`: scale and plan tag) only: ValueError when the runs
    mix lots, when they have no finished run, or when ``out`` already holds records of
    another lot (unless ``overwrite``, which then removes every other ``*.jsonl`` there).
    """
    by_preset: dict[str, dict] = {}
    for d in run_dirs:
        d = Path(d)
        if not d.is_dir():
            raise ValueError(f"run directory {str(d)!r} does not exist or is not a directory")
        for spec_path in sorted(d.rglob("run.json")):
            rec = record_of(spec_path.parent)
            if rec is not None:
                seen = by_preset.setdefault(rec["preset"], {})
                if seen.get(rec["run_id"], rec) != rec:  # one would silently replace the other
                    raise ValueError(f"two different runs {rec['run_id']!r} under "
                                     f"{', '.join(map(str, run_dirs))} (one at "
                                     f"{spec_path.parent}); export them separately")
                seen[rec["run_id"]] = rec
    if not by_preset:
        raise ValueError(f"no finished sweep run (run.json and summary.json) under "
                         f"{', '.join(map(str, run_dirs))}: nothing to export (`driftlab "
                         f"train` runs are read by `driftlab report RUN_DIR` directly)")
    lots = {lot(r) for recs in by_preset.values() for r in recs.values()}
    if len(lots) > 1:
        raise ValueError(f"the runs under {', '.join(map(str, run_dirs))} mix {_lot_text(lots)}; "
                         f"records of different scales or plans never share a directory: "
                         f"export each to its own --out")
    out = Path(out)
    old = sorted(out.glob("*.jsonl")) if out.is_dir() else []
    if old and not overwrite:
        theirs = {lot(r) for r in load(out)}
        if theirs - lots:
            raise ValueError(f"--out={str(out)!r} holds records of {_lot_text(theirs)}, these "
                             f"runs are {_lot_text(lots)}; pass --overwrite to replace them, "
                             f"or choose another --out")
    if overwrite:
        for path in old:
            if path.stem not in by_preset:  # of another lot, or a preset not exported now
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for preset, recs in sorted(by_preset.items()):
        lines = [json.dumps(recs[k], sort_keys=True, separators=(",", ":"), default=str)
                 for k in sorted(recs)]
        write_text(out / f"{preset}.jsonl", "\n".join(lines) + "\n")
        counts[preset] = len(lines)
    return counts


# The fields of a record and their types (every reader of records relies on them): top
# level, then inside ``summary`` (checked where present; any ``val_*`` is a number).
NUMBER = (int, float)
RECORD_FIELDS = {"run_id": str, "preset": str, "kind": str, "version": str, "tags": dict,
                 "config": dict, "summary": dict, "metrics": dict}
OPTIONAL_FIELDS = {"label": str, "law": list}
SUMMARY_FIELDS = {"status": str, "final_loss": NUMBER, "val_loss": NUMBER, "seconds": NUMBER,
                  "steps": int, "layers": dict, "heads": dict, "taps": dict}


def _type_name(kind) -> str:
    return {str: "a string", dict: "an object", list: "a list", int: "an integer",
            NUMBER: "a number"}[kind]


def record_problem(rec: dict) -> str | None:
    """The first field of ``rec`` that is missing or of the wrong type, said in a few
    words (None when every field is right)."""
    def bad(v, kind):
        return not isinstance(v, kind) or isinstance(v, bool)

    for field, kind in RECORD_FIELDS.items():
        if field not in rec:
            return f"field {field!r} missing"
        if bad(rec[field], kind):
            return f"field {field!r} is {rec[field]!r:.40}, not {_type_name(kind)}"
    for field, kind in OPTIONAL_FIELDS.items():
        if field in rec and bad(rec[field], kind):
            return f"field {field!r} is {rec[field]!r:.40}, not {_type_name(kind)}"
    summary = rec["summary"]
    if "status" not in summary:
        return "field 'summary.status' missing"
    for field, v in summary.items():
        kind = SUMMARY_FIELDS.get(field, NUMBER if field.startswith("val_") else None)
        if kind is not None and bad(v, kind):
            return f"field 'summary.{field}' is {v!r:.40}, not {_type_name(kind)}"
    return None


def load(records_dir) -> list[dict]:
    """Every record under ``records_dir`` (``*.jsonl``), in file then line order; a line
    that is not a record (:func:`record_problem`) is refused naming the file, the line
    and the field."""
    d = Path(records_dir)
    if not d.is_dir():
        raise ValueError(f"records directory {str(d)!r} does not exist (export it with "
                         f"`driftlab records RUN_DIR --out {d}`)")
    out = []
    for path in sorted(d.glob("*.jsonl")):
        for line, rec in numbered_jsonl(path):
            problem = record_problem(rec)
            if problem:
                raise ValueError(f"{path}: line {line}: {problem}")
            out.append(rec)
    return out


def materialize(records: list[dict], root) -> Path:
    """Write each record as a minimal run directory ``root/<preset>/<run_id>/``."""
    root = Path(root)
    for rec in records:
        d = root / rec["preset"] / rec["run_id"]
        d.mkdir(parents=True, exist_ok=True)
        spec = {k: rec[k] for k in ("preset", "version", "kind", "run_id", "tags", "label",
                                    "config") if k in rec}
        write_text(d / "run.json", json.dumps(spec, sort_keys=True))
        write_text(d / "config.json", json.dumps({"train": rec["config"]}, sort_keys=True))
        write_text(d / "summary.json", json.dumps(rec["summary"], sort_keys=True))
        write_text(d / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in
                                                 from_columns(rec.get("metrics", {}))))
        if rec.get("law"):
            write_text(d / "law.jsonl", "".join(json.dumps(m) + "\n" for m in rec["law"]))
    return root


# --------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    parser.add_argument("run_dirs", nargs="+", help="sweep output directories (searched "
                        "recursively for finished runs)")
    parser.add_argument("--out", required=True,
                        help="where <preset>.jsonl go (required: no default, so an export "
                             "never lands in the checked-in reports/reduced/records by "
                             "accident); checked before any run is read")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace records of another scale or plan already in --out "
                             "(default: refuse them)")


def run(args) -> int:
    from driftlab.models.engine.run_dir import check_output_dir

    check_output_dir(args.out)
    counts = export(args.run_dirs, args.out, overwrite=args.overwrite)
    total = sum(counts.values())
    size = sum((Path(args.out) / f"{p}.jsonl").stat().st_size for p in counts)
    print(f"driftlab records: {total} runs ({', '.join(f'{p}: {n}' for p, n in counts.items())}"
          f") -> {args.out} ({size / 1e6:.2f} MB)")
    return 0
