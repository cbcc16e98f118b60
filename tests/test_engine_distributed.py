"""Data parallelism: 4 virtual CPU devices, and two processes joined by jax.distributed,
give the same training losses as one device."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from driftlab.models.engine.train import TrainConfig, train

# Matches BASE in test_engine_checkpoint.py (shared compiled step); 3 steps suffice here.
BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", steps=8, batch_size=8,
            lr=0.05, optimizer="momentum", schedule="cosine", warmup_steps=2, grad_clip=1.0,
            log_every=2, eval_batches=1, progress=False)

SCRIPT = """
import json, sys
from driftlab.models.engine.train import TrainConfig, train
base = json.loads(sys.argv[1])
out = sys.argv[2] or None
s = train(TrainConfig(**base, out=out), stop_at=3)
result = {"final_loss": s["final_loss"], "val_loss": s["val_loss"], "n_devices": s["n_devices"],
          "n_processes": s["n_processes"],
          "means": {k: v["mean"] for k, v in s["weights"].items()}}
if len(sys.argv) > 3:  # also check the divisibility error
    try:
        train(TrainConfig(**{**base, "batch_size": 6}), stop_at=1)
    except ValueError as err:
        result["error"] = str(err)
print("RESULT " + json.dumps(result))
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XLA_FLAGS", "DRIFTLAB_", "SLURM_", "TPU_"))}
    env.update(JAX_PLATFORMS="cpu", **extra)
    return env


def _result(stdout: str) -> dict:
    lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, stdout
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def single():
    s = train(TrainConfig(**BASE), stop_at=3)
    return {"final_loss": s["final_loss"], "val_loss": s["val_loss"],
            "means": {k: v["mean"] for k, v in s["weights"].items()}}


def _assert_close(a, b):
    # Tighter than the helper's float32 'reduction' 2^10 ε.
    # tol: float32 losses after 3 steps whose gradients are all-reduced in another sum order
    assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-5)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)  # tol: the same
    for k in b["means"]:
        # tol: float32 weight means (≈ 0, so absolute) after those 3 all-reduced steps
        assert a["means"][k] == pytest.approx(b["means"][k], abs=1e-6)


def test_four_virtual_devices_match_one(single, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(BASE), "", "check"], capture_output=True,
        text=True, timeout=240, cwd=tmp_path,
        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _result(proc.stdout)
    assert res["n_devices"] == 4
    _assert_close(res, single)
    assert "batch_size=6" in res["error"] and "divisible" in res["error"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed(single, tmp_path):
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-c", SCRIPT, json.dumps(BASE), str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env=_env(DRIFTLAB_COORDINATOR=f"127.0.0.1:{port}", DRIFTLAB_NUM_PROCESSES="2",
                 DRIFTLAB_PROCESS_ID=str(i))) for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=240))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, outs):
        if p.returncode != 0:
            low = stderr.lower()
            if "unimplemented" in low or "not supported" in low or "not implemented" in low:
                pytest.skip(f"multi-process CPU collectives unavailable: {stderr[-500:]}")
            raise AssertionError(stderr[-3000:])
    results = [_result(stdout) for stdout, _ in outs]
    for res in results:
        assert res["n_processes"] == 2 and res["n_devices"] == 2
        _assert_close(res, single)
    assert results[0]["final_loss"] == results[1]["final_loss"]
    # Only process 0 writes the run directory; its checkpoint holds the replicated params.
    with np.load(tmp_path / "run" / "checkpoint.npz", allow_pickle=False) as z:
        assert int(z["step"]) == 3
