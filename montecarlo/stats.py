"""Monte Carlo results and the suite's decision rule.

An estimate is the mean of i.i.d. *cluster* values, one per independent weight draw
(a cluster may average many inputs that share that draw), so its standard error is
the sample standard deviation of the cluster values over √(number of draws): honest
whatever the correlation inside a cluster.

Decision rule: an analytic value a (with its own standard error se_a, 0 unless it is
itself a Monte Carlo quantity) and an estimate m ± se agree when
|m − a| / √(se² + se_a²) ≤ z*, where z* spends a suite-wide false-alarm budget α
over N checks (Bonferroni): z* = Φ⁻¹(1 − α/(2N)) two-sided, Φ⁻¹(1 − α/N) one-sided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

SUITE_FALSE_ALARM = 1e-3  # probability that any check of a full run fails when all hold


@dataclass(frozen=True)
class MCResult:
    """mean ± stderr over ``draws`` independent clusters holding ``samples`` examples in all."""

    mean: float
    stderr: float
    draws: int
    samples: int

    @classmethod
    def from_clusters(cls, values, samples_per_draw: int = 1) -> "MCResult":
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size < 2:
            raise ValueError("need at least two independent draws for a standard error")
        return cls(float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)), int(v.size),
                   int(v.size * samples_per_draw))

    def as_dict(self) -> dict:
        return {"mc_mean": self.mean, "mc_stderr": self.stderr, "draws": self.draws,
                "samples": self.samples}


def suite_threshold(n_checks: int, one_sided: bool = False, alpha: float = SUITE_FALSE_ALARM) -> float:
    """Bonferroni critical value z* for one of ``n_checks`` checks at suite level α."""
    if n_checks < 1:
        raise ValueError("n_checks must be at least 1")
    tail = alpha / n_checks if one_sided else alpha / (2 * n_checks)
    return float(-ndtri(tail))


def z_score(estimate: float, se: float, target: float, target_se: float = 0.0) -> float:
    """(estimate − target) / √(se² + target_se²); ±inf when both errors are 0 and they differ."""
    denom = math.hypot(se, target_se)
    if denom == 0.0:
        return 0.0 if estimate == target else math.copysign(math.inf, estimate - target)
    return (estimate - target) / denom


def detectable_shift(se: float, z_star: float, target_se: float = 0.0, power: float = 0.99) -> float:
    """Smallest |shift| in the target that the check rejects with probability ``power``."""
    return (z_star + float(ndtri(power))) * math.hypot(se, target_se)
