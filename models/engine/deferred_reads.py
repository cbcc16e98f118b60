"""Device->host reads of the training loop, finished a few steps late, and the records
they become.

After a logged step (or a sync step) :meth:`DeferredReads.push` starts the one
device->host read of what that step left: on a logged step the packed record the step
itself computed (models/engine/host_read.py), otherwise its guard and loss. Reads are finished,
in step order, once they would not wait (one process) or ``READ_LAG`` steps later
(several processes: every process then reads at the same steps); a sync step
(checkpoint, signal, hook, last step) finishes all of them at once, since it needs the
state of that very step. The host thus never waits for the device between sync points,
and the device is never left idle while the host writes a record. At most
``MAX_READ_LAG`` steps go by before a read is forced.

:class:`RecordBook` turns finished reads into records: it checks the guard first, so a
non-finite step raises :class:`NonFiniteLossError` (single run) before anything of it is
written or saved; in a seed ensemble it marks only that member diverged, writes its
``non_finite`` event, and the others go on (its frozen, last good state stays in the
ensemble's state and checkpoint).
"""

from __future__ import annotations

import collections
import time
from typing import NamedTuple

from driftlab.models.engine import nonfinite

READ_LAG = 2  # several processes: steps dispatched behind a logged step before its read
MAX_READ_LAG = 50  # one process: the most steps a logged step's read may wait


class NonFiniteLossError(RuntimeError):
    """Training hit a non-finite loss or update; the last good checkpoint is kept."""

    def __init__(self, step: int, loss: float, checkpoint_step: int | None, path):
        self.step, self.loss, self.checkpoint_step = step, loss, checkpoint_step
        where = (f"last good checkpoint: step {checkpoint_step} in {path}"
                 if checkpoint_step is not None else "no checkpoint was written")
        super().__init__(f"non-finite loss or update at step {step} (loss={loss}); "
                         f"training stopped; {where}")


class Pending(NamedTuple):
    step: int  # the step whose results are read
    read: object  # host_read.PendingRead
    logged: bool  # a full record (else guard and loss only)
    steps_at: int  # steps run by this invocation when it was started (for steps/s)


class DeferredReads:
    """The queue of started reads (see the module docstring)."""

    def __init__(self, reader, replicas, record_layout, multi_process: bool):
        self.reader, self.replicas, self.layout = reader, replicas, record_layout
        self.poll = not multi_process
        self.max_lag = READ_LAG if multi_process else max(READ_LAG, MAX_READ_LAG)
        self.queue: collections.deque = collections.deque()

    def push(self, step: int, out, guard, logged: bool, steps_at: int) -> None:
        """Start the read of step ``step``'s ``out`` (its logs, or its packed record)."""
        read = (self.reader.packed(out, self.layout) if logged
                else self.reader.start({"guard": guard, "loss": out["loss"]}))
        self.queue.append(Pending(step, read, logged, steps_at))

    def drain(self, step: int, sync: bool):
        """Yield (Pending, per-member host trees) for each read due at ``step``, oldest
        first: all of them on a sync step."""
        q = self.queue
        while q and (sync or step - q[0].step >= self.max_lag
                     or (self.poll and step > q[0].step and q[0].read.ready())):
            pending = q.popleft()
            yield pending, self.replicas.floats(pending.read)


class RecordBook:
    """Per-member records from finished reads, and what the summary needs of them."""

    def __init__(self, cfg, replicas, writers, init_means, progress, checkpointer,
                 t_start: float, final_loss=None, diverged=None):
        self.cfg, self.replicas, self.writers = cfg, replicas, writers
        self.init_means, self.progress, self.ckpt = init_means, progress, checkpointer
        self.final_loss = list(final_loss or [None] * replicas.n)
        self.last_taps = [None] * replicas.n
        self.diverged = dict(diverged or {})  # member index -> (bad step, bad loss)
        self.t_start, self.t_loop = t_start, time.time()

    @property
    def all_diverged(self) -> bool:
        return len(self.diverged) == self.replicas.n

    def with_change(self, i: int, stats: dict) -> dict:
        """Per-matrix host stats of member ``i`` with mean_change = mean - mean at init."""
        for k, v in stats.items():
            v["mean_change"] = v["mean"] - self.init_means[i][k]
        return stats

    def finish(self, pending: Pending, hosts: list) -> None:
        for i, host in enumerate(hosts):
            if i in self.diverged:
                continue
            ok, bad_step, bad_loss = nonfinite.read_guard(host["guard"])
            if not ok:  # the device state is the state before bad_step; nothing of it saved
                self.writers[i].write({"step": bad_step, "event": "non_finite",
                                       "loss": bad_loss})
                if not self.replicas.stacked:
                    raise NonFiniteLossError(bad_step, bad_loss, self.ckpt.last,
                                             self.ckpt.path)
                self.diverged[i] = (bad_step, bad_loss)
                continue
            self.final_loss[i] = host["loss"]
            if pending.logged:
                self._write_record(i, pending, host)

    def _write_record(self, i: int, pending: Pending, host: dict) -> None:
        cfg = self.cfg
        self.last_taps[i] = host["taps"]
        rate = pending.steps_at / max(time.time() - self.t_loop, 1e-9)
        # the key order of the records written before (sorted scalars first)
        record = {"step": pending.step, "grad_norm": host["grad_norm"], "loss": host["loss"],
                  "lr": host["lr"], **host["metrics"], "steps_per_s": rate,
                  "time": time.time() - self.t_start}
        if cfg.instrument:
            record["taps"] = host["taps"]
            record["weights"] = self.with_change(i, host["weights"])
            if host["shift"]:
                record["shift"] = host["shift"]
        if cfg.pins:
            record["pins"] = host["pins"]
        self.writers[i].write(record)
        if i == 0:
            self.progress.show(record["loss"], rate)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()
