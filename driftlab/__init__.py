"""driftlab: verification suite for 'Bug or Feature²' (arXiv 2605.17659).

Sub-packages (directories at the repository root):
  driftlab.theory      SymPy derivations, closed forms and quadrature
  driftlab.montecarlo  JAX Monte Carlo estimators with standard errors
  driftlab.models      pure-JAX models and the instrumented training engine
  driftlab.reports     figures and tables
"""

__version__ = "0.1.0"
