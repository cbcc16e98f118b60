"""The instrumented training engine: config, steps, loop, ensembles, optimizers, checkpoints, run files."""
