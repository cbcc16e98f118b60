"""Issue 10: `driftlab report` caches the theorem checks by code version, with progress."""

import shutil
from pathlib import Path
import pytest


from driftlab.reports import report, theory_cache

ROWS = [{"claim": "c", "kind": "agree", "verdict": "pass", "z": 0.1}]


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


def test_report_reruns_checks_only_when_the_code_changed(tmp_path, monkeypatch, capsys):
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
