"""The five built-in architectures through the generic path (issue 33): models/builtin_adapter.py
exposes each as a user model file; ``driftlab inspect`` must give the built-in path's numbers
at the same seeds — taps, traced readers (models/readers.py), E[g|p>0] per seed in the
engine's units (montecarlo/trajectory.Problem.taps_q, what training logs) and the first SGD
step of every reader (the engine's optimizer, models/optim.py) — and a planted error of
0.1% in any of them is caught by the same comparison."""

import jax
import numpy as np
import optax
import pytest

from driftlab.models.arch import user_model as um
from driftlab.models.arch.builtin_adapter import adapter
from driftlab.models.arch.params import flatten_dict
from driftlab.models.engine.optim import make_optimizer
from driftlab.models.arch.readers import reading_matrices
from driftlab.models.measure import trajectory as mt
from driftlab.reports.inspect import InspectSpec, measure, per_layer

SEEDS, N, LR = 2, 4, 0.01
RTOL = 1e-5


def _builtin(arch, cfg, seed):
    """The built-in path at seed s: engine init and step-0 batch, the logged E[g|p>0] per tap
    and the first SGD step's change of every reader's mean."""
    _, ds = arch.data("synthetic", cfg, seed)
    batch = ds.sample("train", 0, N, seed)
    params = mt.engine_init(arch, cfg, seed)
    prob = mt.Problem(arch, cfg, batch, 0.0)
    gpos = {k: float(v) for k, v in prob.taps_q(params, {k: np.asarray(v) for k, v in batch.items()}).items()}
    tx = make_optimizer("sgd", optax.constant_schedule(LR))
    g = jax.grad(prob.loss)(params, batch)
    upd, _ = tx.update(g, tx.init(params), params)
    new = flatten_dict(optax.apply_updates(params, upd))
    old = flatten_dict(params)
    step = {w: float(np.mean(np.asarray(new[w], np.float64)) - np.mean(np.asarray(old[w], np.float64)))
            for w in old}
    return gpos, step, params, batch


@pytest.mark.parametrize("name", ["mlp", "resnet", "vit", "gpt", "mpsenet"])
def test_builtin_through_generic_path(name):
    a = adapter(name)
    program = um.validate(um.load(a), N)
    meas = measure(program, InspectSpec(seeds=SEEDS, samples=N, lr=LR, drift_steps=1, pairs=1))
    taps = [t.name for t in program.taps]
    for s in range(SEEDS):
        gpos, step, params, batch = _builtin(a.arch, a.cfg, s)
        assert sorted(taps) == sorted(gpos)
        if s == 0:  # the traced readers are the built-in walk's (models/readers.py)
            built = reading_matrices(a.arch, a.cfg, params, batch)
            assert {t.name: set(t.readers) for t in program.taps} == built
        generic = np.array([meas.A[t][0, s] / meas.N[t][0, s] for t in taps])
        want = np.array([gpos[t] for t in taps])
        # float32 sums of g·1[p>0] cancel (MP-SENet: E[g|p>0] ~ 1e-4 of E[|g| | p>0]), and the
        # seed-mapped program sums in another order than the built-in one: compare to 1e-5
        # of the summands' scale B·Σ|g|·1[p>0]/#(p>0) (measured gap there: ≤ 1.4e-6 of it)
        scale = np.array([meas.A_abs[t][0, s] / meas.N[t][0, s] for t in taps])
        atol = 1e-5 * scale
        # tol: float32 sums in another order (see above); RTOL for taps far from 0
        assert np.all(np.abs(generic - want) <= atol + RTOL * np.abs(want)), (generic, want, atol)
        k = int(np.argmax(np.abs(want)))  # a planted error of 3·atol (or 0.1%) is caught
        planted = generic.copy()
        planted[k] += max(3 * atol[k], 1e-3 * abs(want[k]))
        # tol: planted
        assert not np.all(np.abs(planted - want) <= atol + RTOL * np.abs(want))
        for w, m in meas.means.items():
            d = m[1, s] - m[0, s]
            # float32 means: an exactly-zero mean step (a CE head) is roundoff, ~1e-9
            # tol: float32 means of ~1e4 entries, relative 1e-3 of a mean step; 1e-7 absolute for a zero step
            assert d == pytest.approx(step[w], rel=1e-3, abs=1e-7), w
            if abs(step[w]) > 1e-5:  # a planted 1% error is caught
                assert d * 1.01 != pytest.approx(step[w], rel=1e-3, abs=1e-7), w  # tol: planted
    if name in ("mlp", "gpt"):  # the per-layer prediction is per_layer.per_seed on the built-in
        tap = program.taps[0]
        row = per_layer(program, InspectSpec(seeds=SEEDS, samples=N, probes=1), meas, tap)
        assert row["applies"], row
        # tol: the same per_seed computation on the same arrays; float32 reduction order
        np.testing.assert_allclose(row["per_seed"]["measured"],
                                   [meas.A[tap.name][0, s] / meas.N[tap.name][0, s] for s in range(SEEDS)],
                                   rtol=RTOL)
