"""Checkpoints as a single ``.npz`` (no pickle), written atomically.

Layout of ``checkpoint.npz``: ``params/<path>`` for every parameter leaf ("/"-joined
dict keys), ``opt/<i>`` for the i-th leaf of the flattened optimizer state, ``step``,
``rng`` (the raw key data), ``extra/<name>`` scalars (e.g. the last loss) and ``meta``
(a JSON string identifying the run, checked on restore). The optimizer state's tree structure is not stored: it is rebuilt by
``optimizer.init`` on restore and the leaves are poured into it, checking the count,
shapes and dtypes.

Writes go to ``checkpoint.npz.tmp`` then ``os.replace``, so a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

FILENAME = "checkpoint.npz"


def flatten_dict(tree, prefix: str = "") -> dict[str, object]:
    """Nested dicts -> {"a/b/c": leaf}; keys in sorted order (as jax flattens dicts)."""
    out = {}
    for key in sorted(tree):
        path = f"{prefix}{key}"
        value = tree[key]
        if isinstance(value, dict):
            out.update(flatten_dict(value, path + "/"))
        else:
            out[path] = value
    return out


def unflatten_dict(flat: dict[str, object]) -> dict:
    """Inverse of :func:`flatten_dict`."""
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: unreadable checkpoint ({err})") from None
    for key in ("step", "rng", "meta"):
        if key not in data:
            raise ValueError(f"{path}: not a driftlab checkpoint (no {key!r} entry)")
    stored_meta = json.loads(str(data["meta"]))
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
