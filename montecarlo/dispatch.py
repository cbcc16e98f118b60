"""The one entry point for the analytic E[∂ℓ/∂p_i | p_i > 0] of the canonical block.

    from driftlab.montecarlo.dispatch import expected_grad_positive
    expected_grad_positive(BlockSetting(loss="ce", act="relu"))   # Analytic(value, tier, stderr)

It covers (notation of docs/theory.md):

* MSE, independent targets, zero-mean W2: k·s2²·E[σσ'(p) | p > 0] ("sum"; ÷k for "mean"),
  closed form or quadrature (theory/expected_grad.py);
* MSE with W2 mean μ ≠ 0, ReLU only: the derived shifted closed form;
* MSE with target y = β·f + ξ: (1 − β) times the independent-target value;
* cross-entropy, independent targets, zero-mean W2: s2²·E[σσ'(p)·S(s2‖h‖) | p > 0], a
  semi-analytic Stein-reduced Monte Carlo value with its standard error
  (montecarlo/stein_reduced.py; ``budget`` sets its samples).

Anything else has no derived value here and is refused with a ValueError naming the field.
"""

from __future__ import annotations

from driftlab.activations import parse_activation
from driftlab.theory import expected_grad
from driftlab.theory.expected_grad import Analytic
from driftlab.theory.setting import BlockSetting


def uncovered(setting: BlockSetting) -> str | None:
    """Why ``setting`` has no analytic value here (naming the field), or None."""
    if setting.loss == "ce":
        if setting.w2_mean:
            return (f"w2_mean={setting.w2_mean!r} with loss='ce': no derived value "
                    f"(the non-zero-mean form is derived for MSE with ReLU only)")
        if setting.target_coupling:
            return (f"target_coupling={setting.target_coupling!r} with loss='ce': no derived "
                    f"value (a coupled target is defined for MSE only)")
        if setting.reduction != "sum":
            return (f"reduction={setting.reduction!r} with loss='ce': reduction is the MSE "
                    f"reduction over outputs; allowed for ce: 'sum'")
        return None
    if setting.w2_mean and setting.target_coupling:
        return "w2_mean and target_coupling both non-zero: no derived value for the two together"
    if setting.w2_mean and parse_activation(setting.act).name != "relu":
        return (f"w2_mean={setting.w2_mean!r} with act={setting.act!r}: the non-zero-mean "
                f"closed form is derived for act='relu' only")
    if setting.w2_mean and setting.reduction != "sum":
        return f"w2_mean={setting.w2_mean!r} with reduction={setting.reduction!r}: derived for 'sum' only"
    return None


def expected_grad_positive(setting: BlockSetting, budget=None) -> Analytic:
    """E[∂ℓ/∂p_i | p_i > 0] for ``setting`` (see the module docstring); ``budget``
    (montecarlo.estimators.Budget) sizes the cross-entropy's Stein-reduced Monte Carlo
    (default: Budget(), 4096 draws × 32 inputs) and is unused for MSE."""
    why = uncovered(setting)
    if why is not None:
        raise ValueError(why)
    if setting.loss == "ce":
        # Imported here: the Monte Carlo side starts JAX, the MSE side does not need it.
        from driftlab.montecarlo import stein_reduced
        from driftlab.montecarlo.estimators import Budget

        return stein_reduced.ce_grad_positive(setting, Budget() if budget is None else budget)
    if setting.w2_mean:
        return expected_grad.expected_grad_positive_mse_nonzero_mean(setting)
    if setting.target_coupling:
        return expected_grad.expected_grad_positive_mse_coupled_target(setting)
    return expected_grad.expected_grad_positive_mse(setting)
