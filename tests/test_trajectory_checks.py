"""The trajectory check with power, on the MLP (synthetic data, SGD, lr 0.01, ReLU).

One seed-ensemble run, one frozen replay on the training stream and one set of coefficients
(64 init seeds, 8 batch triples each) are shared by the checks of montecarlo/trajectory_check.py:
the correct second order is not rejected and is within ±10% of the drift; a planted 15% error
in b and a flipped b are caught by the sign-flip max-|t| test at α = 1e-3; the first order
alone is caught; subsets of 3 and 8 seeds (as `--seeds 3`/`--seeds 8`) never print DISAGREES.

Measured on this fixed seed set (montecarlo/trajectory_check.py's D, every in-horizon row of
the three quantities, horizons 38/13/15 steps from the upper bound on |b/a|): correct theory
max |t| 3.83, p = 0.008; b × 1.15: 5.50, p < 1e-4; the critical value is 4.47 (Bonferroni t
over the same 64 rows: 4.68). b × 0.85 is NOT caught (max |t| 2.64): the third-order
remainder at the horizon is +17% of the second-order term, the same size and the opposite
sign, so a too-small b is hidden by it (docs/trajectory.md).
"""

import numpy as np
import pytest

from driftlab.models.measure import trajectory as mt
from driftlab.montecarlo import trajectory_check as tc
from driftlab.models.measure import trajectory_replay as rp

SPEC = mt.TrajectorySpec(arch="mlp", data="synthetic", optimizer="sgd", lr=0.01, steps=100,
                         seeds=64, pairs=8)


@pytest.fixture(scope="module")
def cell():
    n_train = mt.n_train_of(SPEC)
    _, measured = mt.train_ensemble(SPEC)
    on_train = rp.replay(SPEC, "train", model=mt.model(SPEC), problem=mt.Problem)
    prob, coef = mt.coefficients(SPEC)
    return prob, coef, measured, on_train, n_train


def _check(cell, scale=1.0, seeds=None):
    prob, coef, measured, on_train, n_train = cell
    idx = np.arange(SPEC.seeds) if seeds is None else np.asarray(seeds)
    coef = {k: v[idx] for k, v in coef.items()}
    sub = lambda d: {k: v[idx] for k, v in d.items() if k in prob.quantities}
    rows, changes = mt.compare(SPEC, prob, coef, sub(measured), n_train)
    pred = mt.predictions(SPEC, prob, coef, n_train)
    paths = {q: (pred[q]["first_order"].T, pred[q]["second_order"].T) for q in prob.quantities}
    horizons = {c.quantity: c.horizon for c in changes}
    return tc.check_paths(prob.quantities, paths, sub(measured), sub(on_train["frozen"]),
                          horizons, scale, sub(on_train["base"]))


def test_second_order_not_rejected_and_within_ten_percent(cell):
    ch = _check(cell)
    assert ch["difference"]["rows"] >= 40, ch
    assert not ch["difference"]["rejects"], ch["difference"]
    mean = ch["equivalence"]["mean:layer1/w"]
    assert mean["equivalent"] and mean["horizon"] >= 30, mean
    assert ch["verdict"] != "DISAGREES"


@pytest.mark.parametrize("scale", [1.15, -1.0, 0.0])
def test_planted_error_in_b_is_caught(cell, scale):
    """b × 1.15 (the issue's planted 15%), b's sign flipped, and b = 0 (the first order
    alone): each rejected by the max-|t| test at α = 1e-3 with the suite's 64 seeds."""
    ch = _check(cell, scale)
    assert ch["difference"]["rejects"], ch["difference"]
    assert ch["difference"]["p"] <= tc.SUITE_FALSE_ALARM


@pytest.mark.parametrize("n", [3, 8])
def test_few_seeds_never_print_disagrees(cell, n):
    """`--seeds 3` / `--seeds 8` with the correct theory: every disjoint block of n seeds of the
    fixture (21 blocks of 3, 8 of 8). With 2^n sign flips the smallest attainable p is 2/2^n >
    α = 1e-3, so these can be 'inconclusive' but never a false 'DISAGREES' (the old normal-
    based z* gave 6/6 false alarms at 3 seeds)."""
    for k in range(SPEC.seeds // n):
        ch = _check(cell, seeds=range(k * n, (k + 1) * n))
        assert ch["verdict"] != "DISAGREES", (k, ch["difference"])
        assert ch["difference"]["critical"] == np.inf


def test_cli_exits_non_zero_on_disagrees(monkeypatch, capsys):
    from driftlab.cli import main

    fake = {"seeds": 64, "verdict": "DISAGREES", "margin": 0.1, "alpha": 1e-3,
            "equivalence": {}, "difference": {"max_abs_t": 9.0, "rows": 1, "p": 1e-5,
                                              "flips": 10, "exact": False, "critical": 4.0,
                                              "bonferroni_t": 4.0}}
    row = mt.Row(1, "mean:x", 0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 9.0, True)
    monkeypatch.setattr(mt, "run", lambda spec: ([row], [], {"check": fake}))
    assert main(["theory", "trajectory", "--arch", "mlp"]) == 1
    assert "DISAGREES" in capsys.readouterr().out
    fake["verdict"] = "agrees"
    assert main(["theory", "trajectory", "--arch", "mlp", "--json"]) == 0


def test_cli_three_seeds_does_not_print_disagrees(capsys):
    from driftlab.cli import main

    rc = main(["theory", "trajectory", "--arch", "mlp", "--seeds", "3", "--steps", "30",
               "--pairs", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "DISAGREES" not in out and "verdict:" in out
