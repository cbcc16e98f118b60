"""One figure style for every driftlab figure (reports/figures.py, reports/theory_plots.py).

Sizes are chosen to stay legible when a figure is printed at column width: 10 pt text,
8 pt legends, 150 dpi PNGs. :func:`styled` applies the style to one plotting function
through ``matplotlib.rc_context`` (no global rcParams change); :func:`colors_for` gives
every activation label a distinct colour, the same one in every figure where possible.
"""

from __future__ import annotations

import functools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RC = {
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 8,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.titlesize": 10,
    "lines.linewidth": 1.5, "lines.markersize": 5, "errorbar.capsize": 2,
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
    "savefig.dpi": 150, "savefig.bbox": "tight",
}

# Base activations keep one colour everywhere (tab10); other labels (clipped variants,
# thresholds) take the next unused colour of tab20, so no two labels in a figure share one.
BASE_COLORS = {"relu": "#1f77b4", "gelu": "#ff7f0e", "silu": "#2ca02c", "tanh": "#7f7f7f",
               "relu2": "#d62728", "gelu2": "#9467bd", "identity": "#8c564b"}
_EXTRA = ("#e377c2", "#17becf", "#bcbd22", "#ff9896", "#aec7e8", "#c5b0d5", "#98df8a",
          "#ffbb78", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d", "#000000")


def colors_for(labels) -> dict[str, str]:
    """A distinct colour per label: the base palette for bare activation names, the next
    unused extra colour for anything else (in the order given)."""
    out, used = {}, set()
    for label in labels:
        if label in BASE_COLORS and BASE_COLORS[label] not in used:
            out[label] = BASE_COLORS[label]
            used.add(out[label])
    extra = (c for c in _EXTRA + tuple(BASE_COLORS.values()) if c not in used)
    for label in labels:
        if label not in out:
            out[label] = next(extra)
            used.add(out[label])
    return out


def styled(fn):
    """Run a plotting function under :data:`RC`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(RC):
            return fn(*args, **kwargs)
    return wrapper


def save(fig, path) -> str:
    """Lay out, write ``path`` (PNG at RC's dpi), close the figure; return the path."""
    import io

    from driftlab.atomic_io import write_bytes

    fig.tight_layout()
    buf = io.BytesIO()  # rendered in memory, then one atomic write: no half-written PNG
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return str(path)
