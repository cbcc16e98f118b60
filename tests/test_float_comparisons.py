"""No test compares floats outside driftlab/testing.py without saying why.

A float comparison is ``pytest.approx``, ``assert_allclose``, ``np.isclose``/``np.allclose``,
``abs(a − b) < tol``, a Monte Carlo bound ``k * se``/``k * stderr``, or an explicit
``rtol=``/``atol=`` passed to ``assert_close``. Each must carry a ``# tol:`` comment (the
reason the tolerance is what it is) on its line or the line above; everything else goes
through ``assert_same``/``assert_close``/``assert_mc_agrees``.
"""

import re
from pathlib import Path

from driftlab.testing import TEST_MC_CHECKS

ROOT = Path(__file__).resolve().parents[1]

# What counts as a float comparison; each pattern is matched on one source line.
PATTERNS = {
    "pytest.approx": re.compile(r"\bapprox\("),
    "assert_allclose": re.compile(r"\bassert_allclose\("),
    "isclose/allclose": re.compile(r"\b(is|all)close\("),
    "abs(a - b) < tol": re.compile(r"abs\(.*\s-\s.*\).*<"),
    "k * se bound": re.compile(r"<=?\s*[0-9.]+\s*\*\s*[\w.\[\]\"']*(stderr|\bse)\b"),
    "assert_close with rtol/atol": re.compile(r"assert_close\(.*\b(rtol|atol)="),
}
REASON = re.compile(r"#\s*tol:")


def _test_sources():
    for folder in ("tests", "theory/tests"):
        for path in sorted((ROOT / folder).glob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8").splitlines()


def unexplained(lines: list[str]) -> list[tuple[int, str, str]]:
    """(line number, pattern name, line) of each float comparison without a ``# tol:``
    comment on its line or the line above (a docstring or comment line is skipped)."""
    found = []
    for i, line in enumerate(lines):
        code = line.split("#", 1)[0]
        if not code.strip() or code.lstrip().startswith(('"""', "'''")):
            continue
        for name, pattern in PATTERNS.items():
            if pattern.search(code) and not (REASON.search(line) or (i and REASON.search(lines[i - 1]))):
                found.append((i + 1, name, line.strip()))
                break
    return found


def test_no_float_comparison_without_a_reason():
    here = Path(__file__).name
    bad = [f"{rel}:{n}: {name}: {text}" for rel, lines in _test_sources()
           if not rel.endswith(here)
           for n, name, text in unexplained(lines)]
    assert not bad, ("float comparisons outside driftlab/testing.py without a '# tol:' reason:\n"
                     + "\n".join(bad))


def test_the_checker_catches_each_kind():
    planted = ["    assert x == pytest.approx(1.0)",
               "    np.testing.assert_allclose(a, b, rtol=1e-5)",
               "    assert np.isclose(a, b)",
               "    assert abs(r.mean - a) <= 4.5 * r.stderr",
               "    assert abs(float(jnp.std(w)) - 0.1) < 0.02",
               "    assert diff <= 5 * res['x'].stderr",
               "    assert_close(a, b, rtol=1e-3)"]
    assert [n for n, _, _ in unexplained(planted)] == list(range(1, len(planted) + 1))
    assert not unexplained(["    # tol: 2% is the quadrature bound", "    assert x == pytest.approx(1, rel=0.02)",
                            "    assert_close(a, b, atol=1e-9)  # tol: printed to 9 places",
                            "    assert_close(a, b, kind='ops')"])


def test_monte_carlo_assertions_fit_the_suites_budget():
    """Each assert_mc_agrees call spends α / TEST_MC_CHECKS; more calls than that would
    break the suite-wide false-alarm budget (parametrized tests count once per case, so
    keep a margin)."""
    calls = sum(sum(line.count("assert_mc_agrees(") for line in lines)
                for rel, lines in _test_sources() if not rel.endswith(("test_close_helpers.py",
                                                                       Path(__file__).name)))
    assert calls <= TEST_MC_CHECKS // 4, calls
