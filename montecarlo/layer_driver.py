"""One tap of ``driftlab theory layers`` over its seeds: blocks of seeds, kernels compiled once.

Profile (GPT tiny, block0.mlp, B = 32, 2 shared cores; docs/performance-layers.md): the
exact H·D basis costs H·D = 4096 HVP pairs per seed (~100 s), against ~0.03 s for one
Hutchinson probe; XLA compilation is 5–60 s per program (ViT 13 s, MP-SENet 57 s). So the
time goes to the basis sum when it is not needed, then to compiles. This module therefore

* splits a seed's work into a *fixed* kernel (measured E[g|p>0], #(p>0), the reader check)
  and a *probe* kernel (``block`` probes of one estimator mode, their per-probe predictions),
  so one compiled probe kernel serves any probe count that is a multiple of ``block``
  (calls c = 0, 1, … with independent keys), and the fixed pass over all seeds gives the
  measured variance the estimator choice needs before any probe is spent;
* evaluates ``seed_block`` seeds per call (vmap), the last block padded by repeating its
  last seed (results dropped), so every call has one shape;
* compiles each kernel once per tap ahead of time (``lower().compile()``), which also
  separates compile seconds from run seconds in the pilot's cost.

A seed's values: the per-probe predictions of all its calls (their mean is ``predicted``),
``gauss_newton`` / ``kink`` averaged over calls (equal probes per call), ``measured`` and
``shortcut`` from any one call (they do not depend on probes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("hutchinson", "row_exact", "exact")
FIXED_KEYS = ("measured", "n_pos", "reader_error")
SEED_BLOCK = 4  # seeds per call: fills the vector units at tiny sizes, memory stays small


@dataclass(frozen=True)
class Estimator:
    """How the prediction's probe sum is formed: ``mode`` with ``probes`` probes per seed,
    ``block`` of them per kernel call (exact: the whole basis, probes = block = 1)."""

    mode: str
    probes: int
    block: int

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} invalid; allowed: {', '.join(MODES)}")
        if self.block < 1 or self.probes < 1 or self.probes % self.block:
            raise ValueError(f"probes={self.probes}, block={self.block} invalid; allowed: "
                             f"positive ints, probes a multiple of block")

    @property
    def calls(self) -> int:
        return self.probes // self.block

    def describe(self) -> str:
        return "exact (H·D basis)" if self.mode == "exact" else f"{self.mode} × {self.probes}"


def call_key(key, call):
    """The probe key of call ``call`` (traced int): ``key`` itself for call 0, so a single-call
    run draws the probes it drew before calls existed."""
    return jnp.where(call == 0, key, jax.random.fold_in(key, call))


class SeedBlocks:
    """Init params, batches and probe keys of seeds 0 … seeds−1 in blocks of ``size``, stacked
    on a leading axis. Seed s: ``arch.init(PRNGKey(s))``, ``ds.sample("train", s, B, s)``,
    probe key PRNGKey(10 000 + s)."""

    def __init__(self, arch, cfg, ds, batch_size: int, seeds: int, size: int = SEED_BLOCK):
        init = jax.jit(lambda k: arch.init(k, cfg))
        self.seeds, self.size = seeds, max(1, min(size, seeds))
        self.blocks = []
        for start in range(0, seeds, self.size):
            ids = list(range(start, min(start + self.size, seeds)))
            padded = ids + [ids[-1]] * (self.size - len(ids))
            params = [init(jax.random.PRNGKey(s)) for s in padded]
            batches = [{k: jnp.asarray(v) for k, v in ds.sample("train", s, batch_size, s).items()}
                       for s in padded]
            stack = lambda xs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *xs)
            keys = jnp.stack([jax.random.PRNGKey(10_000 + s) for s in padded])
            self.blocks.append((ids, stack(params), stack(batches), keys))


class TapKernels:
    """The fixed and probe kernels of one tap, each compiled once (ahead of time) on first use.

    ``seed_fn(params, batch, key, call, mode, block)`` is the per-seed estimator (a dict of
    jax values with ``predicted_probes`` of length ``block``); unused outputs are not
    returned, so XLA drops their work (the fixed kernel computes no probes, the probe
    kernel no reader check). ``compile_seconds`` sums the compiles so far."""

    def __init__(self, seed_fn, blocks: SeedBlocks, probe_keys: tuple[str, ...]):
        self.seed_fn, self.blocks, self.probe_keys = seed_fn, blocks, probe_keys
        self._compiled, self.compile_seconds = {}, 0.0

    def _get(self, kind: str, mode: str, block: int):
        if (kind, mode, block) not in self._compiled:
            keys = FIXED_KEYS if kind == "fixed" else self.probe_keys

            def one(params, batch, key, call):
                out = self.seed_fn(params, batch, key, call, mode, block)
                return {k: out[k] for k in keys}

            fn = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))
            _, params, batch, key = self.blocks.blocks[0]
            t0 = time.perf_counter()
            self._compiled[kind, mode, block] = fn.lower(params, batch, key, jnp.int32(0)).compile()
            self.compile_seconds += time.perf_counter() - t0
        return self._compiled[kind, mode, block]

    def fixed(self, i_block: int) -> dict:
        """Fixed outputs of block ``i_block`` as numpy arrays (padded rows included)."""
        _, params, batch, key = self.blocks.blocks[i_block]
        return jax.device_get(self._get("fixed", "hutchinson", 1)(params, batch, key, jnp.int32(0)))

    def probes(self, est: Estimator, i_block: int, call: int) -> tuple[dict, float]:
        """(probe outputs, run seconds) of call ``call`` on block ``i_block``."""
        fn = self._get("probe", est.mode, est.block)
        _, params, batch, key = self.blocks.blocks[i_block]
        t0 = time.perf_counter()
        out = jax.device_get(fn(params, batch, key, jnp.int32(call)))
        return out, time.perf_counter() - t0


def seed_values(fixed: dict, calls: list[dict], row: int) -> dict:
    """One seed's values (module doc) from its fixed outputs and its probe calls."""
    out = {k: float(fixed[k][row]) for k in FIXED_KEYS}
    out["predicted_probes"] = np.concatenate([np.asarray(c["predicted_probes"][row], np.float64)
                                              for c in calls])
    out["predicted"] = float(out["predicted_probes"].mean())
    for k in calls[0]:
        if k == "predicted_probes":
            continue
        vals = [float(c[k][row]) for c in calls]
        out[k] = vals[0] if k == "shortcut" else float(np.mean(vals))
    return out


def run_tap(kernels: TapKernels, est: Estimator, fixed: list[dict] | None = None,
            done: dict | None = None, on_seed=None) -> list[dict]:
    """Every seed's values with estimator ``est``. ``fixed`` (per block) and ``done``
    ({(block, call): outputs}, from a pilot) are reused, not recomputed. ``on_seed(seed,
    values)`` after each seed."""
    done = done or {}
    values = []
    for b, (ids, *_rest) in enumerate(kernels.blocks.blocks):
        fx = fixed[b] if fixed is not None else kernels.fixed(b)
        calls = [done[b, c] if (b, c) in done else kernels.probes(est, b, c)[0]
                 for c in range(est.calls)]
        for row, s in enumerate(ids):
            v = seed_values(fx, calls, row)
            values.append(v)
            if on_seed:
                on_seed(s, v)
    return values


__all__ = ["Estimator", "SeedBlocks", "TapKernels", "run_tap", "seed_values", "call_key",
           "MODES", "SEED_BLOCK"]
