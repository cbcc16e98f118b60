"""Every theorem check of the suite: analytic (theory/) against Monte Carlo (montecarlo/).

A check compares an analytic value a ± se_a with a raw Monte Carlo estimate m ± se:

  agree     |m − a| / √(se² + se_a²) ≤ z*                 (two-sided)
  zero      agree with a = 0
  positive  m / se ≥ z*₁  (one-sided sign claim: E > 0)
  negative  −m / se ≥ z*₁
  differs   |m − a| / √(se² + se_a²) > z*: a value that theory says no longer holds
            (broken assumption) is rejected

z* and z*₁ spend the suite's false-alarm budget α (montecarlo.stats.SUITE_FALSE_ALARM)
over all checks by Bonferroni. Each agree/zero check also carries the planted error it
must catch (``planted``: relative for agree, absolute for zero), asserted in
theory/tests/test_power.py at the same sample sizes.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from driftlab.montecarlo import estimators, stein_reduced
from driftlab.montecarlo.estimators import Budget
from driftlab.montecarlo.stats import MCResult, detectable_shift, suite_threshold, z_score
from driftlab.theory import expected_grad
from driftlab.theory.expected_grad import Analytic
from driftlab.theory.setting import BlockSetting

KINDS = ("agree", "zero", "positive", "negative", "differs")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "relu2", "clipped_relu2:1", "gelu2", "clipped_gelu2:1")
POSITIVELY_BIASED = ("relu", "gelu", "silu", "relu2")

# Two canonical settings: the main one, and a small high-gain one (ReLU-like activations;
# squared activations at gain 1.5 are too heavy-tailed for a 1% check at this cost).
SETTING_A = BlockSetting(d_in=16, width=32, d_out=10, gain=1.0)
SETTING_B = BlockSetting(d_in=8, width=16, d_out=16, gain=1.5)
SETTING_B_ACTIVATIONS = ("relu", "gelu", "silu", "tanh")

# The relative error each E[g|p>0] check must catch: 1%, except where the per-draw noise
# of the estimator (heavy tails of the squared activations, CE's clipped forms) would need
# several times the suite's time budget for it; there 1.5% is what the budget buys.
PLANTED_GRAD = {("ce", "clipped_relu2:1"): 0.015, ("ce", "gelu2"): 0.015,
                ("ce", "clipped_gelu2:1"): 0.015}


@dataclass(frozen=True)
class CheckSpec:
    """One claim in one setting. ``quantity`` names what is estimated (see ``measure``)."""

    claim: str
    kind: str
    quantity: str
    setting: BlockSetting
    variant: str = "theorem"  # which analytic formula: theorem | nonzero_mean | coupled_target
    planted: float = 0.01     # error the check must catch: relative (agree) or absolute (zero)
    extra: tuple = ()         # quantity-specific parameters, e.g. (("t", 1.0),)

    @property
    def id(self) -> str:
        return f"{self.quantity}|{self.kind}|{self.variant}|{self.setting.describe()}|{self.extra}"


@dataclass(frozen=True)
class CheckResult:
    spec: CheckSpec
    analytic: Analytic
    mc: MCResult
    z: float
    threshold: float
    passed: bool
    detectable: float  # smallest shift of the target caught with 99% probability

    def as_dict(self) -> dict:
        return {"claim": self.spec.claim, "kind": self.spec.kind, "setting": self.spec.setting.describe(),
                "quantity": self.spec.quantity, "analytic": self.analytic.value,
                "analytic_stderr": self.analytic.stderr, "tier": self.analytic.tier,
                **self.mc.as_dict(), "z": self.z, "threshold": self.threshold,
                "verdict": "pass" if self.passed else "FAIL", "detectable_shift": self.detectable}


def default_specs() -> list[CheckSpec]:
    """The full suite run by ``pytest theory`` and ``driftlab theory check``."""
    specs: list[CheckSpec] = []
    settings = [replace(SETTING_A, act=a, loss=loss) for loss in ("mse", "ce") for a in ACTIVATIONS]
    settings += [replace(SETTING_B, act=a, loss="mse") for a in SETTING_B_ACTIVATIONS]
    for s in settings:
        formula = "k·s2²·E[σσ'(p)|p>0]" if s.loss == "mse" else "s2²·E[σσ'(p)·S(s2‖h‖)|p>0]"
        specs.append(CheckSpec(f"E[g|p>0] = {formula} ({s.loss})", "agree", "grad_positive", s,
                               planted=PLANTED_GRAD.get((s.loss, s.act), 0.01)))
        specs.append(CheckSpec(f"E[g|p>0] > 0 ({s.loss})", "positive", "grad_positive", s))
    for loss in ("mse", "ce"):
        # ReLU² through two layers puts S(t) beyond its quadrature range under CE: MSE only.
        for act in POSITIVELY_BIASED if loss == "mse" else POSITIVELY_BIASED[:3]:
            s = replace(SETTING_A, act=act, loss=loss)
            # drift estimates are noisier per unit cost; their planted error is 3% (ReLU²: 10%)
            planted = 0.10 if act == "relu2" else 0.03
            specs.append(CheckSpec(f"E[∂ℓ/∂W2] = k·s3²·E[h̄·m(s2‖h‖)] ({loss})", "agree", "drift_W2", s,
                                   planted=planted))
            specs.append(CheckSpec(f"E[∂ℓ/∂W2] > 0: SGD drives W2 negative ({loss})", "positive", "drift_W2", s))
        relu = replace(SETTING_A, act="relu", loss=loss)
        tanh = replace(SETTING_A, act="tanh", loss=loss)
        specs.append(CheckSpec(f"tanh: E[∂ℓ/∂W2] = 0, no drift ({loss})", "zero", "drift_W2", tanh,
                               planted=("relative_to", "drift_W2", "relu", 0.01)))
        specs.append(CheckSpec(f"input matrix: E[∂ℓ/∂W1] = 0 ({loss})", "zero", "drift_W1", relu,
                               planted=("relative_to", "drift_W2", "relu", 0.03)))
        if loss == "mse":  # under CE the W3 mean gradient is identically 0 (softmax sums to 1)
            specs.append(CheckSpec(f"output matrix: E[∂ℓ/∂W3] = 0 ({loss})", "zero", "drift_W3", relu,
                                   planted=("relative_to", "drift_W2", "relu", 0.10)))
    lemma = replace(SETTING_A, act="relu")
    specs.append(CheckSpec("lemma: E‖v_i‖² = k·s2²", "agree", "gram_diag", lemma))
    specs.append(CheckSpec("lemma: E⟨v_i,v_j⟩ = 0 (i≠j)", "zero", "gram_offdiag", lemma,
                           planted=("relative_to", "gram_diag", "relu", 0.01)))
    # Past initialization the v_i are no longer independent: one SGD step already makes
    # co-active units' outgoing vectors anti-aligned (first order: −2η·k·s2²·E[h_i h_j]).
    specs.append(CheckSpec("lemma after 1 SGD step: E⟨v_i,v_j⟩ < 0 over co-active pairs (does not survive)",
                           "negative", "gram_after_sgd", lemma, extra=(("steps", 1), ("lr", 0.1))))
    # Broken assumptions: the suite shows the prediction move as theory says.
    shifted = replace(SETTING_A, act="relu", w2_mean=0.05)
    specs.append(CheckSpec("non-zero-mean W2: E[g|p>0] = k[(s2²+μ²)E[p|p>0] + μ²(n−1)E[ReLU p]]", "agree",
                           "grad_positive", shifted, variant="nonzero_mean"))
    specs.append(CheckSpec("non-zero-mean W2: zero-mean theorem value rejected", "differs",
                           "grad_positive", shifted))
    coupled = replace(SETTING_A, act="relu", target_coupling=2.0)
    specs.append(CheckSpec("target y = 2f + ξ: E[g|p>0] = (1 − β)·theorem value", "agree", "grad_positive",
                           coupled, variant="coupled_target"))
    specs.append(CheckSpec("target y = 2f + ξ: the sign flips, E[g|p>0] < 0", "negative", "grad_positive",
                           coupled))
    for t in (0.5, 2.0):
        specs.append(CheckSpec("softmax factor S(t) = E[1 − ‖softmax(u)‖²] (quadrature)", "agree",
                               "softmax_factor", replace(SETTING_A, loss="ce"), extra=(("t", t),)))
    specs.append(CheckSpec("drift→sparsity law Φ(−μΣh/(s‖h‖))", "agree", "sparsity_law",
                           replace(SETTING_A, act="relu"), extra=(("mu", -0.02), ("s", 0.18))))
    return specs


# Sample sizes: chosen so every agree check has the power its ``planted`` states
# (asserted by theory/tests/test_power.py) and the whole suite runs in ~1–2 min on 2 cores.
BUDGETS = {
    "grad_positive": Budget(draws=49152, inputs_per_draw=16, chunk=4096),
    "drift": Budget(draws=65536, inputs_per_draw=8, chunk=4096),
    "semi_analytic": Budget(draws=8192, inputs_per_draw=64, chunk=64),
    "gram": Budget(draws=65536, inputs_per_draw=1, chunk=8192),
    "gram_after_sgd": Budget(draws=2048, inputs_per_draw=32, chunk=512),
    "softmax_factor": Budget(draws=4096, inputs_per_draw=256, chunk=1024),
    "sparsity_law": Budget(draws=8192, inputs_per_draw=64, chunk=1024),
}


def _sparsity_inputs(setting: BlockSetting, seed: int) -> np.ndarray:
    """Fixed non-negative activations h = ReLU(p), p ~ N(0, 1), 64 rows of width n."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal((64, setting.width)), 0.0)


