"""reports/kink_width.py: paired rows per kernel width and per step, and their Markdown."""

import json

import pytest

from driftlab.montecarlo.relu_kink import relu_with_kink_kernel
from driftlab.reports import kink_width


def test_rows_and_files_on_a_few_draws(tmp_path, monkeypatch):
    monkeypatch.setattr(kink_width, "CASES", (("none", "stage1.block0.act1"),))
    monkeypatch.setattr(kink_width, "WIDTHS", (0.2, 0.1))
    assert kink_width.main(["--draws", "3", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "kink_width.json").read_text())
    assert [r["tau"] for r in data["widths"]] == [0.2, 0.1]
    (step,) = data["steps"]
    assert (step["from_tau"], step["to_tau"], step["draws"]) == (0.2, 0.1, 3)
    assert step["verdict"] in ("no change detected", "changes")
    # the same draws at every width: the measured side does not depend on τ
    assert data["widths"][0]["measured"] == data["widths"][1]["measured"]
    assert step["detectable"] > abs(step["z_star"] * step["se"])
    md = (tmp_path / "kink_width.md").read_text()
    assert "| none | stage1.block0.act1 | 0.2 → 0.1 |" in md


def test_too_few_draws_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as err:
        kink_width.main(["--draws", "1"])
    assert err.value.code == 2 and "--draws=1 invalid" in capsys.readouterr().err


@pytest.mark.slow
def test_width_dependent_kernel_error_is_caught(monkeypatch):
    """Power: a planted kernel whose mass is 0.1/τ (right at τ = 0.1, twice too much at
    τ = 0.05) makes the step test report a change, on 200 draws (z ≈ 4.9; z* ≈ 3.6)."""
    from driftlab.models.measure import conv_readers

    monkeypatch.setattr(conv_readers, "relu_with_kink_kernel",
                        lambda width: relu_with_kink_kernel(width, mass=0.1 / width))
    _, (step,) = kink_width.case_rows("none", "stage1.block0.act1", 200, widths=(0.1, 0.05))
    assert step["verdict"] == "changes" and step["z"] > step["z_star"]
