"""driftlab: verification suite for 'Bug or Feature²' (arXiv 2605.17659).

    import driftlab
    block = driftlab.Block(loss="ce", act="relu", d_in=32, width=64, d_out=10)
    driftlab.expected_grad(block)          # analytic E[∂ℓ/∂p | p > 0] (MSE or CE)
    driftlab.estimate(block, se=1e-3)      # Monte Carlo, sized to that standard error

The API (driftlab/api.py, docs/api.md): Block, expected_grad, estimate, check_theorems,
predict_layers, train, resume, load_run, sweep, report, plot_setting. Importing driftlab
starts no JAX: each function imports what it needs when called.

Sub-packages (directories at the repository root):
  driftlab.theory      SymPy derivations, closed forms and quadrature
  driftlab.montecarlo  JAX Monte Carlo estimators with standard errors
  driftlab.models      pure-JAX models and the instrumented training engine
  driftlab.reports     figures and tables
"""

__version__ = "0.1.0"

from driftlab.api import (Block, check_theorems, estimate, expected_grad,  # noqa: E402
                          load_run, plot_setting, predict_layers, report, resume, sweep, train)
from driftlab.tap import tap  # noqa: E402  (JAX-free; issue 33)
from driftlab.user_api import inspect  # noqa: E402  (JAX imported when called)

__all__ = ["Block", "expected_grad", "estimate", "check_theorems", "predict_layers", "train",
           "resume", "load_run", "sweep", "report", "plot_setting", "tap", "inspect", "__version__"]