class Evaluator:
    """Measures each quantity once per (quantity family, setting, seed) and evaluates checks.

    Holds only a per-run cache, so one suite run costs one Monte Carlo run per setting.
    """

    def __init__(self, seed: int = 0, budgets: dict | None = None, progress: bool = False):
        self.seed = seed
        self.budgets = {k: replace(v, seed=seed, progress=progress) for k, v in (budgets or BUDGETS).items()}
        self._mc: dict = {}
        self._analytic: dict = {}
        self._locks: dict = {}  # one lock per cache key: threads share a result, not its work
        self._locks_lock = threading.Lock()

    def _cached(self, cache, key, compute):
        with self._locks_lock:
            lock = self._locks.setdefault((id(cache), key), threading.Lock())
        with lock:
            if key not in cache:
                cache[key] = compute()
        return cache[key]

    def mc(self, spec: CheckSpec) -> MCResult:
        s, q, b = spec.setting, spec.quantity, self.budgets
        if q == "grad_positive":
            return self._cached(self._mc, (q, s), lambda: estimators.estimate_grad_positive(s, b[q]))
        if q.startswith("drift_"):
            res = self._cached(self._mc, ("drift", s), lambda: estimators.estimate_drift(s, b["drift"]))
            return res[q.split("_")[1]]
        if q in ("gram_diag", "gram_offdiag"):
            res = self._cached(self._mc, ("gram", s), lambda: estimators.estimate_outgoing_gram(s, b["gram"]))
            return res[q.split("_")[1]]
        extra = dict(spec.extra)
        if q == "gram_after_sgd":
            return self._cached(self._mc, (q, s, spec.extra), lambda: estimators.estimate_outgoing_gram_after_sgd(
                s, b[q], steps=extra["steps"], lr=extra["lr"]))
        if q == "softmax_factor":
            return self._cached(self._mc, (q, s, spec.extra), lambda: estimators.estimate_softmax_factor(
                extra["t"], s.d_out, b[q]))
        if q == "sparsity_law":
            h = _sparsity_inputs(s, self.seed)
            return self._cached(self._mc, (q, s, spec.extra), lambda: estimators.estimate_relu_sparsity(
                extra["mu"], extra["s"], h, b[q]))
        raise ValueError(f"unknown quantity {q!r}")

    def analytic(self, spec: CheckSpec) -> Analytic:
        s, q = spec.setting, spec.quantity
        if spec.kind == "zero":
            return Analytic(0.0, "theorem (symmetry)")
        if q == "grad_positive":
            if spec.variant == "nonzero_mean":
                return expected_grad.expected_grad_positive_mse_nonzero_mean(s)
            if spec.variant == "coupled_target":
                return expected_grad.expected_grad_positive_mse_coupled_target(s)
            if s.loss == "mse":  # the theorem's value, ignoring any broken assumption
                return expected_grad.expected_grad_positive_mse(replace(s, w2_mean=0.0, target_coupling=0.0))
            return self._cached(self._analytic, (q, s), lambda: stein_reduced.ce_grad_positive(
                s, self.budgets["semi_analytic"]))
        if q == "drift_W2":
            return self._cached(self._analytic, (q, s), lambda: stein_reduced.drift(
                s, self.budgets["semi_analytic"]))
        if q == "gram_diag":
            return Analytic(s.d_out * s.s2**2, "closed form")
        extra = dict(spec.extra)
        if q == "gram_after_sgd":  # first-order-in-η reference value; the check is the sign
            return Analytic(expected_grad.gram_first_sgd_step_first_order(s, extra["lr"]) * extra["steps"],
                            "first order in η (reference)")
        if q == "softmax_factor":
            return Analytic(expected_grad.softmax_trace_factor(extra["t"], s.d_out), "quadrature")
        if q == "sparsity_law":
            return Analytic(expected_grad.predicted_relu_sparsity(
                extra["mu"], extra["s"], _sparsity_inputs(s, self.seed)), "closed form")
        raise ValueError(f"no analytic value for quantity {q!r}")

    def planted_shift(self, spec: CheckSpec, analytic: Analytic) -> float:
        """The absolute error this check must catch."""
        if isinstance(spec.planted, tuple):
            _, quantity, act, fraction = spec.planted
            ref = replace(spec, kind="agree", quantity=quantity, setting=replace(spec.setting, act=act))
            return fraction * abs(self.analytic(ref).value)
        return spec.planted * abs(analytic.value)


