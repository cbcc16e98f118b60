"""``driftlab bench layers --quick``: the rows exist and carry ratios (values depend on load)."""

import math

from driftlab.bench.layers import run_bench


def test_quick_bench_rows_have_an_exact_baseline_and_finite_ratios():
    rows = run_bench(quick=True)
    assert [r["name"].split(": ")[1] for r in rows] == ["s/seed", "cost at equal SE",
                                                       "64 seeds incl. compile"]
    assert all(r["baseline"] == "exact" and math.isfinite(r["ratio"]) and r["ratio"] > 0
               for r in rows)
