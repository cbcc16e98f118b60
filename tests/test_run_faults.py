"""Issue 10, data loss: reused --out, resume without a checkpoint, fewer steps, damaged
checkpoints, wall-time checkpoints, SIGTERM/SIGINT, output locations, resume config."""

import json
import os
import signal

import numpy as np
import pytest

from driftlab.cli import main
from driftlab.models.engine.train import TrainConfig, train

BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", steps=6, batch_size=8,
            lr=0.05, optimizer="momentum", log_every=2, eval_batches=1, progress=False)


def _step(path):
    with np.load(path, allow_pickle=False) as z:
        return int(z["step"])


def test_reused_out_is_refused_unless_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**BASE, out=str(out)), stop_at=3)
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match=r"already holds a run.*--resume.*--overwrite"):
        train(TrainConfig(**{**BASE, "act": "gelu"}, out=str(out)))
    assert (out / "metrics.jsonl").read_text() == before  # nothing touched
    again = train(TrainConfig(**{**BASE, "steps": 2}, out=str(out), overwrite=True))
    assert again["steps"] == 2 and _step(out / "checkpoint.npz") == 2
    assert not (out / "checkpoint.prev.npz").exists()  # the old run's generations are gone


def test_resume_without_checkpoint_says_so(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"--resume: no checkpoint in .*--overwrite"):
        train(TrainConfig(**BASE, out=str(out), resume=True))


def test_resume_with_fewer_steps_is_rejected_and_config_kept(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**BASE, out=str(out)), stop_at=4)
    conf = (out / "config.json").read_text()
    with pytest.raises(ValueError, match=r"steps=3 invalid; allowed: at least the 4 steps"):
        train(TrainConfig(**{**BASE, "steps": 3}, out=str(out), resume=True))
    assert (out / "config.json").read_text() == conf


def test_checkpoints_by_wall_time_by_default_with_a_previous_generation(tmp_path):
    assert TrainConfig().checkpoint_minutes > 0  # on by default
    out = tmp_path / "run"
    train(TrainConfig(**BASE, out=str(out), checkpoint_minutes=1e-9), stop_at=4)
    # every step was due: the last two generations are steps 4 and 3
    assert _step(out / "checkpoint.npz") == 4 and _step(out / "checkpoint.prev.npz") == 3


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "flipped":
        i = len(data) // 3  # inside an array's payload: the zip CRC catches it
        data[i:i + 8] = bytes(b ^ 0xFF for b in data[i:i + 8])
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))


@pytest.mark.parametrize("how", ["truncated", "flipped", "random"])
def test_damaged_checkpoint_one_line_exit_2(tmp_path, capsys, how):
    out = tmp_path / "run"
    train(TrainConfig(**BASE, out=str(out)), stop_at=2)
    _damage(out / "checkpoint.npz", how)
    rc = main(["train", "--out", str(out), "--resume", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "checkpoint.npz" in err and "unreadable checkpoint" in err


def test_damaged_checkpoint_falls_back_to_previous_generation(tmp_path, capsys):
    out = tmp_path / "run"
    train(TrainConfig(**BASE, out=str(out), checkpoint_every=2), stop_at=4)
    assert _step(out / "checkpoint.prev.npz") == 2
    _damage(out / "checkpoint.npz", "truncated")
    res = train(TrainConfig(**BASE, out=str(out), resume=True))
    err = capsys.readouterr().err
    assert res["resumed_from"] == 2 and res["steps"] == 6
    assert "checkpoint.npz: unreadable checkpoint" in err and "previous generation" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_checkpoint_and_returns(tmp_path, monkeypatch, sig):
    from driftlab.models.engine import prefetch

    real_get = prefetch.Prefetcher.get

    def signalling_get(self, step):
        # the loop takes batch 3 right before dispatching step 3 (batches are sampled
        # ahead, so the sampler is no longer called at that moment)
        if step == 3:
            os.kill(os.getpid(), sig)  # as SLURM preemption / Ctrl-C would
        return real_get(self, step)

    monkeypatch.setattr(prefetch.Prefetcher, "get", signalling_get)
    out = tmp_path / "run"
    res = train(TrainConfig(**BASE, out=str(out)))
    assert res["status"] == "interrupted" and res["signal"] == signal.Signals(sig).name
    assert res["steps"] == 4 and _step(out / "checkpoint.npz") == 4
    assert signal.getsignal(sig) is not None  # handlers restored (no exception escaped)
    monkeypatch.setattr(prefetch.Prefetcher, "get", real_get)
    done = train(TrainConfig(**BASE, out=str(out), resume=True))
    assert done["resumed_from"] == 4 and done["status"] == "ok"


def test_cli_resume_takes_the_runs_own_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--act", "gelu", "--optimizer", "sgd", "--steps", "2",
                 "--batch-size", "8", "--eval-batches", "1", "--out", str(out),
                 "--no-progress", "--json"]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--steps", "4", "--no-progress",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["act"] == "gelu" and summary["resumed_from"] == 2 and summary["steps"] == 4
    conf = json.loads((out / "config.json").read_text())["train"]
    assert conf["optimizer"] == "sgd" and conf["steps"] == 4


def _one_line_exit_2(capsys, argv, pattern):
    import re

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err


def test_set_act_is_a_one_line_error(capsys):
    _one_line_exit_2(capsys, ["train", "--set", "act=gelu"], r"model_overrides.*--act")


def test_out_file_or_under_file_is_refused_before_computation(tmp_path, capsys, monkeypatch):
    import driftlab.models.engine.train as engine

    monkeypatch.setattr(engine, "get_arch", lambda *_: pytest.fail("computation started"))
    f = tmp_path / "file"
    f.write_text("x")
    _one_line_exit_2(capsys, ["train", "--out", str(f)], r"existing file")
    _one_line_exit_2(capsys, ["train", "--out", str(f / "sub")], r"lies under the file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_out_is_refused_before_computation(tmp_path, capsys, monkeypatch):
    import driftlab.models.engine.train as engine

    monkeypatch.setattr(engine, "get_arch", lambda *_: pytest.fail("computation started"))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _one_line_exit_2(capsys, ["train", "--out", str(ro / "run")], r"not writable")
    finally:
        ro.chmod(0o755)


def test_unwritable_out_is_refused_even_as_root(tmp_path, capsys, monkeypatch):
    """The same check with permissions simulated (root bypasses a chmod)."""
    import driftlab.models.engine.run_dir as run_dir

    monkeypatch.setattr(run_dir.os, "access", lambda *_: False)
    _one_line_exit_2(capsys, ["train", "--out", str(tmp_path / "run")], r"not writable")


def test_synthetic_fallback_is_said_on_stderr_and_in_the_summary(tmp_path, monkeypatch, capsys):
    """mpsenet --data embedded without installed speech falls back to synthetic signals;
    the engine says so (tested through the MLP's loader to stay fast)."""
    import driftlab.models.data.images as images

    real = images.load_images

    def fallback(source, seed, **kw):
        ds = real("synthetic", seed, **kw)
        return type(ds)(sample=ds.sample, meta={**ds.meta, "name": "embedded:synthetic-fallback"})

    monkeypatch.setattr(images, "load_images", fallback)
    out = tmp_path / "run"
    res = train(TrainConfig(**{**BASE, "steps": 1}, out=str(out)))
    assert "synthetic signals" in capsys.readouterr().err
    assert res["data"] == "embedded:synthetic-fallback"
    conf = json.loads((out / "config.json").read_text())
    assert conf["data"]["name"] == "embedded:synthetic-fallback"