def evaluate(spec: CheckSpec, analytic: Analytic, mc: MCResult, n_checks: int) -> CheckResult:
    """Apply the decision rule of ``spec.kind`` at the Bonferroni level for ``n_checks`` checks."""
    one_sided = spec.kind in ("positive", "negative")
    threshold = suite_threshold(n_checks, one_sided=one_sided)
    if one_sided:
        z = z_score(mc.mean, mc.stderr, 0.0)
        passed = z >= threshold if spec.kind == "positive" else -z >= threshold
    else:
        z = z_score(mc.mean, mc.stderr, analytic.value, analytic.stderr)
        passed = abs(z) > threshold if spec.kind == "differs" else abs(z) <= threshold
    return CheckResult(spec, analytic, mc, z, threshold, passed,
                       detectable_shift(mc.stderr, threshold, analytic.stderr))


CHECK_WORKERS = 3  # checks evaluated at once (see run_checks)


def run_checks(specs: list[CheckSpec] | None = None, seed: int = 0, progress: bool = False,
               evaluator: Evaluator | None = None, on_result=None,
               workers: int = CHECK_WORKERS) -> list[CheckResult]:
    """Evaluate every check; the Bonferroni level is set by the number of checks run.

    ``workers`` threads evaluate checks at once (analytic value and Monte Carlo of each),
    so one check's XLA compilation (single-threaded, ~20 s of a cold suite) overlaps
    another's execution and the host quadrature; XLA compiles and executes without the
    GIL. Every estimate has its own fixed seed and the Evaluator computes each cache key
    once (per-key locks), so the results do not depend on the interleaving.
    ``on_result(i, result)`` is called in check order as results become available.
    """
    specs = default_specs() if specs is None else specs
    ev = evaluator or Evaluator(seed=seed, progress=progress)

    def check(spec):
        return evaluate(spec, ev.analytic(spec), ev.mc(spec), len(specs))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(check, s) for s in specs]
        results = []
        for i, future in enumerate(futures):
            results.append(future.result())
            if on_result is not None:
                on_result(i, results[-1])
    return results
