"""Issue 32: no command reports success on missing work, nothing is mixed silently, and bad
input gets one line naming what is wrong. Faults are planted in materialized records
(reports/reduced/records), so no test here trains."""

import json
from pathlib import Path

import pytest

import driftlab
from driftlab.cli import main
from driftlab.reports import records

REDUCED = Path(__file__).resolve().parents[1] / "reports" / "reduced"


def _record(preset):
    path = REDUCED / records.RECORDS_DIR / f"{preset}.jsonl"
    return json.loads(path.read_text().splitlines()[0])


def _runs(tmp_path, presets=("drift",)):
    """Minimal finished run directories of one record per preset; {preset: run dir}."""
    recs = [_record(p) for p in presets]
    root = records.materialize(recs, tmp_path / "runs")
    return root, {r["preset"]: root / r["preset"] / r["run_id"] for r in recs}


def _cut_last_line(path: Path) -> int:
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    return len(lines)


# ------------------------------------------------ class 1: a cut JSONL line is refused

@pytest.mark.parametrize("preset, name", [("drift", "metrics.jsonl"),
                                          ("sparsity_law", "law.jsonl")])
def test_every_reader_refuses_a_cut_last_line(preset, name, tmp_path, capsys):
    """report, records and load_run refuse a cut last line of metrics.jsonl / law.jsonl,
    naming the file and the line (one reader, driftlab/jsonl.py), where the report used to
    drop it and show an earlier step's value under the last step's label."""
    root, dirs = _runs(tmp_path, (preset,))
    n = _cut_last_line(dirs[preset] / name)
    where = f"{dirs[preset] / name}: line {n}"
    assert main(["report", str(root), "--out", str(tmp_path / "rep"), "--no-theory"]) == 2
    assert where in capsys.readouterr().err
    assert main(["records", str(root), "--out", str(tmp_path / "rec")]) == 2
    assert where in capsys.readouterr().err
    if name == "metrics.jsonl":
        with pytest.raises(ValueError, match="line"):
            driftlab.load_run(dirs[preset])


def test_a_damaged_line_of_the_records_is_refused(tmp_path, capsys):
    root, _ = _runs(tmp_path)
    assert main(["records", str(root), "--out", str(tmp_path / records.RECORDS_DIR)]) == 0
    capsys.readouterr()
    f = tmp_path / records.RECORDS_DIR / "drift.jsonl"
    n = _cut_last_line(f)
    assert main(["report", "--from", str(tmp_path), "--out", str(tmp_path / "rep"),
                 "--no-theory"]) == 2
    assert f"{f}: line {n}" in capsys.readouterr().err
