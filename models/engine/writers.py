"""Where a run's per-step records go: JSON Lines on disk, a list in memory, a progress bar.

:class:`JsonlWriter` keeps ``metrics.jsonl`` open during the loop (one open per record
cost more than the record) and buffers records; it writes them at every sync point
(checkpoint, signal, last step) and at most ``flush_seconds`` after a record, not per
record (a write cost ~60 µs, a third of a small step). Each flush is ONE ``write`` of whole
lines to a file opened for appending, so a kill never leaves half a line; a short write
(full disk) is cut back to the last whole line and raises atomic_io.DiskFullError. A
crash loses at most the last ``flush_seconds`` of records, all after the last checkpoint,
which a resumed run truncates and rewrites anyway.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import numpy as np

from driftlab.atomic_io import DiskFullError, write_text

METRICS_FILE = "metrics.jsonl"
METRICS_FLUSH_SECONDS = 1.0  # metrics.jsonl is flushed at sync points and this often


def json_default(obj):
    """JSON for numpy scalars and arrays; anything else as its str."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


class JsonlWriter:
    """Append records to ``path`` as JSON Lines (see the module docstring)."""

    def __init__(self, path: Path, flush_seconds: float = METRICS_FLUSH_SECONDS):
        self.path, self.flush_seconds = Path(path), flush_seconds
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lines: list[str] = []
        self._t_flush = time.time()

    def write(self, record: dict) -> None:
        self._lines.append(json.dumps(record, default=json_default) + "\n")
        if time.time() - self._t_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._t_flush = time.time()
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8")
        self._lines = []
        size = os.fstat(self._fd).st_size
        try:
            n = os.write(self._fd, data)
        except OSError as err:
            n, failure = 0, err
        else:
            failure = None if n == len(data) else OSError(errno.ENOSPC, "short write")
        if failure is not None:
            os.ftruncate(self._fd, size)  # no torn line left behind
            if failure.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise DiskFullError(self.path, len(data)) from None
            raise failure

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = None


class MemoryWriter:
    """Keep every record in ``records`` (a run without an output directory)."""

    def __init__(self):
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def truncate_records(path: Path, step: int, logged=None) -> None:
    """Drop records from steps >= ``step`` (written after the checkpoint we resume from)
    and, given ``logged`` (step -> bool), those of steps the resumed run does not log
    (an extended run's earlier last step), rewriting the file atomically."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            at = json.loads(line).get("step")
        except json.JSONDecodeError:
            continue  # a line cut short by a crash of an older version
        # an uninterrupted run to the new total never logged the old total's last step
        if at is None or (at < step and (logged is None or logged(at))):
            kept.append(line)
    write_text(path, "".join(k + "\n" for k in kept))


class Progress:
    """A tqdm bar over the run's steps (disabled: every call is a no-op)."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc=desc,
                        unit="step")

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def show(self, loss: float, rate: float) -> None:
        if not self.bar.disable:
            self.bar.set_postfix(loss=f"{loss:.4f}", steps_s=f"{rate:.1f}")

    def close(self) -> None:
        self.bar.close()


def open_writer(out: Path | None, main: bool):
    """The record writer of one member: metrics.jsonl under ``out`` (process 0), in
    memory without an ``out``, nothing on other processes."""
    if out is None:
        return MemoryWriter()
    return JsonlWriter(out / METRICS_FILE) if main else MemoryWriter()
