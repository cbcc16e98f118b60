"""`driftlab theory …` end to end (in-process through driftlab.cli.main)."""

import json

import pytest

from driftlab.cli import main


def test_predict_json_has_required_fields(capsys):
    rc = main(["theory", "predict", "--loss", "mse", "--act", "relu", "--d-in", "8", "--width", "16",
               "--d-out", "4", "--samples", "16384", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("analytic", "mc_mean", "mc_stderr", "z", "samples"):
        assert key in out
    assert out["samples"] == 16384 and abs(out["z"]) < 5


def test_predict_cross_entropy(capsys):
    rc = main(["theory", "predict", "--loss", "ce", "--act", "gelu", "--d-in", "8", "--width", "16",
               "--d-out", "4", "--samples", "8192", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["analytic"] > 0 and out["analytic_stderr"] > 0


@pytest.mark.parametrize("args,needle", [
    (["--loss", "hinge", "--act", "relu", "--d-in", "4", "--width", "4", "--d-out", "2"], "loss"),
    (["--loss", "mse", "--act", "swish", "--d-in", "4", "--width", "4", "--d-out", "2"], "relu"),
    (["--loss", "mse", "--act", "relu", "--d-in", "0", "--width", "4", "--d-out", "2"], "d_in"),
    (["--loss", "mse", "--act", "relu", "--d-in", "4", "--width", "-3", "--d-out", "2"], "width"),
    (["--loss", "mse", "--act", "relu", "--d-in", "4", "--width", "4", "--d-out", "2", "--gain", "0"], "gain"),
])
def test_predict_bad_values_exit_2_and_name_the_problem(args, needle, capsys):
    assert main(["theory", "predict", *args, "--json"]) == 2
    assert needle in capsys.readouterr().err


def test_check_table_and_json(monkeypatch, capsys):
    """The check command prints the table/JSON of whatever checks run (a small subset here)."""
    from dataclasses import replace

    from driftlab.montecarlo import checks

    small = [s for s in checks.default_specs() if s.quantity in ("gram_diag", "gram_offdiag")]
    fast = {k: replace(v, draws=256, chunk=256) for k, v in checks.BUDGETS.items()}
    monkeypatch.setattr(checks, "default_specs", lambda: small)
    monkeypatch.setattr(checks, "BUDGETS", fast)
    assert main(["theory", "check", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and {"claim", "setting", "analytic", "mc_mean", "mc_stderr", "z", "verdict"} <= set(rows[0])
    assert main(["theory", "check", "--no-progress"]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out


def test_plots_quick(tmp_path):
    assert main(["theory", "plots", "--out", str(tmp_path), "--quick"]) == 0
    for name in ("gradient_vs_preactivation.png", "mc_convergence.png", "drift_vs_width.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_unknown_subcommand_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bogus"])
    assert exc.value.code == 2


def test_predict_ce_with_one_output_is_rejected(capsys):
    assert main(["theory", "predict", "--loss", "ce", "--act", "relu", "--d-in", "4",
                 "--width", "8", "--d-out", "1", "--samples", "64", "--json"]) == 2
    err = capsys.readouterr().err
    assert "d-out" in err and "ce" in err and len(err.strip().splitlines()) == 1


def test_predict_runs_exactly_the_samples_asked_or_says_so(capsys):
    from driftlab.theory_cli import exact_chunk

    assert exact_chunk(6250, 4096) == 3125  # --samples 100000 runs exactly 100000
    assert exact_chunk(4099, 4096) == 4096  # prime: rounded up (and reported)
    rc = main(["theory", "predict", "--loss", "mse", "--act", "relu", "--d-in", "4",
               "--width", "8", "--d-out", "2", "--samples", "1000", "--json"])
    captured = capsys.readouterr()
    assert rc == 0 and json.loads(captured.out)["samples"] == 1008  # 63 draws × 16
    assert "--samples 1000 ran 1008" in captured.err


def test_check_table_has_kind_and_tier_and_one_line_per_check(monkeypatch, capsys):
    from dataclasses import replace

    from driftlab.montecarlo import checks

    small = [s for s in checks.default_specs() if s.quantity in ("gram_diag", "gram_offdiag")]
    fast = {k: replace(v, draws=256, chunk=256) for k, v in checks.BUDGETS.items()}
    monkeypatch.setattr(checks, "default_specs", lambda: small)
    monkeypatch.setattr(checks, "BUDGETS", fast)
    assert main(["theory", "check"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].split()[:3] == ["verdict", "kind", "tier"]
    assert "sign only" in captured.out or "agrees" in captured.out
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in progress] == ["[1/2", "[2/2"]


def test_plots_checks_the_output_location_first(tmp_path, capsys, monkeypatch):
    import driftlab.reports.theory_plots as tp

    monkeypatch.setattr(tp, "make_all", lambda *a, **k: pytest.fail("computation started"))
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["theory", "plots", "--out", str(f / "sub")]) == 2
    assert "lies under the file" in capsys.readouterr().err
