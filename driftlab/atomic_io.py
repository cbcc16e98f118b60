"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Every file a run, a sweep or a report writes goes through :func:`write_bytes` (or its
text/JSON forms). The data is written to a temporary file in the same directory (unique
per process and thread, so concurrent writers never share it), flushed and fsynced, then
renamed over the target with ``os.replace``, which POSIX makes atomic within one file
system. On any failure the temporary file is removed; a full disk (ENOSPC, EDQUOT)
raises :class:`DiskFullError`, whose message names the path and the bytes it needed.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class DiskFullError(OSError):
    """The disk (or quota) was full while writing ``path``; nothing was replaced."""

    def __init__(self, path: Path, needed: int):
        self.path, self.needed = Path(path), int(needed)
        super().__init__(errno.ENOSPC, f"no space left on the device to write {path} "
                                       f"({needed} bytes needed); free space and rerun "
                                       f"(the previous file, if any, is intact)")


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary sibling of ``path`` used by this process and thread."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def temp_owner(name: str) -> int | None:
    """The pid in a file name of :func:`temp_path`'s pattern (``.NAME.PID.TID.tmp``), or
    None for any other name."""
    parts = name.rsplit(".", 3)
    if len(parts) == 4 and name.startswith(".") and parts[3] == "tmp" \
            and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1])
    return None


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path`` by ``data`` atomically (see the module docstring)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in _FULL:
            raise DiskFullError(path, len(data)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`write_bytes` of ``text`` encoded as UTF-8."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, *, indent: int | None = 1, default=None,
               sort_keys: bool = False) -> Path:
    """:func:`write_text` of ``json.dumps(obj)`` with a trailing newline."""
    return write_text(path, json.dumps(obj, indent=indent, default=default,
                                       sort_keys=sort_keys) + "\n")
