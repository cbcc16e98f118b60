"""The on-device non-finite guard: no host sync per step, and still the last good state.

A NaN planted between two sync points must be reported with its own step, the state
kept on the device must be the one before it (not a later, NaN one), and the checkpoint
on disk must be the last good one.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.engine import nonfinite
from driftlab.models.engine.train import NonFiniteLossError, TrainConfig, train
from driftlab.testing import assert_same

BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", steps=8, batch_size=8,
            lr=0.05, optimizer="momentum", schedule="cosine", warmup_steps=2, grad_clip=1.0,
            log_every=2, eval_batches=1, progress=False)


def _toy_step(params, opt_state, batch, step):
    """w ← w + x, count ← count + 1; loss = w + x (NaN when x is)."""
    new = {"w": params["w"] + batch}
    loss = new["w"].sum()
    return new, opt_state + 1, {"loss": loss}, jnp.isfinite(loss)


def test_guard_keeps_state_before_first_bad_step_across_later_steps():
    step_fn = jax.jit(nonfinite.guarded(_toy_step))
    params, opt, guard = {"w": jnp.zeros(3)}, jnp.asarray(0), nonfinite.init_guard()
    for step in range(10):
        x = jnp.full(3, jnp.nan if step in (4, 7) else 1.0)
        params, opt, _, guard = step_fn(params, opt, x, jnp.asarray(step, jnp.int32), guard)
    ok, bad_step, bad_loss = nonfinite.read_guard(guard)
    assert not ok and bad_step == 4 and np.isnan(bad_loss)
    np.testing.assert_array_equal(params["w"], np.full(3, 4.0))  # after steps 0..3
    assert int(opt) == 4


def test_guard_is_ok_and_transparent_without_nan():
    step_fn = jax.jit(nonfinite.guarded(_toy_step))
    params, opt, guard = {"w": jnp.zeros(2)}, jnp.asarray(0), nonfinite.init_guard()
    for step in range(5):
        params, opt, logs, guard = step_fn(params, opt, jnp.ones(2), jnp.asarray(step, jnp.int32), guard)
    assert_same(nonfinite.read_guard(guard), (True, -1, float("nan")))
    np.testing.assert_array_equal(params["w"], np.full(2, 5.0))


def test_nan_mid_interval_reports_its_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import driftlab.models.data.images as images

    real = images.load_images

    def poisoned(source, seed, **kw):
        ds = real(source, seed, **kw)

        def sample(split, step, batch_size, seed_):
            batch = ds.sample(split, step, batch_size, seed_)
            if split == "train" and step == 5:  # one bad batch, between sync points 3 and 7
                batch["x"][0, 0, 0, 0] = np.nan
            return batch

        return type(ds)(sample=sample, meta=ds.meta)

    monkeypatch.setattr(images, "load_images", poisoned)
    reads = []
    real_read = nonfinite.read_guard
    monkeypatch.setattr(nonfinite, "read_guard", lambda *a: reads.append(1) or real_read(*a))
    out = tmp_path / "nan"
    cfg = TrainConfig(**{**BASE, "steps": 12, "log_every": 100}, out=str(out), checkpoint_every=4)
    with pytest.raises(NonFiniteLossError, match="step 5.*last good checkpoint: step 4") as err:
        train(cfg)
    assert err.value.step == 5 and err.value.checkpoint_step == 4
    assert len(reads) == 3  # steps 0 (logged), 3 and 7 (checkpoints): not one per step
    with np.load(out / "checkpoint.npz", allow_pickle=False) as z:
        assert int(z["step"]) == 4
        assert all(np.isfinite(z[k]).all() for k in z.files if k.startswith(("params/", "opt/")))
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last == {"step": 5, "event": "non_finite", "loss": last["loss"]} and not np.isfinite(last["loss"])


def test_host_reads_the_guard_only_on_sync_steps(monkeypatch):
    reads = []
    real_read = nonfinite.read_guard
    monkeypatch.setattr(nonfinite, "read_guard", lambda *a: reads.append(1) or real_read(*a))
    summary = train(TrainConfig(**{**BASE, "steps": 20, "log_every": 10}))
    assert summary["status"] == "ok" and np.isfinite(summary["final_loss"])
    assert len(reads) == 3  # logged steps 0, 10 and the last step 19
