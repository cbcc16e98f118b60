"""The README's verdict table says what the checked-in report decided: every claim of
reports/reduced/claims.json has a README row with the same word, and no other row."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_words_equal_the_reports():
    claims = json.loads((ROOT / "reports" / "reduced" / "claims.json").read_text())
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| (\S+?)\. .*? \| \*\*(.+?)\*\* \|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    assert rows == {c["key"]: c["word"] for c in claims}
