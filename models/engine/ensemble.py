"""Seed ensembles: S seeds of one configuration trained as one program.

:class:`Replicas` is the one place that knows whether a run carries a leading replica
axis: it stacks per-member host trees, splits device reads back into per-member trees and
names each member's run directory (``OUT/seed-<s>``, a normal run directory). Member i
uses seed ``seeds[i]`` for its init key, its data set and its data order, exactly as a
single ``--seed`` run does; only the compiled program is shared (models/engine/steps.py).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

ENSEMBLE_FILE = "ensemble.json"  # OUT/ensemble.json: the base config and the seeds


def parse_seeds(text) -> tuple[int, ...]:
    """``"0-7"``, ``"0,3,5"``, ``"2"`` (or a sequence of ints) -> sorted unique seeds;
    ValueError naming the value and the allowed forms."""
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
                raise ValueError(f"--seeds {text!r} invalid; allowed: A-B (A <= B), "
                                 f"A,B,C or a mix, non-negative integers, e.g. 0-7 or 0,3,5")
            lo = int(m.group(1))
            seeds += range(lo, (int(m.group(2)) if m.group(2) else lo) + 1)
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} invalid; allowed: distinct non-negative integers")
    return tuple(seeds)


def member_dir(out, seed: int) -> Path:
    return Path(out) / f"seed-{seed}"


@dataclass(frozen=True)
class Replicas:
    """The members of a run: ``seeds`` and whether arrays carry a replica axis
    (``stacked``; False for a single run, whose arrays have none)."""

    seeds: tuple
    stacked: bool

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def members(self) -> int | None:
        """The replica-axis length for models/engine/steps.py (None: a single run)."""
        return self.n if self.stacked else None

    def member_configs(self, cfg, outs=None) -> list:
        """Each member's TrainConfig: its seed and its own run directory."""
        if not self.stacked:
            return [cfg]
        outs = outs or [None if cfg.out is None else str(member_dir(cfg.out, s))
                        for s in self.seeds]
        return [dataclasses.replace(cfg, seed=s, out=o) for s, o in zip(self.seeds, outs)]

    def stack(self, trees: list):
        """Per-member host trees -> one tree (with the replica axis when stacked)."""
        if not self.stacked:
            return trees[0]
        return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)

    def unstack(self, tree) -> list:
        """One (host) tree -> per-member trees."""
        if not self.stacked:
            return [tree]
        return [jax.tree_util.tree_map(lambda x, i=i: np.asarray(x)[i], tree)
                for i in range(self.n)]

    def floats(self, pending) -> list:
        """A host_read.PendingRead -> per-member trees of Python floats."""
        if not self.stacked:
            return [pending.floats()]
        leaves, treedef = jax.tree_util.tree_flatten(pending.read())
        cols = [np.asarray(x, np.float64).reshape(self.n).tolist() for x in leaves]
        return [treedef.unflatten([c[i] for c in cols]) for i in range(self.n)]


def place_stacked(stacked: dict, mesh, spec) -> list:
    """{name: (K, S, B, ...)} host arrays -> K step batches {name: (S, B, ...)} placed with
    ``spec``: one host->device transfer and one program that splits them."""
    placed = jax.device_put({k: np.asarray(v) for k, v in stacked.items()},
                            NamedSharding(mesh, P(None, *spec)))
    return _unstacker(mesh, spec)(placed)


_UNSTACKERS: dict = {}


def _unstacker(mesh, spec):
    key = (mesh, spec)
    if key not in _UNSTACKERS:
        def unstack(stacked):
            k = next(iter(stacked.values())).shape[0]
            return [{name: v[i] for name, v in stacked.items()} for i in range(k)]
        _UNSTACKERS[key] = jax.jit(unstack, out_shardings=NamedSharding(mesh, spec))
    return _UNSTACKERS[key]


def stack_members(batches: list, axis: int) -> dict:
    """Per-member batch dicts -> one dict stacked on ``axis`` (the replica axis)."""
    return {k: np.stack([np.asarray(b[k]) for b in batches], axis=axis) for k in batches[0]}
