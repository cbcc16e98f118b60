"""Data parallelism: one mesh axis ``"data"`` over every device, batch split on its leading axis.

Parameters and optimizer state are replicated (``NamedSharding(mesh, P())``); each batch
array is sharded along its leading (batch) axis (``P("data")``). XLA inserts the
gradient all-reduce, so the training step is written as if on one device.

Multi-host launch
-----------------
Every process runs the same ``driftlab train`` command; :func:`maybe_initialize_distributed`
calls ``jax.distributed.initialize`` when the environment says there are several processes:

* explicit: ``DRIFTLAB_COORDINATOR=host:port DRIFTLAB_NUM_PROCESSES=N DRIFTLAB_PROCESS_ID=i``
  (also how the tests start two CPU processes on one machine);
* SLURM: ``srun --ntasks=N --ntasks-per-node=K driftlab train ...`` — JAX reads
  ``SLURM_*`` (coordinator = first node of the job, process id = ``SLURM_PROCID``);
  set one task per node (or per GPU with ``CUDA_VISIBLE_DEVICES``/``--gpus-per-task``);
* Cloud TPU pods: ``gcloud compute tpus tpu-vm ssh NAME --worker=all --command="driftlab
  train ..."`` — JAX detects the TPU worker environment (``TPU_WORKER_HOSTNAMES``).

Each process then loads only its slice of the global batch (:func:`process_rows`); the
global batch size must be divisible by the total device count. Process 0 alone writes
files (metrics, config, checkpoints).
"""

from __future__ import annotations

import os
from functools import lru_cache

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def _want_distributed() -> str | None:
    """Why this process is one of several ("explicit", "slurm", "tpu"), or None."""
    if os.environ.get("DRIFTLAB_COORDINATOR"):
        return "explicit"
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in os.environ:
        return "slurm"
    if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        return "tpu"
    return None


def maybe_initialize_distributed() -> bool:
    """Call ``jax.distributed.initialize`` once if the environment names several processes.

    Returns True if JAX runs multi-process afterwards. Must run before any JAX
    computation (the engine calls it first thing).
    """
    if jax.distributed.is_initialized():
        return True
    how = _want_distributed()
    if how is None:
        return False
    if how == "explicit":
        try:
            n = int(os.environ["DRIFTLAB_NUM_PROCESSES"])
            pid = int(os.environ["DRIFTLAB_PROCESS_ID"])
        except (KeyError, ValueError):
            raise ValueError("DRIFTLAB_COORDINATOR is set, so DRIFTLAB_NUM_PROCESSES and "
                             "DRIFTLAB_PROCESS_ID must be integers") from None
        jax.distributed.initialize(os.environ["DRIFTLAB_COORDINATOR"], n, pid)
    else:
        jax.distributed.initialize()  # cluster auto-detection (SLURM, TPU)
    return True


def make_mesh() -> Mesh:
    """A 1-D mesh over all (global) devices, axis name ``"data"``."""
    return Mesh(np.asarray(jax.devices()), (AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raise ValueError unless the global batch splits evenly over the devices."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"batch_size={batch_size} invalid: it must be divisible by the "
                         f"number of devices ({n}); allowed: multiples of {n}")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def process_rows(batch_size: int) -> slice:
    """The rows of the global batch that this process loads (contiguous, equal slices)."""
    n, i = jax.process_count(), jax.process_index()
    per = batch_size // n
    return slice(i * per, (i + 1) * per)


def shard_batch(local: dict, mesh: Mesh, batch_size: int) -> dict:
    """Assemble this process's rows into global arrays sharded on the leading axis."""
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:  # one batched transfer: a fraction of the per-array assembly's host cost
        return jax.device_put({k: np.asarray(v) for k, v in local.items()}, sharding)
    return {k: jax.make_array_from_process_local_data(
                sharding, np.asarray(v), (batch_size, *np.shape(v)[1:]))
            for k, v in local.items()}


@lru_cache(maxsize=8)
def _unstacker(mesh: Mesh):
    """jit: a dict of (K, B, ...) arrays -> K dicts of (B, ...) arrays sharded on B."""
    def unstack(stacked):
        k = next(iter(stacked.values())).shape[0]
        return [{name: v[i] for name, v in stacked.items()} for i in range(k)]
    return jax.jit(unstack, out_shardings=batch_sharding(mesh))


def shard_batches(locals_: list, mesh: Mesh, batch_size: int) -> list:
    """``[shard_batch(b, mesh, batch_size) for b in locals_]`` (the same values), with one
    host->device transfer for all of them and one program that splits them."""
    return shard_stacked({k: np.stack([np.asarray(b[k]) for b in locals_]) for k in locals_[0]},
                         mesh, batch_size)


def shard_stacked(stacked: dict, mesh: Mesh, batch_size: int) -> list:
    """K batches given stacked on a leading axis ({name: (K, local rows, ...)}) -> the list
    of K global batches, each sharded like :func:`shard_batch`: one host->device transfer
    and one program that splits them, a fraction of the host cost of K transfers."""
    spec = NamedSharding(mesh, P(None, AXIS))
    if jax.process_count() == 1:
        placed = jax.device_put({k: np.asarray(v) for k, v in stacked.items()}, spec)
    else:
        placed = {k: jax.make_array_from_process_local_data(
                      spec, np.asarray(v), (np.shape(v)[0], batch_size, *np.shape(v)[2:]))
                  for k, v in stacked.items()}
    return _unstacker(mesh)(placed)


def replicate(tree, mesh: Mesh):
    """Place a pytree of host arrays on every device of the mesh."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    # Every process holds the same values (same seed), so each contributes its copy.
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x)),
        tree)


def to_host(x) -> np.ndarray:
    """A replicated (or fully addressable) array as numpy, valid on every process."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    return np.asarray(x.addressable_data(0))
