"""Every default theorem check with one progress display (for ``driftlab theory check`` and
the report's cached checks, reports/theory_cache.py)."""

from __future__ import annotations

from driftlab.progress import UnitProgress


def run_with_progress(seed: int = 0, show: bool = True, stream=None) -> list:
    """Every default theorem check (``checks.run_checks``) with one overall progress
    display (driftlab/progress.py): a single "k of N" bar naming the next claim when
    ``stream`` is a terminal, else one line per finished check, in check order."""
    from driftlab.montecarlo import checks

    specs = checks.default_specs()

    def describe(spec):
        return f"{spec.claim} | {spec.setting.describe()}"

    with UnitProgress(len(specs), "theory check", "check", stream, show) as bar:
        def on_result(i, res):
            bar.advance(f"{'pass' if res.passed else 'FAIL'} z={res.z:.2f} {res.spec.kind}: "
                        f"{describe(res.spec)}",
                        describe(specs[i + 1])[:70] if i + 1 < len(specs) else None)

        if specs:
            bar.set_postfix(describe(specs[0])[:70])
        return checks.run_checks(specs, seed=seed, on_result=on_result)
