"""One member of models/measure/trajectory.py's vmapped seed ensemble is the engine's run.

The ensemble reuses the engine's init (fold_in(PRNGKey(seed), 0)), data (arch.data(…, seed)),
batch stream (ds.sample("train", t, B, seed)), loss and optimizer (models/engine/optim.py), so after a
few steps its parameters must equal ``models.train.train``'s for the same seed and config.
The engine returns per-matrix statistics of its final parameters (mean, std, frac_neg) and the
last step's loss; those are compared, to float32 rounding (the vmapped and the single program
may sum in a different order).
"""

import jax
import numpy as np
import pytest

from driftlab.models.arch.instrument import weight_stats
from driftlab.models.engine.train import TrainConfig, train
from driftlab.models.measure import trajectory as mt


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_member_equals_engine_run(optimizer):
    seed, steps, lr = 3, 4, 0.05
    spec = mt.TrajectorySpec(arch="mlp", optimizer=optimizer, lr=lr, steps=steps, seeds=2,
                             predict=False)
    _, out = mt.train_ensemble(spec, seeds=[seed, seed + 1])
    first = jax.tree_util.tree_map(lambda x: x[0], out["final_params"])
    mine = {k: {s: float(v) for s, v in d.items()} for k, d in weight_stats(first).items()}
    summary = train(TrainConfig(arch="mlp", optimizer=optimizer, lr=lr, steps=steps, seed=seed,
                                out=None, progress=False, eval_batches=1))
    for path, stats in mine.items():
        eng = summary["weights"][path]
        # tol: float32: the trajectory engine and train() run the same steps as different programs (mean ≈ 0: absolute)
        np.testing.assert_allclose(stats["mean"], eng["mean"], rtol=0, atol=1e-7)
        # tol: the same float32 steps in two programs, relative
        np.testing.assert_allclose(stats["std"], eng["std"], rtol=1e-6)
        assert stats["frac_neg"] == eng["frac_neg"]
    # tol: the same float32 steps in two programs, relative
    np.testing.assert_allclose(out["loss"][0, -1], summary["final_loss"], rtol=1e-6)
    # and the two members differ (the seed reaches init, data and batches)
    second = jax.tree_util.tree_map(lambda x: x[1], out["final_params"])
    assert float(weight_stats(second)["layer1/w"]["mean"]) != mine["layer1/w"]["mean"]
