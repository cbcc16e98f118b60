"""Memory a Monte Carlo chunk will need, estimated before anything is allocated.

The raw E[g | p > 0] estimator (montecarlo/estimators.py: ``preactivation_grads``) holds,
per weight draw of B inputs: the inputs x (B·d), the first layer (n·d when 2B > d, else the
n·B normals and the B×B Gram factor), W2 (k·n) and the activations B·(3n + k). XLA also
keeps the random bits and temporaries beside them: the factor TEMPORARIES (measured: a
d = 10⁸, 16-input, one-draw chunk asked for 25.6 GB = 4 × its 6.4 GB of float32 inputs).
"""

from __future__ import annotations

import os

TEMPORARIES = 4
BYTES = {"float32": 4, "float64": 8}


def grad_positive_bytes(d_in: int, width: int, d_out: int, inputs: int, chunk: int,
                        dtype: str = "float32") -> int:
    """Bytes one compiled chunk of ``chunk`` draws × ``inputs`` inputs needs (estimate)."""
    n, d, k, b = width, d_in, d_out, inputs
    first = n * d if 2 * b > d else n * b + b * b
    per_draw = b * d + first + k * n + b * (3 * n + k)
    return TEMPORARIES * BYTES[dtype] * chunk * per_draw


def available_bytes() -> int | None:
    """Physical memory available now (Linux /proc/meminfo MemAvailable, else sysconf); None
    if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, limit: int | None, what: str) -> None:
    """ValueError "WHAT needs about X GB of memory, Y GB available" when needed > limit."""
    if limit is not None and needed > limit:
        raise ValueError(f"{what} needs about {needed / 1e9:.1f} GB of memory, more than the "
                         f"{limit / 1e9:.1f} GB available; lower --d-in/--width or "
                         f"--samples (whole chunks), or raise --max-memory-gb")
