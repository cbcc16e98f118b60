"""Issue 10: `driftlab report` caches the theorem checks by code version, with progress."""

import json
import shutil
from pathlib import Path
import pytest


from driftlab.reports import report, theory_cache

ROWS = [{"claim": "c", "kind": "agree", "quantity": "q", "setting": "s", "verdict": "pass",
         "z": 0.1, "threshold": 3.0, "analytic": 1.0, "mc_mean": 1.0, "mc_stderr": 0.1}]


@pytest.fixture
def one_check_suite(monkeypatch):
    """A suite of the one check ROWS holds (the cache validates rows against the suite)."""
    monkeypatch.setattr(theory_cache, "suite_names", lambda: [("q", "agree", "c", "s")])


class _Fake:
    def as_dict(self):
        return dict(ROWS[0])


def test_code_version_changes_with_the_source(tmp_path):
    root = Path(theory_cache.__file__).resolve().parents[1]
    copy = tmp_path / "src"
    for rel in theory_cache.SOURCES:
        src = root / rel
        dst = copy / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    v0 = theory_cache.code_version(0, copy)
    assert v0 == theory_cache.code_version(0, copy) != theory_cache.code_version(1, copy)
    with open(copy / "theory" / "checks.py", "a") as fh:
        fh.write("\n# changed\n")
    assert theory_cache.code_version(0, copy) != v0


