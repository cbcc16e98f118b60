"""Checkpoints: exact resume after an interruption; a non-finite loss keeps the last good one."""

import json

import numpy as np
import pytest

from driftlab.models.arch import params as P
from driftlab.models.engine.train import NonFiniteLossError, TrainConfig, train

# Shared by the engine tests so the compiled step is reused within one pytest process.
BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", steps=8, batch_size=8,
            lr=0.05, optimizer="momentum", schedule="cosine", warmup_steps=2, grad_clip=1.0,
            log_every=2, eval_batches=1, progress=False)


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = train(TrainConfig(**BASE, out=str(full_dir)))
    part = train(TrainConfig(**BASE, out=str(cut_dir), checkpoint_every=3), stop_at=5)
    assert part["status"] == "stopped" and part["steps"] == 5
    assert int(_arrays(cut_dir / "checkpoint.npz")["step"]) == 5
    resumed = train(TrainConfig(**BASE, out=str(cut_dir), checkpoint_every=3, resume=True))
    assert resumed["resumed_from"] == 5 and resumed["steps"] == 8 and resumed["status"] == "ok"

    a, b = _arrays(full_dir / "checkpoint.npz"), _arrays(cut_dir / "checkpoint.npz")
    assert set(a) == set(b) and int(a["step"]) == 8
    assert any(k.startswith("opt/") for k in a)  # momentum buffers and step count saved
    for k in a:
        if k != "meta":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert resumed["final_loss"] == full["final_loss"]
    assert resumed["layers"] == full["layers"]
    # The metrics log of the resumed run reads as one run.
    ra, rb = _records(full_dir), _records(cut_dir)
    assert [r["step"] for r in ra] == [0, 2, 4, 6, 7] == [r["step"] for r in rb]
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    assert not list(cut_dir.glob("*.tmp"))
    # Resuming a finished run trains no further.
    again = train(TrainConfig(**BASE, out=str(cut_dir), resume=True))
    assert again["steps"] == 8 and again["final_loss"] == full["final_loss"]


def test_checkpoint_from_another_run_is_refused(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**BASE, out=str(out)), stop_at=2)
    with pytest.raises(ValueError, match=r"checkpoint\.npz.*different run.*seed"):
        train(TrainConfig(**{**BASE, "seed": 1}, out=str(out), resume=True))
    (out / "checkpoint.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"checkpoint\.npz.*unreadable"):
        train(TrainConfig(**BASE, out=str(out), resume=True))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import driftlab.models.data.images as images

    real = images.load_images

    def poisoned(source, seed, **kw):
        ds = real(source, seed, **kw)

        def sample(split, step, batch_size, seed_):
            batch = ds.sample(split, step, batch_size, seed_)
            if split == "train" and step >= 5:
                batch["x"][0, 0, 0, 0] = np.nan
            return batch

        return type(ds)(sample=sample, meta=ds.meta)

    monkeypatch.setattr(images, "load_images", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="step 5.*last good checkpoint: step 4") as err:
        train(TrainConfig(**BASE, out=str(out), checkpoint_every=2))
    assert err.value.step == 5 and err.value.checkpoint_step == 4
    saved = _arrays(out / "checkpoint.npz")
    assert int(saved["step"]) == 4
    assert all(np.isfinite(v).all() for k, v in saved.items() if k.startswith(("params/", "opt/")))
    assert _records(out)[-1]["event"] == "non_finite"


def test_huge_learning_rate_stops_cleanly(tmp_path):
    out = tmp_path / "lr"
    cfg = TrainConfig(**{**BASE, "lr": 1e6, "optimizer": "sgd", "grad_clip": None,
                         "schedule": "constant", "warmup_steps": 0, "steps": 20},
                      out=str(out), checkpoint_every=1)
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg)
    saved = _arrays(out / "checkpoint.npz")
    assert int(saved["step"]) == err.value.checkpoint_step <= err.value.step
    assert all(np.isfinite(v).all() for k, v in saved.items() if k.startswith("params/"))


def test_flatten_roundtrip():
    tree = {"b": {"w": 1, "z": {"q": 2}}, "a": 3}
    flat = P.flatten_dict(tree)
    assert list(flat) == ["a", "b/w", "b/z/q"]
    assert P.unflatten_dict(flat) == tree


def test_bfloat16_keeps_float32_master_weights(tmp_path):
    fp32 = _records_of(train(TrainConfig(**BASE, out=str(tmp_path / "f32")), stop_at=2),
                       tmp_path / "f32")
    bf16 = _records_of(train(TrainConfig(**{**BASE, "dtype": "bfloat16"},
                                         out=str(tmp_path / "bf16")), stop_at=2),
                       tmp_path / "bf16")
    saved = _arrays(tmp_path / "bf16" / "checkpoint.npz")
    assert all(v.dtype == np.float32 for k, v in saved.items() if k.startswith("params/"))
    # Same trajectory up to bfloat16 rounding, but really computed in lower precision.
    # The helper's bfloat16 'ops' bound (2ε rel + 2ε·|b| ≈ 3%) would be looser than this.
    # tol: 2%: a few bfloat16 roundings (ε = 2^-7 ≈ 0.8%) in the forward pass of the loss
    assert bf16[0]["loss"] == pytest.approx(fp32[0]["loss"], rel=2e-2)
    assert bf16[0]["loss"] != fp32[0]["loss"]


def _records_of(summary, out):
    assert summary["steps"] == 2
    return _records(out)
