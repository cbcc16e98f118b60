"""Benchmarks: each row compares a driftlab measurement with a baseline run in the same process."""
