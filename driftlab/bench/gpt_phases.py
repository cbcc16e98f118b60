"""Where a GPT-nano training step spends its time, in JAX and in eager PyTorch.

Rows of ``python -m driftlab.bench.train --gpt-vs-torch`` (next to the ``GPT-nano JAX vs
PyTorch`` row). For the same model config, initial weights and batch as that row:

* ``GPT-nano forward``, ``forward+backward``, ``fwd+bwd+AdamW``: calls per second of the
  forward loss L(θ) (PyTorch: building the autograd graph, as in training), of
  (L, ∇θL), and of a whole AdamW step, JAX (jitted) against PyTorch (eager); the note
  gives milliseconds and the derived backward (fwd+bwd − fwd) and update (step − fwd+bwd)
  times, which are differences of medians and so only indicative.
* ``JAX engine step vs minimal step``: the engine's uninstrumented step (models/engine/train.py,
  which also computes accuracy, predictive entropy, the gradient norm, the learning rate
  and a finiteness flag) against a jitted step computing only the loss, its gradient and
  the AdamW update: the cost of those extras, which PyTorch's step does not compute.

PyTorch runs at the faster of one thread and one per core (picked by a short pilot);
JAX uses XLA's thread pool, one thread per core this process may use. Imports ``torch``;
call only when it is importable.
"""

from __future__ import annotations

import time

import jax
import optax
import torch

from driftlab.bench import torch_gpt
from driftlab.bench.timing import calibrate, cores, row, time_alternating
from driftlab.models.arch import gpt

PHASES = ("forward", "forward+backward", "fwd+bwd+AdamW")


def _jax_phases(plain) -> dict:
    """run(n) functions for the JAX phases and the minimal step, state carried along."""
    mcfg, batch, cfg = plain.mcfg, plain.batch, plain.cfg
    tx = optax.adamw(cfg.lr, b2=cfg.adam_beta2, weight_decay=cfg.weight_decay)

    def loss(p, b):
        return gpt.loss(gpt.apply(p, b, mcfg), b, mcfg)[0]

    def step(p, o, b):
        value, grads = jax.value_and_grad(loss)(p, b)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, value

    forward, forward_backward, minimal = (jax.jit(loss), jax.jit(jax.value_and_grad(loss)),
                                          jax.jit(step))
    params = plain.params
    state = {"minimal": (params, tx.init(params))}

    def calls(fn):
        def run(n):
            out = None
            for _ in range(n):
                out = fn(params, batch)
            jax.block_until_ready(out)
        return run

    def run_minimal(n):
        p, o = state["minimal"]
        for _ in range(n):
            p, o, _ = minimal(p, o, batch)
        jax.block_until_ready((p, o))
        state["minimal"] = (p, o)

    return {"forward": calls(forward), "forward+backward": calls(forward_backward),
            "fwd+bwd+AdamW": run_minimal}


def _torch_phases(plain, threads: int) -> dict:
    model = torch_gpt.load_jax_params(torch_gpt.TorchGPT(plain.mcfg),
                                      jax.device_get(plain.params))
    step = torch_gpt.make_train_step(model, plain.cfg.lr, plain.cfg.weight_decay)
    x = torch_gpt.as_tokens(jax.device_get(plain.batch["x"]))
    y = torch_gpt.as_tokens(jax.device_get(plain.batch["y"]))

    def forward():
        return model(x, y)  # with the autograd graph, as a training forward builds it

    def forward_backward():
        model.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        return loss

    def repeat(fn):
        def run(n):
            torch.set_num_threads(threads)
            for _ in range(n):
                loss = fn()
            loss.item()
        return run

    return {"forward": repeat(forward), "forward+backward": repeat(forward_backward),
            "fwd+bwd+AdamW": repeat(lambda: step(x, y))}


def _faster_torch_threads(plain, cores: int) -> int:
    """1 or ``cores``: whichever runs three torch steps faster (after one warm-up step)."""
    best, best_s = 1, float("inf")
    for threads in sorted({1, cores}):
        run = _torch_phases(plain, threads)["fwd+bwd+AdamW"]
        run(1)
        t0 = time.perf_counter()
        run(3)
        if time.perf_counter() - t0 < best_s:
            best, best_s = threads, time.perf_counter() - t0
    return best


def phase_rows(plain, repeats: int, block_seconds: float) -> list[dict]:
    """The rows in the module docstring for a warm plain (uninstrumented) GPT ``StepRunner``."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} invalid; allowed: a positive integer")
    n_cores = cores()
    saved = torch.get_num_threads()
    try:
        threads = _faster_torch_threads(plain, n_cores)
        runs = {f"jax {k}": f for k, f in _jax_phases(plain).items()}
        runs.update({f"torch {k}": f for k, f in _torch_phases(plain, threads).items()})
        runs["jax engine step"] = plain.run
        n = {}
        for k, run in runs.items():
            run(2)
            n[k] = calibrate(run, block_seconds)
        sec = time_alternating(runs, n, repeats)
    finally:
        torch.set_num_threads(saved)
    ms = {k: 1e3 * s for k, s in sec.items()}
    rows = []
    for phase in PHASES:
        j, t = ms[f"jax {phase}"], ms[f"torch {phase}"]
        rows.append(row(f"GPT-nano {phase} JAX vs PyTorch [{plain.label}]", 1e3 / j, "1/s",
                        f"torch {torch.__version__} eager", 1e3 / t, None,
                        f"JAX {j:.1f} ms ({n_cores} XLA threads), torch {t:.1f} ms ({threads} "
                        f"thr); {repeats} blocks, median"))
    derived = {
        side: (ms[f"{side} forward+backward"] - ms[f"{side} forward"],
               ms[f"{side} fwd+bwd+AdamW"] - ms[f"{side} forward+backward"])
        for side in ("jax", "torch")}
    note = "; ".join(f"{side} backward ≈ {b:.1f} ms, update ≈ {u:.1f} ms"
                     for side, (b, u) in derived.items())
    rows[-1]["note"] += f"; derived: {note}"
    e, m = ms["jax engine step"], ms["jax fwd+bwd+AdamW"]
    rows.append(row(f"JAX engine step vs minimal step [{plain.label}]", 1e3 / e, "1/s",
                    "loss, grad, AdamW only", 1e3 / m, None,
                    f"engine {e:.1f} ms, minimal {m:.1f} ms: accuracy, entropy, grad norm, "
                    f"lr and finiteness cost {e - m:+.1f} ms"))
    return rows


__all__ = ["PHASES", "phase_rows"]
