"""A seed ensemble on two CPU devices (issue 34): each device trains its own members under
lax.map (a shard_map), and each member equals the single run of its seed on one device
bit for bit: the same records and the same final parameters and optimizer state."""

import json
import os
import subprocess
import sys

import numpy as np

from driftlab.models.engine.train import TrainConfig, train

BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", batch_size=8, lr=0.05,
            optimizer="adamw", log_every=5, eval_batches=1, progress=False, steps=10)
SEEDS = (0, 1, 2, 5)  # two members per device

SCRIPT = """
import json, sys
import jax
from driftlab.models.engine import steps
from driftlab.models.engine.train import TrainConfig, train_ensemble
assert jax.device_count() == 2, jax.devices()
r = train_ensemble(TrainConfig(**json.loads(sys.argv[1]), out=sys.argv[2]), seeds=sys.argv[3])
print("RESULT " + json.dumps({"status": r["status"], "n_devices": r["members"][0]["n_devices"]}))
"""


def _records(path):
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rec.pop("steps_per_s", None), rec.pop("time", None)  # wall-clock fields
        out.append(rec)
    return out


def test_two_device_ensemble_members_equal_single_device_runs_bit_for_bit(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "DRIFTLAB_"))}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(BASE), str(tmp_path / "ens"),
         ",".join(map(str, SEEDS))], capture_output=True, text=True, timeout=600,
        env={**env, "JAX_PLATFORMS": "cpu",
             "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    assert json.loads(line[len("RESULT "):]) == {"status": "ok", "n_devices": 2}
    with np.load(tmp_path / "ens" / "checkpoint.npz", allow_pickle=False) as z:
        ens = {k: z[k] for k in z.files if k.startswith(("params/", "opt/"))}
    for i, seed in enumerate(SEEDS):
        single = tmp_path / f"s{seed}"
        train(TrainConfig(**BASE, seed=seed, out=str(single)))
        assert _records(tmp_path / "ens" / f"seed-{seed}" / "metrics.jsonl") == \
            _records(single / "metrics.jsonl")
        with np.load(single / "checkpoint.npz", allow_pickle=False) as z:
            for k in ens:
                np.testing.assert_array_equal(ens[k][i], z[k], err_msg=f"seed {seed} {k}")
