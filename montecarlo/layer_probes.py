"""``--probes auto``: the per-tap estimator of best precision per second, chosen by a pilot.

Per seed the prediction is the mean of P probe estimates q_j with E[q_j | seed] = the exact
basis sum and within-seed variance σ²_m (mode m: Hutchinson, row-exact; 0 for the exact
basis). Across seeds the paired difference d = predicted − measured has variance
V₀ + σ²_m/P, V₀ that of the exact prediction's difference, so the estimator controls only
the probe-noise SE √(σ²_m/(P·seeds)). The rule (issue 24):

* feasible: the probe-noise SE at most half the measured SE, σ²_m/P ≤ v_m/4 (v_m = the
  between-seed variance of ``measured``), so the measured side dominates the z; the
  exact basis is always feasible;
* among feasible (mode, P), the best precision per second 1/((v_m + σ²_m/P)·t_m(P)), t the
  seconds per seed (v_m stands in for V₀: the same for every candidate, it only weights
  probe noise against cost). Each mode takes its smallest feasible P: a larger P only
  adds cost for probe noise already below the measured noise.

The pilot (:func:`choose`) measures on this machine: v_m from the fixed pass over *all*
seeds (run anyway); σ²_hutch and the seconds per call from one Hutchinson call on the
first seed block; row-exact (two calls) and the exact basis only when a cost bound says
they could win (their HVP count at the Hutchinson call's seconds per HVP beyond the fixed
kernel's, with zero probe noise).
Every pilot call is a call of the run, reused when its mode is chosen, so the pilot's own
cost is mostly the compiles of the modes it tries.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from driftlab.montecarlo.layer_driver import Estimator, TapKernels

HUTCH_BLOCK = 4  # Hutchinson probes per call
HUTCH_MAX = 64  # more probes than this: Hutchinson is not a candidate
ROW_MAX = 8  # row-exact probes per seed at most
PROBE_SE_FRACTION = 0.5  # probe-noise SE ≤ this × measured SE


@dataclass(frozen=True)
class Candidate:
    """One estimator mode as the pilot saw it: σ² per probe, seconds per seed at P (the
    smallest feasible P; None when infeasible), whether it ran or was only bounded."""

    mode: str
    probe_var: float | None
    probes: int | None
    seconds_per_seed: float
    piloted: bool
    score: float  # 1/((v_m + σ²/P)·t); 0 when infeasible

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Choice:
    """The estimator chosen for a tap, the pilot's table and its cost (seconds)."""

    tap: str
    estimator: Estimator
    measured_var: float
    candidates: tuple[Candidate, ...]
    pilot_seconds: float
    pilot_compile_seconds: float
    done: dict = field(default_factory=dict, compare=False, repr=False)

    def probe_se_ratio(self) -> float:
        """Probe-noise SE / measured SE of the chosen estimator (≤ PROBE_SE_FRACTION by rule)."""
        c = next(c for c in self.candidates if c.mode == self.estimator.mode)
        if not c.probe_var or self.measured_var <= 0:
            return 0.0
        return math.sqrt(c.probe_var / self.estimator.probes / self.measured_var)

    def describe(self) -> str:
        return (f"{self.tap}: {self.estimator.describe()} (probe SE / measured SE = "
                f"{self.probe_se_ratio():.2f} ≤ {PROBE_SE_FRACTION}; pilot {self.pilot_seconds:.1f} s, "
                f"of which compile {self.pilot_compile_seconds:.1f} s; tried "
                + ", ".join(f"{c.mode}{'' if c.piloted else ' (bound)'}"
                            f"{'' if c.probes is None else f' P={c.probes}'} {c.seconds_per_seed:.3g} s/seed"
                            for c in self.candidates) + ")")

    def as_dict(self) -> dict:
        return {"tap": self.tap, "estimator": self.estimator.describe(),
                "mode": self.estimator.mode, "probes": self.estimator.probes,
                "probe_se_ratio": self.probe_se_ratio(), "measured_var": self.measured_var,
                "pilot_seconds": self.pilot_seconds,
                "pilot_compile_seconds": self.pilot_compile_seconds,
                "candidates": [c.as_dict() for c in self.candidates]}


def smallest_probes(probe_var: float, measured_var: float, block: int, cap: int) -> int | None:
    """The smallest multiple P of ``block`` with σ²/P ≤ (PROBE_SE_FRACTION)²·v_m, None above ``cap``."""
    if probe_var <= 0:
        return block
    if measured_var <= 0:
        return None
    need = probe_var / (PROBE_SE_FRACTION ** 2 * measured_var)
    p = block * max(1, math.ceil(need / block - 1e-9))
    return p if p <= cap else None


