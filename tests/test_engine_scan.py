"""k plain steps per dispatch (issue 34): between logged steps the loop runs the plain steps
as one ``lax.scan`` program. The records and the final state equal one step per dispatch
bit for bit, and the non-finite guard still names the exact bad step inside a chunk."""

import json

import numpy as np
import pytest

from driftlab.models.engine import train as engine
from driftlab.models.engine.train import (NonFiniteLossError, TrainConfig, plain_run, train,
                                          train_ensemble)

BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", batch_size=8, lr=0.05,
            optimizer="adamw", eval_batches=1, progress=False)


class _Ckpt:
    def __init__(self, every):
        self.path, self._every = ("x" if every else None), every

    def every(self):
        return self._every


class _Hooks:
    def __init__(self, steps=()):
        self.steps = set(steps)

    def wants(self, done):
        return done in self.steps


@pytest.mark.parametrize("step,end,log_every,every,hook,k", [
    (0, 30, 10, 0, (), 0),  # a logged step
    (1, 30, 10, 0, (), 8),  # steps 1..9 plain: a power of two, at most SCAN_STEPS
    (9, 30, 10, 0, (), 1),  # step 10 is logged
    (5, 30, 10, 0, (), 4),  # 5..9
    (1, 30, 10, 4, (), 2),  # a checkpoint after step 3 (done = 4): chunk 1..3 -> 2 steps
    (3, 30, 10, 4, (), 1),
    (11, 30, 10, 0, (14,), 2),  # a hook after 13 steps: 11..13 -> 2
    (21, 25, 10, 0, (), 2),  # step 24 is the last one, logged: 21..23 -> 2
    (1, 3, 100, 0, (), 2),  # stop_at 3: 1..2
])
def test_plain_run_stops_before_every_sync_point(step, end, log_every, every, hook, k):
    cfg = TrainConfig(**BASE, steps=25, log_every=log_every)
    assert plain_run(step, end, cfg, _Ckpt(every), _Hooks(hook)) == k


def _run(tmp_path, scan, monkeypatch, ensemble=False, **kw):
    monkeypatch.setattr(engine, "SCAN_STEPS", scan)
    out = tmp_path / f"k{scan}"
    cfg = TrainConfig(**{**BASE, "steps": 23, "log_every": 7, "checkpoint_every": 10, **kw},
                      out=str(out))
    if ensemble:
        train_ensemble(cfg, seeds="0,3")
        dirs = [out / "seed-0", out / "seed-3"]
    else:
        train(cfg)
        dirs = [out]
    records = []
    for d in dirs:
        for line in (d / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            rec.pop("steps_per_s"), rec.pop("time")  # wall-clock fields
            records.append(rec)
    with np.load(out / "checkpoint.npz", allow_pickle=False) as z:
        return records, {k: z[k] for k in z.files}


@pytest.mark.parametrize("ensemble", [False, True], ids=["single", "ensemble"])
def test_scanned_plain_steps_equal_one_step_per_dispatch_bit_for_bit(tmp_path, monkeypatch,
                                                                     ensemble):
    one_rec, one_ckpt = _run(tmp_path, 1, monkeypatch, ensemble)
    k_rec, k_ckpt = _run(tmp_path, 8, monkeypatch, ensemble)
    assert k_rec == one_rec and len(one_rec) == (2 if ensemble else 1) * 5
    assert sorted(k_ckpt) == sorted(one_ckpt)
    for name in one_ckpt:
        np.testing.assert_array_equal(k_ckpt[name], one_ckpt[name], err_msg=name)


def test_a_nan_inside_a_scanned_chunk_names_its_step(tmp_path, monkeypatch):
    import driftlab.models.data.images as images

    real = images.load_images

    def poisoned(source, seed, **kw):
        ds = real(source, seed, **kw)

        def sample(split, step, batch_size, seed_):
            batch = ds.sample(split, step, batch_size, seed_)
            if split == "train" and step == 6:  # inside the chunk of steps 1..8
                batch["x"][0, 0, 0, 0] = np.nan
            return batch

        return type(ds)(sample=sample, meta=ds.meta, sample_steps=None)

    monkeypatch.setattr(images, "load_images", poisoned)
    monkeypatch.setattr(engine, "SCAN_STEPS", 8)
    calls = []
    real_dispatch = engine.dispatch

    def spy(s, state, *a):
        calls.append(state.step)
        return real_dispatch(s, state, *a)

    monkeypatch.setattr(engine, "dispatch", spy)
    out = tmp_path / "nan"
    cfg = TrainConfig(**{**BASE, "steps": 12, "log_every": 100}, out=str(out))
    with pytest.raises(NonFiniteLossError, match="step 6") as err:
        train(cfg)
    assert err.value.step == 6
    assert calls[:3] == [0, 1, 9]  # step 0 logged, then steps 1..8 in one program
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 6 and last["event"] == "non_finite"
