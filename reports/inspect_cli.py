"""driftlab inspect MODEL.py: does my architecture drift? (issue 33, docs/your-model.md)

MODEL.py defines LOSS ("mse" | "ce"), init(key) -> params, apply(params, x) -> outputs with
each pre-activation marked h = jax.nn.relu(driftlab.tap("mlp0", p)) (or driftlab.tap("mlp0",
p, jax.nn.relu), which also enables the per-layer prediction), and batch(key, n) -> (x, y).
``builtin:mlp|resnet|vit|gpt|mpsenet`` inspects a built-in architecture at its tiny size.

Prints per tap: the measured E[∂ℓᵢ/∂p | p > 0] at init with its clustered SE over init
seeds, the per-layer Stein prediction (Gauss–Newton + curvature) or why it does not apply,
and per matrix reading the tap (found by tracing) the first-step drift prediction against
the measured drift of a short run. --json writes one object per tap and quantity.

Examples:
  driftlab inspect examples/swiglu.py
  driftlab inspect examples/relu2_mlp.py --optimizer adamw --lr 1e-3 --json
  driftlab inspect examples/mlp_relu.py --steps 20
"""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("model", help="a model file (see above) or builtin:NAME")
    parser.add_argument("--seeds", type=int, default=64, help="init seeds (clusters of the SE)")
    parser.add_argument("--samples", type=int, default=32, help="examples per batch (n)")
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "momentum", "adamw"),
                        help="optimizer of the short run and of the first-step prediction")
    parser.add_argument("--lr", type=float, default=1e-2, help="learning rate (constant)")
    parser.add_argument("--drift-steps", type=int, default=10, help="length of the short run")
    parser.add_argument("--steps", type=int, default=0,
                        help="trajectory rows over this many steps (sgd, momentum; 0: none)")
    parser.add_argument("--probes", type=int, default=4, help="Hutchinson probes per seed of "
                        "the per-layer prediction")
    parser.add_argument("--pairs", type=int, default=4, help="independent estimator batches "
                        "per seed for the first-step prediction (3× for trajectory triples)")
    parser.add_argument("--alpha", type=float, default=0.01, help="one-sided level of every verdict")
    parser.add_argument("--margin", type=float, default=0.01, help="equivalence margin of an "
                        "'absent' drift verdict (TOST), in init-std units of the matrix")
    parser.add_argument("--json", action="store_true", help="JSON Lines: one object per tap "
                        "and quantity")


def run(args) -> int:
    from driftlab.reports.inspect import inspect, render

    progress = lambda text: print(f"driftlab inspect: {text}", file=sys.stderr, flush=True)
    rows = inspect(args.model, seeds=args.seeds, samples=args.samples, optimizer=args.optimizer,
                   lr=args.lr, drift_steps=args.drift_steps, steps=args.steps, probes=args.probes,
                   pairs=args.pairs, alpha=args.alpha, margin=args.margin,
                   progress=progress)
    if args.json:
        for r in rows:
            print(json.dumps(r, default=_jsonable))
    else:
        print(render(rows, args.model))
    return 0


def _jsonable(x):
    import numpy as np

    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
