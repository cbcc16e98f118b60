"""The README's verdict table says what the checked-in reports decided: for every claim of
reports/confirm-v2/confirm.json (confirmatory) and reports/reduced/claims.json
(exploratory) the README row carries the same word, and there is no other row."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _base(word: str) -> str:
    """A claim word without its counts and deferred note: "not general (…) (…)" → "not general"."""
    return word.split(" (")[0]


def _rows() -> dict:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| (\S+?)\. .*? \| (.+?) \| (.+?) \|$", line)
        if m and m.group(1)[0].isdigit():
            words = [re.match(r"\*\*(.+?)\*\*|([^(]+)", cell.strip()) for cell in m.group(2, 3)]
            rows[m.group(1)] = [(w.group(1) or w.group(2)).strip() for w in words]
    return rows


def test_readme_words_equal_the_reports():
    confirm = json.loads((ROOT / "reports" / "confirm-v2" / "confirm.json").read_text())
    explore = json.loads((ROOT / "reports" / "reduced" / "claims.json").read_text())
    rows = _rows()
    assert {k: v[0] for k, v in rows.items()} == {c["key"]: _base(c["word"])
                                                  for c in confirm["claims"] if c["key"] in rows}
    assert {c["key"] for c in confirm["claims"]} - set(rows) <= {"6b", "6c"}  # not run, not listed
    assert {k: v[1] for k, v in rows.items() if v[1] != "–"} == {c["key"]: c["word"] for c in explore}
