"""The one reader of JSON Lines files (metrics.jsonl, law.jsonl, records/<preset>.jsonl).

One rule for every reader: each non-blank line is a JSON object, or the file is refused
with a ValueError naming the file and the line. A line cut by a kill mid-write is refused
too: a reader that dropped it would show an earlier step's value under the last step's
label. Only resume repairs a cut last line (``repair=True``), because it rewrites the file
from its checkpoint anyway.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path, repair: bool = False) -> list[dict]:
    """Every record of ``path`` in file order ([] if the file does not exist).

    ValueError (naming the file and the line) for a line that is not a JSON object;
    with ``repair``, a damaged *last* line is dropped instead (a write cut by a kill)."""
    return [rec for _, rec in numbered_jsonl(path, repair)]


def numbered_jsonl(path, repair: bool = False) -> list[tuple[int, dict]]:
    """(line number from 1, record) of every record of ``path``, under :func:`read_jsonl`'s
    rule; for readers that name the line of a record they refuse."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from None
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            if repair and i == len(lines) - 1:
                continue
            cut = " (cut short: the write was interrupted)" if i == len(lines) - 1 else ""
            raise ValueError(f"{path}: line {i + 1} is not a JSON object{cut}: the file "
                             f"is damaged")
        out.append((i + 1, rec))
    return out
