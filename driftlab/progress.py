"""Progress of a run of N units on a stream (stderr): one display for every long command.

On a terminal: one overall bar ("k of N" and what runs next). Otherwise (a log, a pipe,
CI): one line per finished unit, "[k/N] …", so a run's progress is readable after the fact
and no carriage returns end up in the log. Notes (e.g. the estimator chosen for a tap) go
above the bar, or as their own line.
"""

from __future__ import annotations

import sys


class UnitProgress:
    """``advance(line, postfix)`` per finished unit; ``note(text)`` for a message. ``show``
    False prints nothing. Use as a context manager (closes the bar)."""

    def __init__(self, total: int, desc: str, unit: str, stream=None, show: bool = True):
        self.stream = sys.stderr if stream is None else stream
        self.total, self.done, self.show = total, 0, show
        self.bar = None
        if show and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream)

    def advance(self, line: str, postfix: str | None = None) -> None:
        """One unit done: ``line`` off a terminal ("[k/N] line"), ``postfix`` on the bar."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if postfix is not None:
                self.bar.set_postfix_str(postfix)
        elif self.show:
            print(f"[{self.done}/{self.total}] {line}", file=self.stream, flush=True)

    def set_postfix(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.show:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SeedTapProgress(UnitProgress):
    """The progress of ``theory layers``: N = seeds × taps; ``tick(tap, seed, text)``."""

    def __init__(self, total: int, desc: str = "theory layers", stream=None, show: bool = True):
        super().__init__(total, desc, "seed", stream, show)

    def tick(self, tap: str, seed: int, text: str = "") -> None:
        self.advance(f"{tap} seed {seed}{': ' + text if text else ''}", f"{tap} seed {seed}")
