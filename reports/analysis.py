"""Statistics for the reports: t-based confidence bands over seeds and the cliff (knee) fit.

* :func:`t_band` — mean ± t_{0.975, n−1}·sd/√n across seeds, per point.
* :func:`hinge_fit` — the continuous two-segment (hinge) least-squares fit
  y = a + b·x + c·max(x − k, 0), with the knee k found by exhaustive search over a
  grid of candidate knees between the data's quantiles (each candidate is a linear
  least-squares problem, so the search is exact on the grid).
* :func:`fit_cliff` — the hinge fit plus a percentile bootstrap confidence interval
  for the knee (resampling points with replacement) and the slopes before/after.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def t_band(values, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lower, upper) over axis 0 of ``values`` (seeds × points).

    Half-width t_{(1+level)/2, n−1}·sd/√n (sd with ddof=1), ignoring NaNs per point;
    points with fewer than two finite values get a zero-width band.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    v = np.where(np.isfinite(v), v, np.nan)
    n = np.sum(np.isfinite(v), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> NaN, fine
        mean = np.nanmean(v, axis=0)
        sd = np.nanstd(v, axis=0, ddof=1)
        half = stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1))
    half = np.where(n >= 2, half, 0.0)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class HingeFit:
    """y ≈ a + b·x + c·max(x − knee, 0): slope b before the knee, b + c after."""

    knee: float
    a: float
    b: float
    c: float
    sse: float

    @property
    def slope_after(self) -> float:
        return self.b + self.c

    def predict(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return self.a + self.b * x + self.c * np.maximum(x - self.knee, 0.0)


def _candidates(x: np.ndarray, n_grid: int, trim: float) -> np.ndarray:
    lo, hi = np.quantile(x, [trim, 1 - trim])
    return np.linspace(lo, hi, n_grid) if hi > lo else np.array([lo])


def hinge_fit(x, y, n_grid: int = 200, trim: float = 0.1) -> HingeFit:
    """Least-squares hinge fit; the knee is searched on ``n_grid`` points between the
    ``trim`` and 1 − ``trim`` quantiles of x (so each segment keeps some data)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 4:
        raise ValueError(f"hinge fit needs at least 4 finite points, got {x.size}")
    best = None
    for k in _candidates(x, n_grid, trim):
        design = np.column_stack([np.ones_like(x), x, np.maximum(x - k, 0.0)])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(np.sum((design @ coef - y) ** 2))
        if best is None or sse < best.sse - 1e-15:
            best = HingeFit(float(k), *map(float, coef), sse)
    return best


@dataclass(frozen=True)
class CliffFit:
    """A hinge fit with a bootstrap CI for the knee and a plain-language verdict."""

    fit: HingeFit
    knee_lo: float
    knee_hi: float
    level: float
    n_points: int
    n_boot: int
    drop_per_10pct: float  # accuracy change per +0.1 sparsity after the knee
    slope_change_hi: float  # upper end of the bootstrap CI of the slope change c
    is_cliff: bool  # see fit_cliff

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("fit"))
        d["slope_after"] = self.fit.slope_after
        return d


def fit_cliff(x, y, n_boot: int = 500, level: float = 0.95, seed: int = 0,
              n_grid: int = 200) -> CliffFit:
    """Hinge fit of y (accuracy) on x (sparsity) with a percentile bootstrap CI for the knee.

    Method: refit the hinge on ``n_boot`` resamples of the points (with replacement);
    the CI is the (1−level)/2 and (1+level)/2 quantiles of the resampled knees. A
    "cliff" is declared when the slope change c is negative with the upper end of its
    bootstrap CI below 0, and the slope after the knee is negative and at least twice as
    steep as the slope before it (so a straight decline is not a cliff).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    fit = hinge_fit(x, y, n_grid)
    rng = np.random.default_rng(seed)
    knees, changes = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, x.size, x.size)
        if np.unique(x[idx]).size < 4:
            continue
        f = hinge_fit(x[idx], y[idx], n_grid=max(50, n_grid // 4))
        knees.append(f.knee)
        changes.append(f.c)
    knees = np.asarray(knees) if knees else np.array([fit.knee])
    q = [(1 - level) / 2, (1 + level) / 2]
    lo, hi = np.quantile(knees, q)
    c_hi = float(np.quantile(changes, q[1])) if changes else float("nan")
    cliff = (c_hi < 0 and fit.slope_after < 0
             and abs(fit.slope_after) >= 2 * max(abs(fit.b), 1e-12))
    return CliffFit(fit, float(lo), float(hi), level, int(x.size), len(knees),
                    0.1 * fit.slope_after, c_hi, bool(cliff))


def mean_ci(values, level: float = 0.95) -> tuple[float, float, int]:
    """(mean, t-based half-width, n) of a 1-D sample; half-width NaN for n < 2."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    if v.size < 2:
        return float(v.mean()), float("nan"), 1
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(half), int(v.size)


def gaussian_bic(sse: float, n: int, k: int) -> float:
    """BIC of a least-squares fit with Gaussian errors: n·ln(SSE/n) + k·ln(n)."""
    return float(n * np.log(max(sse, 1e-300) / n) + k * np.log(n))


def hinge_vs_line_bic(x, y, n_grid: int = 200) -> tuple[float, HingeFit]:
    """ΔBIC = BIC(straight line, 2 parameters) − BIC(hinge, 4 parameters: a, b, c, knee).

    ΔBIC > 10 is "very strong" evidence for the hinge (Kass & Raftery 1995); the report
    claims a cliff only above that and with the after-knee slope negative and at least
    twice as steep as before (:func:`fit_cliff`'s shape criterion).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    hinge = hinge_fit(x, y, n_grid)
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    sse_line = float(np.sum((design @ coef - y) ** 2))
    return gaussian_bic(sse_line, x.size, 2) - gaussian_bic(hinge.sse, x.size, 4), hinge


def slope_change_at(x, y, knee: float) -> float:
    """c of the least-squares fit y = a + b·x + c·max(x − knee, 0) at a fixed knee (NaN
    unless at least 2 points lie on each side of the knee)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if np.sum(x > knee) < 2 or np.sum(x <= knee) < 2:
        return float("nan")
    design = np.column_stack([np.ones_like(x), x, np.maximum(x - knee, 0.0)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(coef[2])
