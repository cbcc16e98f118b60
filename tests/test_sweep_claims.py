"""Issue 10: concurrent sweep workers into one --out never run the same run twice."""

import dataclasses
import json
import socket
import subprocess
import sys
import threading

from driftlab.reports import run_claims as claims
from driftlab.reports.presets import get_preset
from driftlab.reports.sweep import run_one, run_sweep


def _specs():
    specs = [s for s in get_preset("drift").grid("tiny", 2)
             if s.tag_dict["arch"] == "mlp" and s.tag_dict["act"] == "relu"]
    return [s.with_config(steps=3, eval_batches=1, log_every=1) for s in specs]


def test_claim_is_exclusive_under_a_race(tmp_path):
    wins = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        wins.append(claims.try_claim(tmp_path, "run-a"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]
    claims.release(tmp_path, "run-a")
    assert claims.try_claim(tmp_path, "run-a")


def test_run_claimed_by_a_live_worker_is_left_to_it(tmp_path):
    spec = _specs()[0]
    path = claims.claim_path(tmp_path, spec.run_id)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "other-node", "pid": 1}))
    res = run_one(spec, tmp_path)
    assert res["status"] == "claimed" and res["by"] == "other-node:1"
    assert not (tmp_path / spec.run_id).exists()


def test_stale_claim_of_a_dead_local_worker_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    path = claims.claim_path(tmp_path, "run-b")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    assert claims.try_claim(tmp_path, "run-b")


def test_two_concurrent_sweeps_run_each_run_once(tmp_path):
    specs = _specs()
    out = tmp_path / "sweep"
    results, barrier = [], threading.Barrier(2)

    def worker():
        barrier.wait()
        results.append(run_sweep("drift", out=out, specs=specs, log=None))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ran = [r for res in results for r in res.ran]
    assert sorted(ran) == sorted(s.run_id for s in specs)  # each run exactly once
    for spec in specs:
        steps = [json.loads(line)["step"]
                 for line in (out / spec.run_id / "metrics.jsonl").read_text().splitlines()]
        assert steps == [0, 1, 2]
    assert not list((out / ".claims").iterdir())  # every claim released


def test_sweep_stops_after_a_signal_and_resumes(tmp_path, monkeypatch):
    import os
    import signal

    import driftlab.models.data.images as images

    real = images.load_images

    def signalling(source, seed, **kw):
        ds = real(source, seed, **kw)

        def sample(split, step, batch_size, seed_):
            if split == "train" and step == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return ds.sample(split, step, batch_size, seed_)

        return type(ds)(sample=sample, meta=ds.meta)

    specs = _specs()
    out = tmp_path / "sweep"
    monkeypatch.setattr(images, "load_images", signalling)
    # one run at a time (max_ensemble=1): in an ensemble every member would send the signal
    res = run_sweep("drift", out=out, specs=specs, log=None, max_ensemble=1)
    assert res.interrupted == "SIGTERM" and res.ran == [specs[0].run_id]  # the second never started
    assert (out / specs[0].run_id / "checkpoint.npz").exists()
    monkeypatch.setattr(images, "load_images", real)
    again = run_sweep("drift", out=out, specs=specs, log=None)
    assert again.interrupted is None and sorted(again.ran) == sorted(s.run_id for s in specs)
    steps = [json.loads(line)["step"] for line in
             (out / specs[0].run_id / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]


def test_sweep_out_under_a_file_is_refused(tmp_path, capsys):
    from driftlab.cli import main

    f = tmp_path / "file"
    f.write_text("x")
    assert main(["sweep", "drift", "--out", str(f / "sub")]) == 2
    assert "lies under the file" in capsys.readouterr().err


# ------------------------------------------- issue 32: an incomplete grid is never "done"

def test_a_claim_whose_worker_dies_mid_sweep_is_taken_over_at_the_end(tmp_path, monkeypatch):
    """Worker B meets run 0 claimed by a live worker A, runs run 1, and A dies meanwhile:
    B takes run 0 over before it ends, so the grid is complete. A claim still held by a
    live worker at the end leaves the run unfinished, named in the result."""
    import driftlab.reports.sweep as sweep

    specs = _specs()
    out = tmp_path / "sweep"
    worker_a = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        path = claims.claim_path(out, specs[0].run_id)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"host": socket.gethostname(), "pid": worker_a.pid}))
        real = sweep.run_group

        def group_then_a_dies(group, out_):
            res = real(group, out_)
            if group[0].run_id == specs[0].run_id:
                assert res[0]["status"] == "claimed"
                worker_a.kill()
                worker_a.wait()
            return res

        monkeypatch.setattr(sweep, "run_group", group_then_a_dies)
        res = run_sweep("drift", out=out, specs=specs, log=None, max_ensemble=1)
        assert sorted(res.ran) == sorted(s.run_id for s in specs)
        assert res.unfinished == [] and res.skipped == []
    finally:
        worker_a.kill()
        worker_a.wait()
    # A live holder (another host: never stale) at the end: unfinished, named with it.
    monkeypatch.setattr(sweep, "run_group", real)
    out2 = tmp_path / "sweep2"
    path = claims.claim_path(out2, specs[1].run_id)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "other-node", "pid": 1}))
    res = run_sweep("drift", out=out2, specs=specs, log=None)
    assert res.unfinished == [specs[1].run_id]
    text = sweep.unfinished_text(res)
    assert specs[1].run_id in text and "other-node:1" in text and "1 of 2" in text


def test_sweep_command_exits_1_naming_unfinished_runs(tmp_path, monkeypatch, capsys):
    """`driftlab sweep` never ends "N ran, M skipped" with exit 0 over a grid with holes."""
    import driftlab.reports.sweep as sweep
    from driftlab.cli import main

    def fake(name, **kw):
        return sweep.SweepResult(name, str(kw["out"]), 4, 4, ["a", "b"], ["c"],
                                 str(kw["out"] / "summary.csv"), 1.0, None, ["run-d"])

    monkeypatch.setattr(sweep, "run_sweep", fake)
    assert main(["sweep", "drift", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "grid incomplete" in err and "run-d" in err
    monkeypatch.setattr(sweep, "run_sweep", lambda name, **kw: dataclasses.replace(
        fake(name, **kw), unfinished=[]))
    assert main(["sweep", "drift", "--out", str(tmp_path)]) == 0
