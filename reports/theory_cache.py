"""Theorem-check results cached by code version, so ``driftlab report`` reruns the checks
(minutes of CPU) only when the code that computes them changed.

The key is a SHA-256 over the source of every module the results depend on (theory/,
montecarlo/, driftlab/activations.py) plus the seed; the cache lives in
``$DRIFTLAB_CACHE`` or ``$XDG_CACHE_HOME/driftlab`` (default ``~/.cache/driftlab``) as
``theory_checks-<key>.json``. An unreadable cache file counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from driftlab.atomic_io import write_json

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("theory", "montecarlo", "driftlab/activations.py")


def source_files(root: Path = _PACKAGE_ROOT) -> list[Path]:
    """The .py files whose code determines the check results, in a fixed order."""
    files = []
    for rel in SOURCES:
        p = root / rel
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return [f for f in files if f.is_file() and "tests" not in f.parts]


def code_version(seed: int = 0, root: Path = _PACKAGE_ROOT) -> str:
    """First 16 hex digits of SHA-256 over (relative path, content) of :func:`source_files`."""
    h = hashlib.sha256(f"seed={seed}".encode())
    for f in source_files(root):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    if os.environ.get("DRIFTLAB_CACHE"):
        return Path(os.environ["DRIFTLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "driftlab"


def cache_path(seed: int = 0) -> Path:
    return cache_dir() / f"theory_checks-{code_version(seed)}.json"


def load(seed: int = 0) -> list[dict] | None:
    """Cached rows for the current code version, or None."""
    try:
        rows = json.loads(cache_path(seed).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    ok = isinstance(rows, list) and all(isinstance(r, dict) and "verdict" in r for r in rows)
    return rows if ok else None


def store(rows: list[dict], seed: int = 0) -> Path | None:
    """Write ``rows`` for the current code version (atomically); None if not writable."""
    path = cache_path(seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, rows, indent=1, default=str)
    except OSError:
        return None
    return path
