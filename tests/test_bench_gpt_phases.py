"""``python -m driftlab.bench.train --gpt-vs-torch SIZE``: the JAX vs PyTorch row, the phase
split and the engine-extras row are well formed (tiny size, short blocks)."""

import json

import pytest

from driftlab.bench import train as bt
from driftlab.testing import assert_close


def test_gpt_vs_torch_rows_tiny():
    pytest.importorskip("torch")
    from driftlab.bench import gpt_phases

    rows = bt.gpt_vs_torch_rows("tiny", repeats=1, block_seconds=0.05)
    names = [r["name"] for r in rows]
    assert names[0] == "GPT-nano JAX vs PyTorch [gpt tiny]"
    for phase in gpt_phases.PHASES:
        assert f"GPT-nano {phase} JAX vs PyTorch [gpt tiny]" in names
    assert names[-1] == "JAX engine step vs minimal step [gpt tiny]"
    for r in rows:
        assert r["value"] > 0 and r["baseline_value"] > 0
        assert_close(r["ratio"], r["value"] / r["baseline_value"])
    assert all(json.loads(json.dumps(r)) == r for r in rows)
    step = rows[len(gpt_phases.PHASES)]
    assert "derived" in step["note"] and "torch backward" in step["note"]


def test_gpt_vs_torch_rejects_paper_size():
    with pytest.raises(ValueError, match="size='paper' invalid; allowed: tiny, small"):
        bt.gpt_vs_torch_rows("paper", repeats=1)


def test_cli_flag_validates_size(capsys):
    with pytest.raises(SystemExit) as err:
        bt.main(["--gpt-vs-torch", "paper"])
    assert err.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_phase_rows_reject_bad_repeats():
    pytest.importorskip("torch")
    from driftlab.bench import gpt_phases

    with pytest.raises(ValueError, match="repeats=0 invalid"):
        gpt_phases.phase_rows(None, 0, 0.1)

