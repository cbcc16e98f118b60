"""run_checks evaluates several checks at once; the numbers must not depend on how many."""

import time

from driftlab.montecarlo import checks


def _cheap_specs():
    """Checks sharing estimates (the two gram checks share one Monte Carlo run, the two
    softmax factors one shape), so the per-key locks are exercised too."""
    keep = ("softmax_factor", "sparsity_law", "gram_diag", "gram_offdiag")
    return [s for s in checks.default_specs() if s.quantity in keep]


def test_results_identical_for_any_worker_count_and_in_order():
    specs = _cheap_specs()
    assert len(specs) == 5
    runs = {}
    for workers in (1, 3):
        seen = []
        res = checks.run_checks(specs, seed=3, workers=workers,
                                on_result=lambda i, r: seen.append((i, r.spec)))
        assert seen == list(enumerate(specs))  # callback in check order
        runs[workers] = [(r.mc.mean, r.mc.stderr, r.analytic.value, r.z, r.passed) for r in res]
    assert runs[1] == runs[3]


def test_shared_estimate_is_computed_once(monkeypatch):
    calls = []
    real = checks.estimators.estimate_outgoing_gram

    def counted(*a, **k):
        calls.append(1)
        time.sleep(0.2)  # both gram checks ask while the first computation runs
        return real(*a, **k)

    monkeypatch.setattr(checks.estimators, "estimate_outgoing_gram", counted)
    specs = [s for s in _cheap_specs() if s.quantity.startswith("gram")]
    checks.run_checks(specs, workers=2)
    assert len(calls) == 1
