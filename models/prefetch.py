"""Background batch production: the next batches are sampled and put on the device while
the current step runs.

The training loop needs batch ``s`` (``get_batch("train", s)``: host sampling, then the
transfer to the devices) right before dispatching step ``s``. Done inline, that host work
sits between two dispatches. :class:`Prefetcher` runs ``produce(s)`` for s = start, start+1,
… on one daemon thread, at most ``depth`` batches ahead, so the loop only takes the
finished batch from a queue. Batches are produced in step order by the same pure function
of ``s`` (Dataset.sample depends only on (split, step, batch_size, seed)), so the loop sees
exactly the batches it would have sampled itself, and a resumed run (another ``start``)
sees the same batches as an uninterrupted one.

An exception in ``produce`` is re-raised by :meth:`Prefetcher.get` for the step that
raised it, in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable


class Prefetcher:
    """``get(s)`` returns ``produce(s)``, produced ahead on a background thread.

    Steps must be requested in order ``start, start+1, …, stop-1``; ``close()`` (or the
    context manager) stops the thread, also when the loop ends early.
    """

    def __init__(self, produce: Callable[[int], object], start: int, stop: int,
                 depth: int = 2):
        if depth < 1:
            raise ValueError(f"Prefetcher depth={depth!r} invalid; allowed: an integer >= 1")
        self._produce, self._next, self._stop_step = produce, start, stop
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(start, stop),
                                        name="driftlab-prefetch", daemon=True)
        self._thread.start()

    def _work(self, start: int, stop: int) -> None:
        for step in range(start, stop):
            try:
                item = (step, self._produce(step), None)
            except BaseException as err:  # handed to the consumer, raised there
                item = (step, None, err)
            while not self._closed.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._closed.is_set() or item[2] is not None:
                return

    def get(self, step: int):
        """The batch of ``step`` (the next step in order)."""
        if step != self._next or step >= self._stop_step:
            raise ValueError(f"Prefetcher.get(step={step}) out of order; allowed: the next "
                             f"step {self._next} (< {self._stop_step})")
        got, batch, err = self._queue.get()
        self._next += 1
        if err is not None:
            raise err
        assert got == step, (got, step)
        return batch

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
