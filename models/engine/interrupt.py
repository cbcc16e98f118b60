"""Turn SIGTERM/SIGINT into a stop request the training loop polls between steps.

SLURM preemption (and ``scancel``) sends SIGTERM; Ctrl-C sends SIGINT. Inside
:class:`StopOnSignal` the first such signal only records its number, so the loop can
finish the current step, write a checkpoint and return; a second one raises
KeyboardInterrupt as usual. Handlers are installed only in the main thread and the
previous handlers are restored on exit.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignal:
    """Context manager; ``signum`` is the first received signal's number (or None)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopOnSignal":
        if self.enabled:
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None
