"""Theorem-check results cached by code version, so ``driftlab theory check``,
``driftlab report`` and ``driftlab.check_theorems()`` rerun the checks (minutes of CPU) only
when the code that computes them changed: one cache, filled and read by all three
(:func:`checked`).

The key is a SHA-256 over the source of every module the results depend on (theory/,
montecarlo/, driftlab/activations.py) plus the seed; the cache lives in
``$DRIFTLAB_CACHE`` or ``$XDG_CACHE_HOME/driftlab`` (default ``~/.cache/driftlab``) as
``theory_checks-<key>.json``. An unreadable cache file, or one that is not the full
suite's results (:func:`problems`: fewer rows, a row missing or mistyping a field), counts
as a miss, and what is wrong with it is said on stderr.
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


# The fields every reader of a check row uses (the table, the report), with their types.
ROW_FIELDS = {"claim": str, "kind": str, "quantity": str, "setting": str, "verdict": str,
              "z": float, "threshold": float, "analytic": float, "mc_mean": float,
              "mc_stderr": float}
VERDICTS = ("pass", "FAIL")


def _row_key(claim, kind, quantity, setting) -> tuple:
    return (quantity, kind, claim, setting)


def suite_names() -> list[tuple]:
    """One (quantity, kind, claim, setting) per check of the full suite
    (checks.default_specs), in suite order; a name may repeat (checks that differ only in
    variant), so rows are matched as a multiset."""
    from driftlab.montecarlo import checks

    return [_row_key(s.claim, s.kind, s.quantity, s.setting.describe())
            for s in checks.default_specs()]


def problems(rows, source: str = "theory check results") -> list[str]:
    """Why ``rows`` are not the results of the full suite, one line each (empty if they
    are): not a list, a row that is not an object or lacks or mistypes a field of
    :data:`ROW_FIELDS`, a suite check with no row, a row of no suite check."""
    from collections import Counter

    if not isinstance(rows, list):
        return [f"{source}: not a list of check results"]
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            out.append(f"{source}: row {i + 1} is not an object")
            continue
        for field, kind in ROW_FIELDS.items():
            v = r.get(field)
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool)) if kind is float \
                else isinstance(v, kind)
            if not ok:
                out.append(f"{source}: row {i + 1} lacks field {field!r}" if field not in r else
                           f"{source}: row {i + 1} field {field!r} is {v!r}, not a "
                           f"{'number' if kind is float else 'string'}")
        if isinstance(r.get("verdict"), str) and r["verdict"] not in VERDICTS:
            out.append(f"{source}: row {i + 1} field 'verdict' is {r['verdict']!r}; "
                       f"allowed: {', '.join(VERDICTS)}")
    if out:
        return out
    suite = Counter(suite_names())
    have = Counter(_row_key(r["claim"], r["kind"], r["quantity"], r["setting"]) for r in rows)
    missing, extra = suite - have, have - suite
    if missing:
        names = [f"{k[2]} | {k[3]}" for k in missing.elements()]
        out.append(f"{source}: {len(rows)} rows, the suite has {sum(suite.values())} checks; "
                   f"missing {len(names)}: " + "; ".join(names[:5])
                   + (f"; … ({len(names) - 5} more)" if len(names) > 5 else ""))
    if extra:
        names = [f"{k[2]} | {k[3]}" for k in extra.elements()]
        out.append(f"{source}: {len(names)} rows of no check in the suite: "
                   + "; ".join(names[:5]) + ("; …" if len(names) > 5 else ""))
    return out


def load(seed: int | str = 0, stream=None) -> list[dict] | None:
    """Cached rows for the current code version, or None: also when the file is not the
    full suite's results (:func:`problems`), which is then said on ``stream`` (stderr)."""
    import sys

    path = cache_path(seed)
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        print(f"theory cache {path} unreadable ({err}); running the checks again",
              file=stream or sys.stderr)
        return None
    bad = problems(rows, f"theory cache {path}")
    if bad:
        print("\n".join(bad) + "\n(running the checks again)", file=stream or sys.stderr)
        return None
    return rows


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
    rows = None if rerun else load(key, stream)
    if rows is not None:
        return rows, cache_path(key)
    from driftlab.montecarlo.check_progress import run_with_progress

    rows = [r.as_dict() for r in run_with_progress(seed=seed, show=progress, stream=stream)]
    store(rows, key)
    return rows, None
