"""Theorem-check results cached by code version, so ``driftlab theory check``,
``driftlab report`` and ``driftlab.check_theorems()`` rerun the checks (minutes of CPU) only
when the code that computes them changed: one cache, filled and read by all three
(:func:`checked`).

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


def code_version(seed: int | str = 0, root: Path = _PACKAGE_ROOT) -> str:
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


def cache_path(seed: int | str = 0) -> Path:
    return cache_dir() / f"theory_checks-{code_version(seed)}.json"


def load(seed: int | str = 0) -> list[dict] | None:
    """Cached rows for the current code version, or None."""
    try:
        rows = json.loads(cache_path(seed).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    ok = isinstance(rows, list) and all(isinstance(r, dict) and "verdict" in r for r in rows)
    return rows if ok else None


def store(rows: list[dict], seed: int | str = 0) -> Path | None:
    """Write ``rows`` for the current code version (atomically); None if not writable."""
    path = cache_path(seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, rows, indent=1, default=str)
    except OSError:
        return None
    return path


def suite_key(seed: int = 0) -> str:
    """The cache key of one suite run: the seed and a digest of the check specs and budgets,
    so a different set of checks (tests shrink them) never reads or overwrites the cache of
    the full suite at the same code version."""
    from driftlab.montecarlo import checks

    blob = repr((checks.default_specs(), sorted(checks.BUDGETS.items())))
    return f"{seed}:{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def checked(seed: int = 0, progress: bool = False, rerun: bool = False, stream=None
            ) -> tuple[list[dict], Path | None]:
    """(check rows, the cache file they came from or None if run now): the cached rows of
    this code version, suite and seed, else every check run now (theory/cli's
    run_with_progress, progress on ``stream`` if ``progress``) and stored. ``rerun`` skips
    the lookup (and refreshes the cache)."""
    key = suite_key(seed)
    rows = None if rerun else load(key)
    if rows is not None:
        return rows, cache_path(key)
    from driftlab.montecarlo.check_progress import run_with_progress

    rows = [r.as_dict() for r in run_with_progress(seed=seed, show=progress, stream=stream)]
    store(rows, key)
    return rows, None
