"""``--probes auto`` (montecarlo/layer_probes.py) and the progress display of ``theory layers``.

The rule is tested on a scripted kernel (fixed per-probe values and seconds), so the choice
does not depend on this machine's load; one small real run checks the wiring."""

import io
import json

import numpy as np

from driftlab.montecarlo import layer_probes as lp
from driftlab.montecarlo.layer_driver import Estimator, run_tap
from driftlab.progress import SeedTapProgress


def test_smallest_probes_puts_the_probe_se_at_most_half_the_measured_se():
    # σ²/P ≤ v/4: σ² = v needs P = 4; twice the noise needs 8; a block rounds up
    assert lp.smallest_probes(1.0, 1.0, 1, 64) == 4
    assert lp.smallest_probes(2.0, 1.0, 1, 64) == 8
    assert lp.smallest_probes(1.1, 1.0, 4, 64) == 8
    assert lp.smallest_probes(0.1, 1.0, 4, 64) == 4
    assert lp.smallest_probes(100.0, 1.0, 4, 64) is None  # 400 probes: not a candidate
    assert lp.smallest_probes(0.0, 1.0, 1, 8) == 1  # no probe noise (exact basis)
    for var, v_m in ((1.0, 1.0), (3.7, 0.2), (0.01, 5.0)):
        p = lp.smallest_probes(var, v_m, 1, 10_000)
        assert np.sqrt(var / p) <= lp.PROBE_SE_FRACTION * np.sqrt(v_m) + 1e-12
        assert p == 1 or np.sqrt(var / (p - 1)) > lp.PROBE_SE_FRACTION * np.sqrt(v_m)


class _Blocks:
    def __init__(self, n_blocks, size):
        self.size = size
        self.blocks = [(list(range(b * size, (b + 1) * size)), None, None, None)
                       for b in range(n_blocks)]


class _ScriptedKernels:
    """Per-probe values N(1, σ²_mode) from a fixed seed and scripted seconds per call."""

    def __init__(self, sigma, seconds, n_blocks=2, size=4, seed=0):
        self.blocks, self.sigma, self.seconds = _Blocks(n_blocks, size), sigma, seconds
        self.rng, self.compile_seconds, self.calls = np.random.default_rng(seed), 0.0, []

    def fixed(self, b):
        rng = np.random.default_rng(100 + b)
        return {"measured": rng.normal(1.0, 1.0, self.blocks.size), "n_pos": np.ones(self.blocks.size),
                "reader_error": np.zeros(self.blocks.size)}

    def probes(self, est, b, call):
        self.calls.append((est.mode, b, call))
        rng = np.random.default_rng(hash((est.mode, b, call)) % 2**32)
        vals = rng.normal(1.0, self.sigma[est.mode], (self.blocks.size, est.block))
        return {"predicted_probes": vals, "gauss_newton": vals.mean(1)}, self.seconds[est.mode]


def _choose(sigma, seconds):
    k = _ScriptedKernels(sigma, seconds)
    fixed = [k.fixed(b) for b in range(2)]
    return lp.choose("t", k, fixed, {"hutchinson": 1, "row_exact": 32, "exact": 1024}), k


def test_cheap_hutchinson_wins_and_the_pilot_skips_modes_that_cannot_win():
    choice, k = _choose({"hutchinson": 0.5, "row_exact": 0.1, "exact": 0.0},
                        {"hutchinson": 0.04, "row_exact": 0.3, "exact": 5.0})
    assert choice.estimator.mode == "hutchinson" and choice.estimator.probes % lp.HUTCH_BLOCK == 0
    assert choice.probe_se_ratio() <= lp.PROBE_SE_FRACTION
    assert {m for m, _, _ in k.calls} == {"hutchinson"}  # row-exact and exact only bounded
    assert [c.piloted for c in choice.candidates] == [True, False, False]


def test_noisy_hutchinson_gives_row_exact_and_the_choice_is_deterministic():
    sigma = {"hutchinson": 300.0, "row_exact": 0.3, "exact": 0.0}  # Hutchinson would need ~10⁶ probes
    seconds = {"hutchinson": 0.004, "row_exact": 0.05, "exact": 50.0}
    a, _ = _choose(sigma, seconds)
    b, _ = _choose(sigma, seconds)
    assert a.estimator == b.estimator and a.estimator.mode == "row_exact"
    assert a.candidates[0].probes is None  # Hutchinson infeasible
    assert [c.probe_var for c in a.candidates] == [c.probe_var for c in b.candidates]


def test_nothing_feasible_but_the_basis_gives_exact_and_its_pilot_call_is_reused():
    choice, k = _choose({"hutchinson": 1e4, "row_exact": 1e4, "exact": 0.0},
                        {"hutchinson": 0.01, "row_exact": 0.1, "exact": 0.5})
    assert choice.estimator == Estimator("exact", 1, 1)
    n_before = len(k.calls)
    values = run_tap(k, choice.estimator, [k.fixed(b) for b in range(2)], choice.done)
    assert len(values) == 8
    assert k.calls[n_before:] == [("exact", 1, 0)]  # block 0 came from the pilot


def test_progress_off_a_terminal_is_one_line_per_seed_with_notes():
    out = io.StringIO()
    with SeedTapProgress(4, stream=out) as bar:
        bar.note("estimator a: exact")
        for tap in ("a", "b"):
            for s in range(2):
                bar.tick(tap, s, "predicted 1, measured 2")
    lines = out.getvalue().splitlines()
    assert lines[0] == "estimator a: exact"
    assert lines[1:] == ["[1/4] a seed 0: predicted 1, measured 2", "[2/4] a seed 1: predicted 1, measured 2",
                         "[3/4] b seed 0: predicted 1, measured 2", "[4/4] b seed 1: predicted 1, measured 2"]
    quiet = io.StringIO()
    SeedTapProgress(1, stream=quiet, show=False).tick("a", 0)
    assert quiet.getvalue() == ""


def test_cli_layers_prints_a_line_per_seed_and_tap_and_the_choice(capsys):
    from driftlab.cli import main

    assert main(["theory", "layers", "--arch", "mlp", "--seeds", "3", "--batch-size", "4",
                 "--json"]) == 0
    cap = capsys.readouterr()
    rows = [json.loads(line) for line in cap.out.splitlines()]
    assert all(r["estimator"] and r["pilot_seconds"] > 0 for r in rows)
    assert all(r["probe_se_ratio"] <= lp.PROBE_SE_FRACTION for r in rows)
    seed_lines = [x for x in cap.err.splitlines() if x.startswith("[")]
    assert len(seed_lines) == 3 * len(rows) and seed_lines[-1].startswith(f"[{3 * len(rows)}/")
    assert sum(x.startswith("estimator ") for x in cap.err.splitlines()) == len(rows)
    for bad in ("-1", "many"):
        assert main(["theory", "layers", "--arch", "mlp", "--probes", bad]) == 2
        assert "--probes" in capsys.readouterr().err
    assert main(["theory", "layers", "--arch", "mlp", "--row-exact"]) == 2
