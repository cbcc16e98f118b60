"""The five architectures and what they are built from: layers, parameter tables, init schemes, taps."""
