"""Shared test setup: every test gets its own theorem-result cache (reports/theory_cache.py),
so no test reads results another test or a user's `driftlab theory check` stored, and none
writes into the user's ~/.cache/driftlab."""

import pytest


@pytest.fixture(autouse=True)
def _own_result_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTLAB_CACHE", str(tmp_path / "driftlab-cache"))
