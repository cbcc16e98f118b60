"""Pure-JAX models (parameters are pytrees of arrays) and the instrumented training engine."""
