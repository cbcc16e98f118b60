"""Reports: the cliff fit finds a planted knee, every preset runs at tiny size and
produces its figure, the report has every section, and bad values exit 2."""

import csv
import json

import numpy as np
import pytest

from driftlab.cli import main
from driftlab.reports import drift, report
from driftlab.reports.analysis import fit_cliff, hinge_fit, mean_ci, t_band
from driftlab.reports.presets import get_preset
from driftlab.reports.sweep import run_sweep
from driftlab.testing import assert_close


# --------------------------------------------------------------------------- analysis


def test_cliff_fit_recovers_a_planted_knee():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 60)
    y = 0.95 - 0.05 * x - 2.5 * np.maximum(x - 0.62, 0) + rng.normal(0, 0.01, x.size)
    cliff = fit_cliff(x, y, n_boot=150)
    # tol: the knee fitted to 60 points with σ = 0.01 noise (bootstrap CI < 0.1 wide)
    assert abs(cliff.fit.knee - 0.62) < 0.03
    assert cliff.knee_lo <= 0.62 <= cliff.knee_hi and cliff.knee_hi - cliff.knee_lo < 0.1
    assert cliff.is_cliff and cliff.fit.slope_after < -2


def test_no_cliff_on_a_straight_line():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 60)
    y = 0.9 - 0.1 * x + rng.normal(0, 0.01, x.size)
    assert not fit_cliff(x, y, n_boot=150).is_cliff
    with pytest.raises(ValueError, match="at least 4"):
        hinge_fit([0.1, 0.2], [1, 2])


def test_t_band_matches_the_t_interval():
    vals = np.array([[1.0, 10.0], [2.0, 10.0], [4.0, 10.0]])
    mean, lo, hi = t_band(vals)
    half = 4.302652729911275 * np.std([1, 2, 4], ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    assert_close(np.asarray(mean), np.array([7 / 3, 10]))
    # tol: NumPy's default rtol 1e-5: scipy's t.ppf and the printed quantile differ by ~4e-11
    assert np.allclose(hi - mean, [half, 0])
    assert_close(np.asarray(mean - lo), np.asarray(hi - mean))
    m, h, n = mean_ci([1.0, 2.0, 4.0])
    assert n == 3 and np.isclose(h, half)  # tol: the same printed quantile vs scipy's t.ppf


# --------------------------------------------------------------------------- end to end


def _shrink(name, keep, **changes):
    specs = [s for s in get_preset(name).grid("tiny", 2) if keep(s.tag_dict)]
    return [s.with_config(**changes) for s in specs]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Every preset at tiny size, cut to a few short runs (one compilation each)."""
    out = tmp_path_factory.mktemp("runs")
    plan = {
        "drift": _shrink("drift", lambda t: t["arch"] == "mlp" and t["act"] in ("relu", "tanh"),
                         steps=4, eval_batches=1),
        "pins": _shrink("pins", lambda t: t["arch"] == "mlp", steps=4, eval_batches=1),
        "first_step": _shrink("first_step", lambda t: t["width"] == 16 and t["act"] == "relu",
                              draws=16),
        "sparsity_law": _shrink("sparsity_law", lambda t: t["lr"] == 1e-2 and t["seed"] == 0,
                                steps=4, eval_batches=1),
        # Four configurations (four compilations): enough points for the hinge fit.
        "tradeoff": [s.with_config(steps=3, eval_batches=1) for s in
                     get_preset("tradeoff").grid("tiny", 1)
                     if (s.tag_dict["act"] == "relu" and s.tag_dict["lr"] == 1e-1)
                     or s.tag_dict["act"] in ("gelu", "relu2")],
        "spikes": _shrink("spikes", lambda t: t["act"] in ("relu", "relu2") and t["seed"] == 0,
                          steps=3, eval_batches=1, model_overrides=(("n_layer", 1),)),
    }
    for name, specs in plan.items():
        assert specs, name
        res = run_sweep(name, out=out / name, specs=specs, log=None)
        assert len(res.ran) == len(specs)
    return out


@pytest.fixture()
def theory_json(tmp_path):
    """A passing row for every check of the suite (the report refuses fewer, issue 32)."""
    from driftlab.montecarlo import checks

    rows = [{"claim": s.claim, "kind": s.kind, "setting": s.setting.describe(),
             "quantity": s.quantity, "analytic": 0.25, "analytic_stderr": 0.0,
             "tier": "closed form", "mc_mean": 0.2501, "mc_stderr": 0.001, "z": 250.0,
             "threshold": 4.2, "verdict": "pass", "detectable_shift": 0.003}
            for s in checks.default_specs()]
    path = tmp_path / "theory.json"
    path.write_text(json.dumps(rows))
    return path


def test_every_preset_produces_its_figure_and_the_report_has_every_section(
        runs_dir, theory_json, tmp_path):
    runs = report.load_runs([runs_dir])
    groups = report.by_preset(runs)
    assert all(groups[name] for name in ("drift", "pins", "first_step", "sparsity_law",
                                         "tradeoff", "spikes"))
    out = tmp_path / "report"
    path = report.write_report([runs_dir], out, theory="cache", theory_cache=str(theory_json))
    text = path.read_text()
    for section in report.SECTIONS:
        assert f"## {section}" in text
    for png in ("drift_curves.png", "first_step.png", "sparsity_law.png", "tradeoff.png",
                "spikes.png"):
        assert (out / png).stat().st_size > 1000, png
        assert f"]({png})" in text
    assert "size tiny" in text and "seeds 0–1 (2)" in text  # captions name runs and seeds
    claims = text.split("## Paper's claims vs driftlab")[1]
    # Rows with a test: per-layer claim 1 (checked in), step-0 sign, drift early/end, pins.
    assert claims.count("\n| ") >= 1 + 6 and "**" in claims
    assert "downstream-mean" in text.split("## Causal test")[1].split("## ")[0]
    assert "Scale warning" in text
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(runs) and {r["preset"] for r in rows} == {n for n in groups if groups[n]}
    # The first-step measurement has the sign and size of the theory.
    row = report.collect_first_step(groups["first_step"])[0]
    assert row["measured"] < 0 and abs(row["z"]) < 5
    # The drift curves start at exactly zero change (step 0 is before any update).
    curves = drift.curves_by_arch(groups["drift"])
    assert np.all(curves["mlp"]["relu/synthetic/adamw"]["w_rel"][:, 0] == 0)


def test_report_cli(runs_dir, theory_json, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", str(runs_dir), "--out", str(out), "--theory-json",
                 str(theory_json)]) == 0
    assert (out / "report.md").exists()
    assert main(["report", str(runs_dir), "--out", str(tmp_path / "x"), "--no-theory"]) == 0
    assert "Not included" in (tmp_path / "x" / "report.md").read_text()


@pytest.mark.parametrize("argv, field", [
    (["report", "/nonexistent/dir"], "run_dirs"),
    (["report", "--theory-json", "/nonexistent.json"], "theory_json"),
])
def test_report_cli_bad_values_exit_2(argv, field, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert field in capsys.readouterr().err


def test_bad_theory_cache_is_a_value_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="theory cache"):
        report.theory_results("cache", tmp_path, str(bad))
    with pytest.raises(ValueError, match="theory"):
        report.theory_results("sometimes", tmp_path)
