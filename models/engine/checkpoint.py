"""Checkpoints as a single ``.npz`` (no pickle), written atomically.

Layout of ``checkpoint.npz``: ``params/<path>`` for every parameter leaf ("/"-joined
dict keys), ``opt/<i>`` for the i-th leaf of the flattened optimizer state, ``step``,
``rng`` (the raw key data), ``extra/<name>`` scalars (e.g. the last loss) and ``meta``
(a JSON string identifying the run, checked on restore). The optimizer state's tree structure is not stored: it is rebuilt by
``optimizer.init`` on restore and the leaves are poured into it, checking the count,
shapes and dtypes.

Writes go to ``checkpoint.npz.new`` (atomically, driftlab/atomic_io.py), the current file is renamed to
``checkpoint.prev.npz`` (one previous generation), then the new file is renamed into
place: a crash or a damaged file never loses the run. :func:`load_latest` reads the current
generation and falls back to the previous one when the current one is damaged.
A damaged file (truncated, flipped bytes, random bytes) raises :class:`CheckpointDamaged`,
a ValueError whose one-line message names the file and the problem.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np

from driftlab import atomic_io
from driftlab.models.arch.params import flatten_dict, unflatten_dict

FILENAME = "checkpoint.npz"
PREVIOUS = "checkpoint.prev.npz"


class CheckpointDamaged(ValueError):
    """A checkpoint file that cannot be read back (truncated, corrupted, not a checkpoint)."""


def previous_path(path: str | os.PathLike) -> Path:
    """The previous generation kept next to ``path``."""
    return Path(path).with_name(PREVIOUS)


def exists(path: str | os.PathLike) -> bool:
    """Whether the current or the previous generation of ``path`` is on disk."""
    return Path(path).exists() or previous_path(path).exists()


def save(path: str | os.PathLike, params, opt_state, step: int, rng, meta: dict,
         extra: dict | None = None) -> None:
    """Write params, optimizer state, step, rng, meta and ``extra`` scalars (stored as
    ``extra/<name>``) to ``path`` atomically."""
    path = Path(path)
    arrays = {f"params/{k}": np.asarray(v) for k, v in flatten_dict(params).items()}
    for i, leaf in enumerate(jax.tree_util.tree_leaves(opt_state)):
        arrays[f"opt/{i}"] = np.asarray(leaf)
    arrays["step"] = np.asarray(step, np.int64)
    arrays["rng"] = np.asarray(rng)
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True, default=str))
    for name, value in (extra or {}).items():
        arrays[f"extra/{name}"] = np.asarray(value)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    # the new generation is complete on disk (atomic_io: fsynced, no temp left on a full
    # disk, DiskFullError) before the current one becomes the previous one
    new = path.with_name(path.name + ".new")
    atomic_io.write_bytes(new, buf.getvalue())
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(new, path)


def _check_leaf(path, name, stored: np.ndarray, template) -> np.ndarray:
    shape, dtype = np.shape(template), np.asarray(template).dtype
    if stored.shape != shape:
        raise ValueError(f"{path}: {name} has shape {stored.shape}, the run expects {shape}")
    return stored.astype(dtype)


def load(path: str | os.PathLike, params_template, opt_template, meta: dict):
    """Read a checkpoint -> (params, opt_state, step, rng, extra) shaped like the templates.

    Raises ValueError naming the file if it is unreadable, comes from a different run
    (``meta`` differs), or its arrays do not match the templates.
    """
    path = Path(path)
    data = _read_arrays(path)
    for key in ("step", "rng", "meta"):
        if key not in data:
            raise CheckpointDamaged(f"{path}: unreadable checkpoint: not a driftlab "
                                    f"checkpoint (no {key!r} entry)")
    try:
        stored_meta = json.loads(str(data["meta"]))
    except json.JSONDecodeError:
        raise CheckpointDamaged(f"{path}: unreadable checkpoint: damaged run identity "
                                f"(meta is not JSON)") from None
    want = json.loads(json.dumps(meta, sort_keys=True, default=str))
    diff = sorted(k for k in set(want) | set(stored_meta) if want.get(k) != stored_meta.get(k))
    if diff:
        details = ", ".join(f"{k}: checkpoint {stored_meta.get(k)!r} vs run {want.get(k)!r}"
                            for k in diff)
        raise ValueError(f"{path}: checkpoint belongs to a different run ({details})")
    flat_t = flatten_dict(params_template)
    missing = sorted(set(f"params/{k}" for k in flat_t) - set(data))
    if missing:
        raise ValueError(f"{path}: missing parameters {missing}")
    params = unflatten_dict({k: _check_leaf(path, f"params/{k}", data[f"params/{k}"], v)
                             for k, v in flat_t.items()})
    leaves, treedef = jax.tree_util.tree_flatten(opt_template)
    n_opt = sum(1 for k in data if k.startswith("opt/"))
    if n_opt != len(leaves):
        raise ValueError(f"{path}: optimizer state has {n_opt} arrays, the run expects "
                         f"{len(leaves)} (different optimizer?)")
    opt = [_check_leaf(path, f"opt/{i}", data[f"opt/{i}"], t) for i, t in enumerate(leaves)]
    extra = {k[len("extra/"):]: v for k, v in data.items() if k.startswith("extra/")}
    return (params, jax.tree_util.tree_unflatten(treedef, opt), int(data["step"]), data["rng"],
            extra)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``; CheckpointDamaged (one line) if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointDamaged(f"{path}: unreadable checkpoint: file not found") from None
    except zipfile.BadZipFile as err:
        problem = ("corrupted data (CRC check failed)" if "CRC" in str(err)
                   else f"truncated or damaged zip archive ({err})")
        raise CheckpointDamaged(f"{path}: unreadable checkpoint: {problem}") from None
    except ValueError as err:
        problem = ("not an .npz archive (random or foreign bytes)" if "pickle" in str(err)
                   else f"damaged array data ({err})")
        raise CheckpointDamaged(f"{path}: unreadable checkpoint: {problem}") from None
    except Exception as err:  # zlib.error, EOFError, OSError, struct.error, ...
        raise CheckpointDamaged(f"{path}: unreadable checkpoint: "
                                f"{type(err).__name__}: {err}".splitlines()[0]) from None


def load_latest(path: str | os.PathLike, params_template, opt_template, meta: dict,
                warn=lambda line: print(line, file=sys.stderr)):
    """:func:`load` of ``path``, or of its previous generation when ``path`` is missing or
    damaged (``warn`` gets one line naming the damaged file). Raises CheckpointDamaged
    when no generation is readable, ValueError when the checkpoint is another run's."""
    path = Path(path)
    prev = previous_path(path)
    try:
        return load(path, params_template, opt_template, meta)
    except CheckpointDamaged as err:
        if not prev.exists():
            raise
        first = err
    try:
        loaded = load(prev, params_template, opt_template, meta)
    except CheckpointDamaged as err:
        raise CheckpointDamaged(f"{first}; previous generation also unreadable: "
                                f"{err}") from None
    warn(f"{first}; resuming from the previous generation {prev} (step {loaded[2]})")
    return loaded


def read_meta(path: str | os.PathLike) -> dict:
    """The run identity stored in a checkpoint (current generation, else the previous
    one); CheckpointDamaged when neither is readable."""
    errors = []
    for p in (Path(path), previous_path(path)):
        if not p.exists():
            continue
        try:
            data = _read_arrays(p)
            return json.loads(str(data["meta"]))
        except (CheckpointDamaged, KeyError, json.JSONDecodeError) as err:
            errors.append(str(err))
    raise CheckpointDamaged(f"{path}: no readable checkpoint identity ({'; '.join(errors)})")