def test_report_reruns_checks_only_when_the_code_changed(tmp_path, monkeypatch, capsys,
                                                         one_check_suite):
    import driftlab.montecarlo.check_progress as tcli

    monkeypatch.setenv("DRIFTLAB_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(tcli, "run_with_progress", lambda *a, **k: calls.append(1) or [_Fake()])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert report.theory_results("auto", a) == ROWS and len(calls) == 1
    assert "running the theorem checks" in capsys.readouterr().err
    # another --out, same code: from the cache, no rerun
    assert report.theory_results("auto", b) == ROWS and len(calls) == 1
    assert "from the cache" in capsys.readouterr().err
    # a new code version misses
    monkeypatch.setattr(theory_cache, "code_version", lambda seed=0, root=None: "other")
    (b / report.THEORY_CACHE).unlink()
    report.theory_results("auto", b)
    assert len(calls) == 2


def test_report_checks_out_before_work(tmp_path, capsys):
    from driftlab.cli import main

    f = tmp_path / "file"
    f.write_text("x")
    assert main(["report", "--out", str(f), "--no-theory"]) == 2
    assert "existing file" in capsys.readouterr().err


def test_theory_check_fills_the_cache_report_reads(tmp_path, monkeypatch, capsys):
    """One cache: `driftlab theory check` stores, the next report (and check) reuse it."""
    from dataclasses import replace

    import driftlab.montecarlo.check_progress as tcli
    from driftlab.cli import main
    from driftlab.montecarlo import checks

    small = [s for s in checks.default_specs() if s.quantity == "gram_diag"][:1]
    fast = {k: replace(v, draws=256, chunk=256) for k, v in checks.BUDGETS.items()}
    monkeypatch.setattr(checks, "default_specs", lambda: small)
    monkeypatch.setattr(checks, "BUDGETS", fast)
    assert main(["theory", "check", "--no-progress"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(tcli, "run_with_progress", lambda *a, **k: pytest.fail("rerun"))
    rows = report.theory_results("auto", tmp_path)
    assert len(rows) == 1 and "from the cache" in capsys.readouterr().err
    assert main(["theory", "check", "--no-progress"]) == 0
    assert "from the cache" in capsys.readouterr().err


# ------------------------------------------------ issue 32: no pass count over missing work

def _suite_rows(n=3):
    """n full rows, and the suite they are the results of."""
    rows = [dict(ROWS[0], claim=f"c{i}") for i in range(n)]
    return rows, [("q", "agree", r["claim"], "s") for r in rows]


@pytest.mark.parametrize("planted", ["empty", "fewer", "no_field", "string_z", "not_list"])
def test_theory_check_never_passes_a_cache_that_is_not_the_suite(planted, tmp_path,
                                                                 monkeypatch, capsys):
    """A cache of [], of fewer rows than the suite, or with a row missing or mistyping a
    field is not the suite's results: `theory check` says so and runs the checks again;
    a run that still lacks checks exits 1 without a pass count."""
    import driftlab.montecarlo.check_progress as tcli
    from driftlab.cli import main

    monkeypatch.setenv("DRIFTLAB_CACHE", str(tmp_path))
    rows, names = _suite_rows()
    monkeypatch.setattr(theory_cache, "suite_names", lambda: names)
    bad = {"empty": [], "fewer": rows[:2], "no_field": [rows[0], rows[1], {**rows[2]}],
           "string_z": [rows[0], rows[1], dict(rows[2], z="0.1")], "not_list": {}}[planted]
    if planted == "no_field":
        del bad[2]["threshold"]
    path = theory_cache.cache_path(theory_cache.suite_key(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bad))
    calls = []

    class Row:
        def __init__(self, r):
            self.r = r

        def as_dict(self):
            return self.r

    monkeypatch.setattr(tcli, "run_with_progress",
                        lambda *a, **k: calls.append(1) or [Row(r) for r in rows])
    assert main(["theory", "check", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert calls == [1] and "running the checks again" in captured.err
    assert str(path) in captured.err
    assert "3 passed, 0 failed" in captured.out and "Bonferroni over 3 checks" in captured.out
    # A run (or cache) that still lacks a check: exit 1, what is missing named, no count.
    monkeypatch.setattr(tcli, "run_with_progress", lambda *a, **k: [Row(r) for r in rows[:2]])
    assert main(["theory", "check", "--no-progress", "--rerun"]) == 1
    captured = capsys.readouterr()
    assert "passed" not in captured.out and "missing 1: c2 | s" in captured.err


def test_problems_names_each_fault():
    rows, names = _suite_rows()
    import driftlab.reports.theory_cache as tc

    orig = tc.suite_names
    try:
        tc.suite_names = lambda: names
        assert tc.problems(rows) == []
        assert "missing 3" in tc.problems([])[0]
        assert "row 2 lacks field 'claim'" in tc.problems([rows[0], {}, rows[2]])[0]
        assert "not a number" in tc.problems([dict(rows[0], z="x"), *rows[1:]])[0]
        assert "'verdict'" in tc.problems([dict(rows[0], verdict="ok"), *rows[1:]])[0]
        assert "of no check in the suite" in tc.problems([*rows, dict(rows[0], claim="x")])[0]
    finally:
        tc.suite_names = orig


@pytest.mark.parametrize("planted", ["empty", "fewer", "no_field"])
def test_report_refuses_a_theory_cache_that_is_not_the_suite(planted, tmp_path, monkeypatch):
    """`driftlab report --theory-json F` (and an existing out/theory_checks.json) never
    says "k of k checks pass" over fewer checks than the suite: it refuses, naming them."""
    rows, names = _suite_rows()
    monkeypatch.setattr(theory_cache, "suite_names", lambda: names)
    bad = {"empty": [], "fewer": rows[:2], "no_field": [rows[0], rows[1], {"claim": "c2"}]}[planted]
    f = tmp_path / "th.json"
    f.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="th.json"):
        report.theory_results("cache", tmp_path, str(f))
    f.write_text(json.dumps(rows))
    assert report.theory_results("cache", tmp_path, str(f)) == rows
    assert "3 of 3 checks pass" in report.section_theory(rows)


def test_checked_in_theory_results_are_the_full_suite():
    """The report's checked-in rows are the current suite's (what `report --from` reads)."""
    path = Path(__file__).resolve().parents[1] / "reports" / "reduced" / report.THEORY_CACHE
    assert theory_cache.problems(json.loads(path.read_text())) == []


def test_theory_check_refuses_a_negative_seed_before_any_check(monkeypatch, capsys):
    import driftlab.montecarlo.check_progress as tcli
    from driftlab.cli import main

    monkeypatch.setattr(tcli, "run_with_progress", lambda *a, **k: pytest.fail("ran checks"))
    assert main(["theory", "check", "--seed", "-1"]) == 2
    assert "--seed -1" in capsys.readouterr().err
