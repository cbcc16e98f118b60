"""Markdown pieces shared by the report's sections: numbers, mean ± CI, tables, figures.

Kept apart from reports/report.py so that the section modules (drift, causal, cliff,
spikes), which report.py assembles, can format without importing their assembler.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from driftlab.reports.analysis import mean_ci


def fmt(x, digits=3) -> str:
    """``x`` to ``digits`` significant digits; "–" for None or a non-finite float."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def ci(values) -> str:
    """"mean ± 95% half-width" of ``values`` (reports/analysis.mean_ci); the mean alone
    for fewer than two values."""
    m, h, n = mean_ci(values)
    return f"{fmt(m)} ± {fmt(h, 2)}" if n >= 2 else fmt(m)


def table(head: list[str], rows: list[list]) -> str:
    """A Markdown table with header ``head``."""
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |",
             "|" + "---|" * len(head)]
    # A literal "|" (as in E[g|p>0]) would split a Markdown cell.
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
              for row in rows]
    return "\n".join(lines)


def figure(path: str, out: Path, caption: str) -> str:
    """A Markdown image of ``path`` relative to the report folder ``out``, with caption."""
    return f"![{caption}]({os.path.relpath(path, out)})\n\n*{caption}*\n"
