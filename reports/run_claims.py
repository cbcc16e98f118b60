"""Atomic run claims, so that concurrent sweep workers never run the same run twice.

A worker claims run ``R`` of a sweep directory ``OUT`` by creating ``OUT/.claims/R``
with ``O_CREAT | O_EXCL`` — atomic on local file systems and on NFS v3+, so it serves
local processes and SLURM array jobs alike. The file records ``host`` and ``pid``; it is
removed when the run ends (also on an exception or a SIGTERM-interrupted run). A claim
left by a killed worker on the same host (its pid no longer alive) is taken over; one
left by a worker on another host stays until its file is deleted by hand.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from driftlab.models.engine.run_dir import pid_alive

CLAIMS_DIR = ".claims"


def claim_path(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / CLAIMS_DIR / run_id


def _stale(path: Path) -> bool:
    """A claim by a dead process on this host."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False  # being written right now, or unreadable: leave it
    return owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", 0)))


def try_claim(out: str | os.PathLike, run_id: str) -> bool:
    """Claim ``run_id``; False when another live worker holds it."""
    path = claim_path(out, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _stale(path):
                path.unlink(missing_ok=True)
                continue
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": socket.gethostname(), "pid": os.getpid()}, fh)
        return True
    return False


def release(out: str | os.PathLike, run_id: str) -> None:
    claim_path(out, run_id).unlink(missing_ok=True)


def holder(out: str | os.PathLike, run_id: str) -> str:
    """``host:pid`` of the claim's owner, for messages."""
    try:
        owner = json.loads(claim_path(out, run_id).read_text())
        return f"{owner.get('host')}:{owner.get('pid')}"
    except (OSError, json.JSONDecodeError):
        return "unknown"
