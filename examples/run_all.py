"""Run every worked example of docs/your-model.md and write its results beside it.

    python examples/run_all.py [NAME ...]

Settings (fixed before the runs): 64 init seeds × 32 examples, SGD at lr 0.01 for a
10-step short run, 4 Hutchinson probes, 4 estimator batches per seed, one-sided α = 0.01
(98% intervals), equivalence margin 0.002 init-std for an "absent" drift. Writes
examples/results/NAME.jsonl (driftlab inspect --json) and examples/results/table.md.
"""

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = ["mlp_relu", "swiglu", "relu2_mlp", "transformer_prenorm", "transformer_postnorm", "moe"]
SETTINGS = dict(seeds=64, samples=32, optimizer="sgd", lr=0.01, drift_steps=10, probes=4,
                pairs=4, alpha=0.01, margin=0.002)


def main(names):
    import driftlab
    from driftlab.reports.inspect import verdict_table
    from driftlab.reports.inspect_cli import _jsonable

    results = {}
    for name in names:
        t0 = time.time()
        rows = driftlab.inspect(str(HERE / f"{name}.py"), **SETTINGS)
        seconds = time.time() - t0
        with open(HERE / "results" / f"{name}.jsonl", "w") as fh:
            fh.write(json.dumps({"settings": SETTINGS, "seconds": round(seconds, 1)}) + "\n")
            for r in rows:
                fh.write(json.dumps(r, default=_jsonable) + "\n")
        print(f"{name}: {seconds:.0f} s", flush=True)
    for name in EXAMPLES:
        path = HERE / "results" / f"{name}.jsonl"
        if path.exists():
            lines = path.read_text().splitlines()[1:]
            results[name] = [json.loads(x) for x in lines]
    (HERE / "results" / "table.md").write_text(verdict_table(results) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or EXAMPLES)
