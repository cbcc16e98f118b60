"""Runs the theorem suite once per pytest session and shares it between test files."""

from dataclasses import dataclass

import pytest

from driftlab import compilation_cache
from driftlab.montecarlo.checks import CheckResult, Evaluator, run_checks

compilation_cache.enable()  # the suite's programs compile once per machine, not per run


@dataclass(frozen=True)
class Suite:
    evaluator: Evaluator
    results: list[CheckResult]


@pytest.fixture(scope="session")
def suite() -> Suite:
    evaluator = Evaluator(seed=0)
    return Suite(evaluator, run_checks(evaluator=evaluator))
