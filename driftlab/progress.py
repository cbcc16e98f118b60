"""Progress of a run of N = seeds × taps units on a stream (stderr).

On a terminal: one overall bar ("k of N", the current tap and seed). Otherwise (a log, a
pipe, CI): one line per finished unit, so a run's progress is readable after the fact
and no carriage returns end up in the log. Notes (e.g. the estimator chosen for a tap)
go above the bar, or as their own line.
"""

from __future__ import annotations

import sys


class SeedTapProgress:
    """``tick(tap, seed, text)`` per finished (tap, seed); ``note(text)`` for a message.
    ``show`` False prints nothing. Use as a context manager (closes the bar)."""

    def __init__(self, total: int, desc: str = "theory layers", stream=None, show: bool = True):
        self.stream = sys.stderr if stream is None else stream
        self.total, self.done, self.show = total, 0, show
        self.bar = None
        if show and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="seed", file=self.stream)

    def tick(self, tap: str, seed: int, text: str = "") -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{tap} seed {seed}")
        elif self.show:
            print(f"[{self.done}/{self.total}] {tap} seed {seed}{': ' + text if text else ''}",
                  file=self.stream, flush=True)

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