def score(measured_var: float, probe_var: float, probes: int | None, seconds: float) -> float:
    """Precision per second 1/((v_m + σ²/P)·t) of a feasible candidate, 0 if infeasible."""
    if probes is None:
        return 0.0
    v = measured_var + probe_var / probes
    return 1.0 / (max(v, 1e-300) * max(seconds, 1e-12))


def within_seed_var(outs: list[dict], n_seeds: int) -> float:
    """Mean over the block's real seeds of the unbiased variance of its per-probe values."""
    per = np.concatenate([np.asarray(o["predicted_probes"], np.float64) for o in outs], axis=1)[:n_seeds]
    return float(per.var(axis=1, ddof=1).mean())


def choose(tap: str, kernels: TapKernels, fixed: list[dict], hvps: dict) -> Choice:
    """Pilot and rule (module doc) for one tap. ``fixed``: the fixed pass's outputs per block;
    ``hvps``: HVPs per probe call of each mode ({"hutchinson": per probe, "row_exact": per
    probe, "exact": the basis}). The first seed block is the pilot's."""
    t_start, c_start = time.perf_counter(), kernels.compile_seconds
    ids = kernels.blocks.blocks[0][0]
    size = kernels.blocks.size
    measured = np.concatenate([np.asarray(f["measured"], np.float64)[:len(b[0])]
                               for f, b in zip(fixed, kernels.blocks.blocks)])
    v_m = float(measured.var(ddof=1))
    t0 = time.perf_counter()
    kernels.fixed(0)  # one timed fixed call (compiled by the fixed pass)
    t_fixed = (time.perf_counter() - t0) / size

    done, cands = {}, []
    hut = Estimator("hutchinson", HUTCH_BLOCK, HUTCH_BLOCK)
    out, sec = kernels.probes(hut, 0, 0)
    done["hutchinson"] = {(0, 0): out}
    t_call = sec / size
    var_h = within_seed_var([out], len(ids))
    p_h = smallest_probes(var_h, v_m, HUTCH_BLOCK, HUTCH_MAX)
    t_h = t_fixed + (p_h or HUTCH_BLOCK) / HUTCH_BLOCK * t_call
    cands.append(Candidate("hutchinson", var_h, p_h, t_h, True, score(v_m, var_h, p_h, t_h)))
    # A call's own overhead (forward, backward, p) is about the fixed kernel's work, so
    # (t_call − t_fixed) per HVP bounds the marginal HVP cost of the other modes from below.
    t_hvp = max(t_call - t_fixed, 0.0) / (HUTCH_BLOCK * hvps["hutchinson"])

    def best():
        return max(c.score for c in cands)

    row_bound = t_fixed + hvps["row_exact"] * t_hvp
    if score(v_m, 0.0, 1, row_bound) > best():
        row = Estimator("row_exact", 1, 1)
        outs = [kernels.probes(row, 0, c) for c in range(2)]
        done["row_exact"] = {(0, c): o for c, (o, _) in enumerate(outs)}
        var_r = within_seed_var([o for o, _ in outs], len(ids))
        p_r = smallest_probes(var_r, v_m, 1, ROW_MAX)
        t_r = t_fixed + (p_r or 1) * np.mean([s for _, s in outs]) / size
        cands.append(Candidate("row_exact", var_r, p_r, t_r, True, score(v_m, var_r, p_r, t_r)))
    else:
        cands.append(Candidate("row_exact", None, None, row_bound, False, 0.0))

    exact_bound = t_fixed + hvps["exact"] * t_hvp
    if best() == 0.0 or score(v_m, 0.0, 1, exact_bound) > best():
        ex = Estimator("exact", 1, 1)
        out, sec = kernels.probes(ex, 0, 0)
        done["exact"] = {(0, 0): out}
        t_e = t_fixed + sec / size
        cands.append(Candidate("exact", 0.0, 1, t_e, True, score(v_m, 0.0, 1, t_e)))
    else:
        cands.append(Candidate("exact", 0.0, None, exact_bound, False, 0.0))

    win = max((c for c in cands if c.score > 0), key=lambda c: c.score)
    block = {"hutchinson": HUTCH_BLOCK, "row_exact": 1, "exact": 1}[win.mode]
    est = Estimator(win.mode, win.probes, block)
    return Choice(tap, est, v_m, tuple(cands), time.perf_counter() - t_start,
                  kernels.compile_seconds - c_start, done[win.mode])


__all__ = ["Candidate", "Choice", "choose", "smallest_probes", "score", "within_seed_var",
           "HUTCH_BLOCK", "HUTCH_MAX", "ROW_MAX", "PROBE_SE_FRACTION"]
