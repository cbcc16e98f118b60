"""Issue 22, train-side faults that lose or mix data: the run-directory lock, atomic
writes of every file a run writes, signals from the first step to the summary, a damaged
config.json recovered without deleting anything, a full disk, and the checkpoint
cadence's step bound. Each test fails on the engine before these fixes."""

import errno
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from driftlab import atomic_io
from driftlab.cli import main
from driftlab.models.engine import checkpoint, checkpointer, run_dir
from driftlab.models.engine.train import TrainConfig, train

BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", steps=6, batch_size=8,
            lr=0.05, optimizer="momentum", log_every=2, eval_batches=1, progress=False)
ARGS = ["--steps", "6", "--batch-size", "8", "--lr", "0.05", "--optimizer", "momentum",
        "--log-every", "2", "--eval-batches", "1", "--no-progress"]


def _hold_lock(out, pid):
    out.mkdir(parents=True, exist_ok=True)
    (out / run_dir.LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))


def test_a_run_directory_in_use_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _hold_lock(out, holder.pid)
        assert main(["train", "--out", str(out), *ARGS]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "in use by another run" in err
        assert str(holder.pid) in err and not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", "--out", str(out), *ARGS]) == 0  # its process is gone: taken over
    assert not (out / run_dir.LOCK_FILE).exists()  # released at the end


def test_every_file_a_run_writes_goes_through_atomic_io(tmp_path, monkeypatch):
    written = []
    real = atomic_io.write_bytes
    monkeypatch.setattr(atomic_io, "write_bytes",
                        lambda path, data: written.append(os.path.basename(path)) or real(path, data))
    out = tmp_path / "run"
    train(TrainConfig(**BASE, out=str(out)))
    assert {"config.json", "summary.json"} <= set(written)
    assert any(name.startswith("checkpoint.npz") for name in written)
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".new"))]


def test_a_full_disk_mid_flush_leaves_whole_lines(tmp_path, monkeypatch):
    from driftlab.models.engine import writers

    path = tmp_path / "metrics.jsonl"
    w = writers.JsonlWriter(path)
    w.write({"step": 0})
    w.flush()
    real_write = os.write

    def short(fd, data):  # the disk fills after half of the bytes
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(writers.os, "write", short)
    w.write({"step": 1, "loss": 0.5})
    with pytest.raises(atomic_io.DiskFullError, match="metrics.jsonl"):
        w.flush()
    assert path.read_text() == '{"step": 0}\n'


def test_a_full_disk_is_one_line_exit_2_without_temp_files(tmp_path, capsys, monkeypatch):
    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no space left" in err and "bytes needed" in err
    assert str(out) in err
    assert not [p for p in out.iterdir() if p.name.endswith((".tmp", ".new"))]


SIGNAL_IN_VALIDATION = """
import os, signal, sys
import driftlab.models.data.images as images
from driftlab.cli import main
real = images.load_images
def patched(source, seed, **kw):
    ds = real(source, seed, **kw)
    def sample(split, step, batch_size, seed_):
        if split == "val":
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        return ds.sample(split, step, batch_size, seed_)
    return type(ds)(sample=sample, meta=ds.meta, sample_steps=ds.sample_steps)
images.load_images = patched
sys.exit(main(["train", "--out", sys.argv[2]] + sys.argv[3:]))
"""


@pytest.mark.parametrize("sig, rc", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_during_the_final_validation_leaves_a_resumable_run(tmp_path, sig, rc):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "DRIFTLAB_"))}
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_VALIDATION, sig, str(out), *ARGS],
                          capture_output=True, text=True, timeout=240,
                          env={**env, "JAX_PLATFORMS": "cpu"})
    err = proc.stderr.strip()
    assert proc.returncode == rc, err[-2000:]
    assert len(err.splitlines()) == 1 and "--resume" in err and "Traceback" not in err
    assert not (out / "summary.json").exists()
    with np.load(out / checkpoint.FILENAME, allow_pickle=False) as z:
        assert int(z["step"]) == 6
    done = train(TrainConfig(**BASE, out=str(out), resume=True))
    assert done["status"] == "ok" and done["resumed_from"] == 6


def test_a_damaged_config_is_recovered_from_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    train(TrainConfig(**{**BASE, "act": "gelu"}, out=str(out)), stop_at=4)
    (out / "config.json").write_text('{"train": {"arch": "ml')  # torn by a crash
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" not in err and "--steps" in err
    assert checkpoint.exists(out / checkpoint.FILENAME)  # nothing deleted
    assert main(["train", "--out", str(out), "--resume", "--steps", "6", "--no-progress",
                 "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["act"] == "gelu" and summary["resumed_from"] == 4 and summary["steps"] == 6
    assert "recovered from the checkpoint" in captured.err and "--overwrite" not in captured.err


def test_checkpoint_cadence_is_bounded_in_steps_by_default(tmp_path, monkeypatch):
    assert checkpointer.STEP_BOUND <= 1000 and TrainConfig().checkpoint_every == 0
    saved = []
    real = checkpoint.save
    monkeypatch.setattr(checkpoint, "save",
                        lambda path, p, o, step, *a, **k: saved.append(step) or real(path, p, o, step, *a, **k))
    monkeypatch.setattr(checkpointer, "STEP_BOUND", 2)
    train(TrainConfig(**{**BASE, "steps": 7}, out=str(tmp_path / "run")))
    assert saved == [2, 4, 6, 7]  # the wall-time cadence (10 min) alone would save only 7
