"""Checks on an output location, made before any computation.

:func:`check_output_dir` rejects a path that is a file, lies under a file, or cannot be
written, so that a long computation never ends in ``FileExistsError`` / ``OSError``.
:func:`check_reuse` refuses to replace an earlier training run in a reused directory unless
the caller asked to resume it or to overwrite it.
"""

from __future__ import annotations

import os
from pathlib import Path

# Files whose presence means a training run already wrote to the directory.
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "checkpoint.prev.npz",
             "summary.json")


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a Path if it is (or can be created as) a writable directory.

    Raises ValueError naming ``flag`` when ``path`` is an existing non-directory, when a
    parent component is a file, or when the nearest existing ancestor is not writable.
    Nothing is created.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag}={str(path)!r} is an existing file; allowed: a directory "
                         f"path (existing or new)")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"{flag}={str(path)!r} lies under the file {str(probe)!r}; allowed: "
                         f"a directory path (existing or new)")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={str(path)!r}: directory {str(probe)!r} is not writable")
    return path


def existing_run(path: str | os.PathLike) -> list[str]:
    """Names of the run files (:data:`RUN_FILES`) already present in ``path``."""
    path = Path(path)
    return [name for name in RUN_FILES if (path / name).exists()]


def check_reuse(path: str | os.PathLike, resume: bool, overwrite: bool) -> None:
    """Refuse a directory holding an earlier run unless ``resume`` or ``overwrite``."""
    found = existing_run(path)
    if found and not (resume or overwrite):
        raise ValueError(f"--out={str(path)!r} already holds a run ({', '.join(found)}); "
                         f"pass --resume to continue it or --overwrite to replace it")
