"""Find run directories under a tree: sweep runs, ``driftlab train`` runs and their seed-*
ensembles; skip, and name, what cannot be used.

A directory is a run when it holds ``run.json`` (a sweep run, reports/sweep.py) or
``config.json`` (a ``driftlab train`` run; ``OUT/seed-<s>/`` of an ensemble are such runs).
A run's own subdirectories are not searched; hidden directories (``.claims``,
``.superseded``) are not either. Every directory that looks like a run but cannot be used is
returned in ``skipped`` with the reason, so a report can say so instead of stopping or
dropping it silently:

* ``summary.json`` (or ``run.json``/``config.json``) missing, truncated or not JSON;
* a status other than finished (``ok``, ``diverged``): unfinished or interrupted runs;
* a sweep run of a preset this code does not define (``unknown preset``);
* a sweep run of another version of its preset than the current one: versions are not
  pooled (``preset drift v1, current v2``).

``driftlab train`` runs get a spec of the same shape as a sweep run's ``run.json``, with
preset ``"train"`` and tags from their config, so reports and :func:`driftlab.load_run`
read both the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

RUN_FILE = "run.json"  # reports/sweep.py writes it first
CONFIG_FILE = "config.json"  # models/train.py writes it
SUMMARY_FILE = "summary.json"
TRAIN_PRESET = "train"
TRAIN_TAGS = ("arch", "act", "data", "optimizer", "seed", "size")


@dataclass
class Found:
    """A usable run: its directory, spec (run.json or one made from config.json), summary."""

    path: Path
    spec: dict
    summary: dict


@dataclass
class Discovery:
    runs: list[Found] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (directory, reason)


def _json(path: Path):
    """(object, None) or (None, reason) for a JSON file."""
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, f"no {path.name}"
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{path.name} unreadable ({type(err).__name__})"
    except json.JSONDecodeError as err:
        return None, f"{path.name} damaged (not JSON: {err.msg} at char {err.pos})"


def run_dirs(root: Path):
    """Run directories under ``root`` (itself included), sorted; no hidden directories and
    no directories inside a run."""
    for here, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if RUN_FILE in files or CONFIG_FILE in files:
            subdirs[:] = [d for d in subdirs if d.startswith("seed-")]  # ensemble members
            yield Path(here)


def train_spec(config: dict, run_dir: Path, root: Path) -> dict:
    """A run.json-shaped spec for a ``driftlab train`` run from its ``config.json``."""
    train = config.get("train", {}) if isinstance(config, dict) else {}
    try:
        run_id = str(run_dir.resolve().relative_to(root.resolve().parent))
    except ValueError:
        run_id = run_dir.name
    tags = {k: train[k] for k in TRAIN_TAGS if k in train}
    if train.get("pins"):
        tags["pin"] = "+".join(train["pins"])
    return {"preset": TRAIN_PRESET, "version": "-", "kind": "train", "run_id": run_id,
            "tags": tags, "label": run_id, "config": train}


def discover(dirs, presets: dict | None = None) -> Discovery:
    """Every usable finished run under ``dirs`` and every skipped one with its reason.
    ``presets``: {name: current version} (default: reports.presets.PRESETS); ValueError
    for a directory that does not exist."""
    if presets is None:
        from driftlab.reports.presets import PRESETS

        presets = {name: p.version for name, p in PRESETS.items()}
    found, seen = Discovery(), set()
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise ValueError(f"run directory {str(root)!r} does not exist or is not a directory")
        for run_dir in run_dirs(root):
            key = run_dir.resolve()
            if key in seen:
                continue
            seen.add(key)
            reason = _one(run_dir, root, presets, found)
            if reason:
                found.skipped.append((str(run_dir), reason))
    return found


def _one(run_dir: Path, root: Path, presets: dict, found: Discovery) -> str | None:
    if (run_dir / RUN_FILE).exists():
        spec, why = _json(run_dir / RUN_FILE)
        if why or not isinstance(spec, dict) or "preset" not in spec:
            return why or f"{RUN_FILE} is not a run spec"
    else:
        config, why = _json(run_dir / CONFIG_FILE)
        if why or not isinstance(config, dict):
            return why or f"{CONFIG_FILE} is not a run config"
        spec = train_spec(config, run_dir, root)
    summary, why = _json(run_dir / SUMMARY_FILE)
    if why:
        return why + ("" if (run_dir / SUMMARY_FILE).exists() else " (unfinished or interrupted)")
    if not isinstance(summary, dict):
        return f"{SUMMARY_FILE} is not an object"
    from driftlab.reports.sweep import FINISHED_STATUSES

    if summary.get("status") not in FINISHED_STATUSES:
        return f"status {summary.get('status')!r} (not finished; resume it to include it)"
    preset = spec["preset"]
    if preset != TRAIN_PRESET:
        if preset not in presets:
            return f"unknown preset {preset!r} (this code defines {', '.join(presets)})"
        if str(spec.get("version")) != str(presets[preset]):
            return (f"preset {preset} v{spec.get('version')}, current v{presets[preset]}: "
                    f"versions are not pooled")
    found.runs.append(Found(run_dir.resolve(), spec, summary))
    return None
