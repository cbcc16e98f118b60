"""Checks on an output location, made before any computation.

:func:`check_output_dir` rejects a path that is a file, lies under a file, or cannot be
written, so that a long computation never ends in ``FileExistsError`` / ``OSError``.
:func:`check_reuse` refuses to replace an earlier training run in a reused directory unless
the caller asked to resume it or to overwrite it. :func:`lock` holds a directory for
one run at a time: a second run on the same directory is refused at once, naming the
holder; a lock left by a dead process on this host is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

# Files whose presence means a training run already wrote to the directory.
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "checkpoint.prev.npz",
             "summary.json", "ensemble.json")
LOCK_FILE = ".driftlab.lock"  # held by the run using the directory: {"host", "pid"}


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a Path if it is (or can be created as) a writable directory.

    Raises ValueError naming ``flag`` when ``path`` is an existing non-directory, when it
    or a parent component is a dangling symlink, when a parent component is a file, or
    when the nearest existing ancestor is not writable.
    Nothing is created.
    """
    path = Path(path)
    probe = path
    while not probe.exists():  # a dangling symlink "does not exist", yet mkdir fails on it
        if probe.is_symlink():
            raise ValueError(f"{flag}={str(path)!r}: {str(probe)!r} is a dangling symlink "
                             f"(to {os.readlink(probe)!r}); allowed: a directory path "
                             f"(existing or new)")
        if probe.parent == probe:
            break
        probe = probe.parent
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


class RunDirLocked(ValueError):
    """Another live run holds the directory."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict | None:
    """The lock's owner, or None when the lock is stale (a dead process on this host)."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"host": "?", "pid": "?"}  # being written right now: treat as held
    if owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", 0))):
        return None
    return owner


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of driftlab/atomic_io.py's pattern in ``path`` whose
    writer is gone (a kill mid-write, e.g. of a checkpoint-sized file), saying so on
    stderr; the removed paths. Called under the run lock, so no live writer of this run
    is using them; a temp of a pid alive on this host is kept."""
    import sys

    from driftlab.atomic_io import temp_owner

    removed = []
    for f in sorted(Path(path).iterdir()):
        pid = temp_owner(f.name)
        if pid is None or pid == os.getpid() or pid_alive(pid) or not f.is_file():
            continue
        size = f.stat().st_size
        f.unlink(missing_ok=True)
        removed.append(f)
        print(f"driftlab: removed {f} ({size} bytes), left by a write killed before it "
              f"finished (pid {pid})", file=sys.stderr)
    return removed


@contextlib.contextmanager
def lock(path: str | os.PathLike | None, flag: str = "--out"):
    """Hold ``path`` (a run directory, created if needed) for this run; None: no-op.
    The lock file is created with O_CREAT|O_EXCL (atomic, also on NFS v3+) and removed
    on exit, also on an exception or a signal."""
    if path is None:
        yield
        return
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lock_path = path / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = _holder(lock_path)
            if owner is not None:
                raise RunDirLocked(
                    f"{flag}={str(path)!r} is in use by another run (pid {owner.get('pid')} "
                    f"on {owner.get('host')}); wait for it to finish or choose another "
                    f"{flag}") from None
            lock_path.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise RunDirLocked(f"{flag}={str(path)!r}: could not take the run lock {lock_path}")
    with os.fdopen(fd, "w") as fh:
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, fh)
    remove_stale_temps(path)
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
