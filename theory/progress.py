"""Every default theorem check with one progress display (for ``driftlab theory check`` and
the report's cached checks, reports/theory_cache.py)."""

from __future__ import annotations

import sys


def run_with_progress(seed: int = 0, show: bool = True, stream=None) -> list:
    """Every default theorem check (``checks.run_checks``) with one overall progress
    display: a single "k of N" bar naming the next claim when ``stream`` is a terminal,
    else one line per finished check, in check order."""
    from driftlab.theory import checks

    stream = sys.stderr if stream is None else stream
    specs = checks.default_specs()
    tty = show and hasattr(stream, "isatty") and stream.isatty()
    bar = None
    if tty:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(specs), desc="theory check", unit="check", file=stream)

    def describe(spec):
        return f"{spec.claim} | {spec.setting.describe()}"

    def on_result(i, res):
        if bar is not None:
            bar.update(1)
            if i + 1 < len(specs):
                bar.set_postfix_str(describe(specs[i + 1])[:70])
        elif show:
            print(f"[{i + 1}/{len(specs)}] {'pass' if res.passed else 'FAIL'} "
                  f"z={res.z:.2f} {res.spec.kind}: {describe(res.spec)}", file=stream, flush=True)

    try:
        if bar is not None:
            bar.set_postfix_str(describe(specs[0])[:70])
        return checks.run_checks(specs, seed=seed, on_result=on_result)
    finally:
        if bar is not None:
            bar.close()
