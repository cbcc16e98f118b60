"""Checked-in run records: export ∘ materialize is the identity, and the reduced report
rebuilds byte for byte from reports/reduced/records alone (no runs/ directory)."""

import json
from pathlib import Path

from driftlab.cli import main
from driftlab.reports import records

REDUCED = Path(__file__).resolve().parents[1] / "reports" / "reduced"


def _sample(n_per_preset=2):
    out = []
    for path in sorted((REDUCED / records.RECORDS_DIR).glob("*.jsonl")):
        lines = path.read_text().splitlines()[:n_per_preset]
        out += [json.loads(line) for line in lines]
    return out


def test_materialize_then_export_is_identity(tmp_path):
    recs = _sample()
    assert {r["preset"] for r in recs} >= {"drift", "pins", "tradeoff", "sparsity_law"}
    records.materialize(recs, tmp_path / "runs")
    records.export([tmp_path / "runs"], tmp_path / "again")
    again = records.load(tmp_path / "again")
    key = lambda r: (r["preset"], r["run_id"])  # noqa: E731
    assert sorted(again, key=key) == sorted(recs, key=key)


def test_a_changed_record_changes_the_export(tmp_path):
    recs = _sample(1)
    recs[0]["summary"]["final_loss"] = 123.0  # planted change must survive the round trip
    records.materialize(recs, tmp_path / "runs")
    records.export([tmp_path / "runs"], tmp_path / "again")
    assert any(r["summary"].get("final_loss") == 123.0
               for r in records.load(tmp_path / "again"))


def test_confirmatory_report_from_records_reproduces_the_checked_in_one(tmp_path):
    """reports/confirm-v2 (plan v2's runs) rebuilds byte for byte from its records."""
    src = REDUCED.parent / "confirm-v2"
    out = tmp_path / "rebuilt"
    command = "driftlab report --from reports/confirm-v2 --no-theory --out reports/confirm-v2"
    assert main(["report", "--from", str(src), "--no-theory", "--out", str(out),
                 "--command", command]) == 0
    rebuilt = (out / "report.md").read_text().replace(str(src), "reports/confirm-v2")
    # The per-layer figure is linked relative to --out, which differs here by construction.
    drop = lambda text: [l for l in text.splitlines() if "per_layer.png" not in l]  # noqa: E731
    assert drop(rebuilt) == drop((src / "report.md").read_text())
    for name in ("summary.csv", "confirm.json"):
        assert (out / name).read_bytes() == (src / name).read_bytes(), name
    assert json.loads((src / "confirm.json").read_text())["confirmatory"] is True


def test_report_from_records_reproduces_the_checked_in_report(tmp_path):
    out = tmp_path / "rebuilt"
    assert main(["report", "--from", str(REDUCED), "--out", str(out),
                 "--command", "driftlab report --from reports/reduced --out reports/reduced"]) == 0
    rebuilt = (out / "report.md").read_text().replace(str(REDUCED), "reports/reduced")
    # The per-layer figure is linked relative to --out, which differs here by construction.
    drop = lambda text: [l for l in text.splitlines() if "per_layer.png" not in l]  # noqa: E731
    assert drop(rebuilt) == drop((REDUCED / "report.md").read_text())
    # summary.csv names each run's directory relative to the records' root, never the
    # temporary one it was materialized in, so it rebuilds byte for byte too.
    for name in ("summary.csv", "claims.json", "registered_v1.json"):
        assert (out / name).read_bytes() == (REDUCED / name).read_bytes(), name
