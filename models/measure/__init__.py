"""Measurements that run the architectures: the per-layer theorem's Monte Carlo at init
(per_layer, conv_readers) and the drift trajectory's measured side (trajectory)."""
