"""The Monte Carlo benchmark runs and its baselines estimate the same quantity."""

import json

from driftlab.bench import mc
from driftlab.cli import main
from driftlab.montecarlo.estimators import Budget
from driftlab.theory.expected_grad import expected_grad_positive_mse
from driftlab.theory.setting import BlockSetting


def test_baselines_are_unbiased_estimators_of_the_same_quantity():
    s = BlockSetting(d_in=8, width=16, d_out=4)
    a = expected_grad_positive_mse(s).value
    straight = mc.straightforward_estimator(s, samples=32768, chunk=8192)
    numpy_res = mc.numpy_estimator(s, Budget(draws=4096, inputs_per_draw=8, chunk=1024))
    plain = mc.plain_jax_estimator(s, Budget(draws=4096, inputs_per_draw=8, chunk=1024))
    # tol: a 4.5-SE margin (under the suite's z* ≈ 4.56), the one the wrong-scale check must clear
    assert abs(straight.mean - a) <= 4.5 * straight.stderr
    assert abs(numpy_res.mean - a) <= 4.5 * numpy_res.stderr  # tol: the same 4.5-SE margin
    assert abs(plain.mean - a) <= 4.5 * plain.stderr  # tol: the same 4.5-SE margin
    # the baseline must be able to fail: a wrong loss scale is caught at this SE
    assert abs(plain.mean - 0.9 * a) > 4.5 * plain.stderr


def test_quick_bench_prints_json_rows(capsys):
    assert main(["bench", "mc", "--quick", "--repeats", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8
    plain = [r for r in rows if r["baseline"] == "plain_jax"]
    assert len(plain) == 1 and plain[0]["target"] == 2.0 and "auto B=" in plain[0]["note"]
    timing = [r for r in rows if "compile_s" in r]
    assert timing and all(r["compile_s"] >= 0 and r["run_s"] > 0 for r in timing)
    for row in rows:
        # A compile row is 0 s when the persistent compilation cache is warm.
        positive = (lambda v: v >= 0) if "compile_s" in row else (lambda v: v > 0)
        assert positive(row["value"]) and positive(row["ratio"])
        assert {"baseline", "baseline_value", "target"} <= set(row)
