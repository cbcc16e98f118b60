"""Background batch production: the next batches are sampled and put on the device while
the current steps run.

The training loop needs batch ``s`` (host sampling, then the transfer to the devices) right
before dispatching step ``s``. Done inline, that host work sits between two dispatches, and
one transfer per step costs more host time than a small step itself. :class:`Prefetcher`
runs ``produce(first, count)`` — the batches of steps first … first+count-1, e.g. sampled one
by one and moved to the devices in one transfer (models/engine/sharding.py ``shard_batches``) — for
chunks of ``chunk`` steps on one daemon thread, at most ``depth`` chunks ahead, so the loop
only takes a finished batch. Batches are produced in step order by the same pure function
of the step (Dataset.sample depends only on (split, step, batch_size, seed)), so the loop
sees exactly the batches it would have sampled itself, and a resumed run (another
``start``) sees the same batches as an uninterrupted one.

An exception in ``produce`` is re-raised by :meth:`Prefetcher.get` at the first step of the
chunk that raised it, in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable


class Prefetcher:
    """``get(s)`` returns batch ``s`` of ``produce(first, count)`` (a list of ``count``
    batches), produced ``chunk`` steps at a time, on a background thread up to ``depth``
    chunks ahead (``background=True``) or in ``get`` when a chunk is used up (then the
    next chunk's transfer, which JAX runs asynchronously, overlaps the chunk's steps).

    Steps must be requested in order ``start, start+1, …, stop-1``; ``close()`` (or the
    context manager) stops the thread, also when the loop ends early.
    """

    def __init__(self, produce: Callable[[int, int], list], start: int, stop: int,
                 chunk: int = 1, depth: int = 2, background: bool = True):
        for name, v in (("chunk", chunk), ("depth", depth)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Prefetcher {name}={v!r} invalid; allowed: an integer >= 1")
        self._produce, self._next, self._stop_step = produce, start, stop
        self._chunk = chunk
        self._ready: list = []  # batches of the current chunk, next step first
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._work, args=(start, stop, chunk),
                                            name="driftlab-prefetch", daemon=True)
            self._thread.start()

    def _work(self, start: int, stop: int, chunk: int) -> None:
        for first in range(start, stop, chunk):
            count = min(chunk, stop - first)
            try:
                item = (first, list(self._produce(first, count)), None)
                if len(item[1]) != count:
                    raise RuntimeError(f"produce({first}, {count}) returned {len(item[1])} "
                                       f"batches")
            except BaseException as err:  # handed to the consumer, raised there
                item = (first, None, err)
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
        if not self._ready:
            if self._thread is None:  # in the caller's thread; transfers still run async
                count = min(self._chunk, self._stop_step - step)
                first, batches, err = step, list(self._produce(step, count)), None
                if len(batches) != count:
                    raise RuntimeError(f"produce({step}, {count}) returned {len(batches)} "
                                       f"batches")
            else:
                first, batches, err = self._queue.get()
            if err is not None:
                raise err
            assert first == step, (first, step)
            self._ready = batches[::-1]
        self._next += 1
        return self._ready.pop()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
