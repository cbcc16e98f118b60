"""Issue 32: no command reports success on missing work, nothing is mixed silently, and bad
input gets one line naming what is wrong. Faults are planted in materialized records
(reports/reduced/records), so no test here trains."""

import json
import os
from pathlib import Path

import pytest

import driftlab
from driftlab.cli import main
from driftlab.reports import records

REDUCED = Path(__file__).resolve().parents[1] / "reports" / "reduced"


def _record(preset):
    path = REDUCED / records.RECORDS_DIR / f"{preset}.jsonl"
    return json.loads(path.read_text().splitlines()[0])


def _runs(tmp_path, presets=("drift",)):
    """Minimal finished run directories of one record per preset; {preset: run dir}."""
    recs = [_record(p) for p in presets]
    root = records.materialize(recs, tmp_path / "runs")
    return root, {r["preset"]: root / r["preset"] / r["run_id"] for r in recs}


def _cut_last_line(path: Path) -> int:
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    return len(lines)


# ------------------------------------------------ class 1: a cut JSONL line is refused

@pytest.mark.parametrize("preset, name", [("drift", "metrics.jsonl"),
                                          ("sparsity_law", "law.jsonl")])
def test_every_reader_refuses_a_cut_last_line(preset, name, tmp_path, capsys):
    """report, records and load_run refuse a cut last line of metrics.jsonl / law.jsonl,
    naming the file and the line (one reader, driftlab/jsonl.py), where the report used to
    drop it and show an earlier step's value under the last step's label."""
    root, dirs = _runs(tmp_path, (preset,))
    n = _cut_last_line(dirs[preset] / name)
    where = f"{dirs[preset] / name}: line {n}"
    assert main(["report", str(root), "--out", str(tmp_path / "rep"), "--no-theory"]) == 2
    assert where in capsys.readouterr().err
    assert main(["records", str(root), "--out", str(tmp_path / "rec")]) == 2
    assert where in capsys.readouterr().err
    if name == "metrics.jsonl":
        with pytest.raises(ValueError, match="line"):
            driftlab.load_run(dirs[preset])


def test_a_damaged_line_of_the_records_is_refused(tmp_path, capsys):
    root, _ = _runs(tmp_path)
    assert main(["records", str(root), "--out", str(tmp_path / records.RECORDS_DIR)]) == 0
    capsys.readouterr()
    f = tmp_path / records.RECORDS_DIR / "drift.jsonl"
    n = _cut_last_line(f)
    assert main(["report", "--from", str(tmp_path), "--out", str(tmp_path / "rep"),
                 "--no-theory"]) == 2
    assert f"{f}: line {n}" in capsys.readouterr().err


# ---------------------------- class 3 of the issue: a write replaces data it does not own

def test_records_needs_out_and_never_mixes_scales_or_plans(tmp_path, capsys, monkeypatch):
    """`driftlab records RUN_DIR` has no default --out (it wrote into the checked-in
    reports/reduced/records); records of another scale or plan tag in --out are refused
    unless --overwrite; runs of two scales are never exported into one directory."""
    monkeypatch.chdir(tmp_path)
    root, dirs = _runs(tmp_path, ("drift",))
    with pytest.raises(SystemExit) as exc:
        main(["records", str(root)])
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
    out = tmp_path / "rec"
    assert main(["records", str(root), "--out", str(out)]) == 0
    before = (out / "drift.jsonl").read_bytes()
    # the same runs at another scale (a tiny run) and under a plan tag: refused, untouched
    for key, value in (("size", "tiny"), ("plan", "abc123")):
        other = _record("drift")
        other["tags"][key] = value
        other["run_id"] += f"-{key}"
        other_root = records.materialize([other], tmp_path / f"other-{key}")
        assert main(["records", str(other_root), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--overwrite" in err and (f"plan {value}" in err or f"scale {value}" in err)
        assert (out / "drift.jsonl").read_bytes() == before
        # both lots in one export: refused too
        both = tmp_path / f"both-{key}"
        records.materialize([_record("drift")], both)
        records.materialize([other], both / "x")
        assert main(["records", str(both), "--out", str(tmp_path / f"new-{key}")]) == 2
        assert "mix" in capsys.readouterr().err
    assert main(["records", str(other_root), "--out", str(out), "--overwrite"]) == 0
    assert {records.lot(r) for r in records.load(out)} == {("cpu", "abc123")}


def test_records_of_no_runs_exits_nonzero(tmp_path, capsys):
    (tmp_path / "train-run").mkdir()
    (tmp_path / "train-run" / "config.json").write_text("{}")
    assert main(["records", str(tmp_path), "--out", str(tmp_path / "rec")]) == 2
    assert "no finished sweep run" in capsys.readouterr().err


# ------------------------------------------ class 5 of the issue: bad input, one line

@pytest.mark.parametrize("planted, field", [
    ({}, "'run_id' missing"),
    ("no_summary", "'summary' missing"),
    ("string_loss", "'summary.final_loss' is '0.5', not a number"),
    ("string_status", "'summary.status' is 3"),
    ("list_tags", "'tags' is [], not an object"),
])
def test_a_records_line_lacking_or_mistyping_a_field_names_file_line_field(
        planted, field, tmp_path, capsys):
    rec = _record("drift")
    if planted == "no_summary":
        del rec["summary"]
    elif planted == "string_loss":
        rec["summary"]["final_loss"] = "0.5"
    elif planted == "string_status":
        rec["summary"]["status"] = 3
    elif planted == "list_tags":
        rec["tags"] = []
    else:
        rec = planted
    d = tmp_path / records.RECORDS_DIR
    d.mkdir()
    (d / "drift.jsonl").write_text(json.dumps(_record("drift")) + "\n" + json.dumps(rec) + "\n")
    assert main(["report", "--from", str(tmp_path), "--out", str(tmp_path / "rep"),
                 "--no-theory"]) == 2
    err = capsys.readouterr().err
    assert f"{d / 'drift.jsonl'}: line 2: field {field}" in err and len(err.splitlines()) == 1


def _bad_outs(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    return [(f, "existing file"), (f / "sub", "lies under the file"),
            (dangling, "dangling symlink"), (dangling / "sub", "dangling symlink")]


@pytest.mark.parametrize("command", ["train", "sweep", "records"])
def test_a_bad_out_is_one_line_exit_2_before_any_work(command, tmp_path, capsys, monkeypatch):
    """A file, a path under a file, a dangling symlink or an unwritable directory as --out:
    one line and exit 2 in train, sweep and records, as in report, before any work."""
    import driftlab.models.engine.run_dir as run_dir
    import driftlab.models.engine.train as engine
    import driftlab.reports.records as rec_mod

    monkeypatch.setattr(engine, "get_arch", lambda *_: pytest.fail("computation started"))
    monkeypatch.setattr(rec_mod, "export", lambda *a, **k: pytest.fail("export started"))
    root, _ = _runs(tmp_path)
    argv = {"train": ["train"], "sweep": ["sweep", "drift"], "records": ["records", str(root)]}
    cases = _bad_outs(tmp_path)
    for out, words in cases:
        assert main([*argv[command], "--out", str(out)]) == 2, out
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    # read-only: simulated (root writes to a chmod 0o555 directory)
    monkeypatch.setattr(run_dir.os, "access", lambda *_: False)
    assert main([*argv[command], "--out", str(tmp_path / "ro" / "x")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_records_refuse_two_different_runs_of_one_id(tmp_path, capsys):
    rec, other = _record("drift"), _record("drift")
    other["summary"]["final_loss"] = 9.0
    records.materialize([rec], tmp_path / "a")
    records.materialize([other], tmp_path / "b")
    assert main(["records", str(tmp_path / "a"), str(tmp_path / "b"),
                 "--out", str(tmp_path / "rec")]) == 2
    assert "two different runs" in capsys.readouterr().err


# ---------------------------------------------------------- friction: no silent no-ops

def test_report_of_no_runs_exits_2(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "rep"), "--no-theory"]) == 2
    assert "run_dirs: none given" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "rep"),
                 "--no-theory"]) == 2
    assert "no finished run" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("action", [["check"], ["plots", "--quick"],
                                    ["predict", "--loss", "mse", "--act", "relu", "--d-in",
                                     "4", "--width", "4", "--d-out", "1"]])
def test_a_negative_theory_seed_is_refused_before_any_work(action, capsys, monkeypatch, tmp_path):
    import driftlab.montecarlo.check_progress as tcli

    monkeypatch.setattr(tcli, "run_with_progress", lambda *a, **k: pytest.fail("ran checks"))
    monkeypatch.chdir(tmp_path)
    assert main(["theory", *action, "--seed", "-1"]) == 2
    assert "--seed -1 invalid" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_trajectory_sign_change_never_prints_none():
    from driftlab.theory_cli import sign_change_text

    assert sign_change_text(None, None, 100) == "none within 100 steps"
    assert sign_change_text(40, (30, None), 100) == "at step 40 (CI 30–beyond 100)"
    assert sign_change_text(40, (30, 50), 100) == "at step 40 (CI 30–50)"
    assert "None" not in sign_change_text(7, None, 100)


# ------------------- class 2 of the issue: a resume never changes what a run measures

STORED = {"arch": "mlp", "act": "relu", "steps": 5, "eps": 1e-3, "log_every": 10,
          "instrument": True, "eval_batches": 4}


@pytest.mark.parametrize("flags, field", [(["--eps", "1e-4"], "--eps"),
                                          (["--log-every", "2"], "--log-every"),
                                          (["--no-instrument"], "--no-instrument"),
                                          (["--eval-batches", "1"], "--eval-batches")])
def test_resume_refuses_a_changed_measurement_option(flags, field, tmp_path, capsys,
                                                     monkeypatch):
    """`train --resume` and driftlab.resume refuse --eps, --log-every, --no-instrument or
    --eval-batches different from the run's own, naming the option, before any work (and
    config.json is untouched)."""
    import driftlab.models.engine.train as engine

    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("training started"))
    (tmp_path / "config.json").write_text(json.dumps({"train": STORED}))
    before = (tmp_path / "config.json").read_bytes()
    assert main(["train", "--out", str(tmp_path), "--resume", *flags]) == 2
    err = capsys.readouterr().err
    assert field in err and "differs from the resumed run's" in err
    key = field[2:].replace("-", "_").replace("no_", "")
    value = {"eps": 1e-4, "log_every": 2, "instrument": False, "eval_batches": 1}[key]
    with pytest.raises(ValueError, match=field):
        driftlab.resume(tmp_path, **{key: value})
    assert (tmp_path / "config.json").read_bytes() == before


def test_resume_accepts_the_runs_own_measurement_options():
    from driftlab.models.engine.train_config import check_resume_measurement

    check_resume_measurement(STORED, {"eps": 1e-3, "log_every": 10, "instrument": True,
                                      "eval_batches": 4, "steps": 50})


# ----------------------- class 4 of the issue: a killed write leaves nothing behind

def test_stale_checkpoint_temps_are_removed_when_a_run_takes_its_directory(tmp_path, capsys):
    """SIGKILL during a checkpoint write leaves atomic_io's ``.checkpoint.npz.new.PID.TID.tmp``
    (checkpoint-sized); the next run holding the directory (a --resume) removes it. A temp
    of a live process and files of any other name are kept."""
    import subprocess
    import sys

    from driftlab.atomic_io import temp_owner, temp_path
    from driftlab.models.engine import run_dir

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        stale = tmp_path / f".checkpoint.npz.new.{dead}.140000.tmp"
        kept = tmp_path / f".checkpoint.npz.new.{live.pid}.140000.tmp"
        other = tmp_path / "notes.1.2.tmp"
        for f in (stale, kept, other):
            f.write_bytes(b"x" * 1000)
        assert temp_owner(temp_path(tmp_path / "checkpoint.npz.new").name) == os.getpid()
        assert temp_owner(stale.name) == dead and temp_owner(other.name) is None
        with run_dir.lock(tmp_path):
            pass
        assert not stale.exists() and kept.exists() and other.exists()
        assert str(stale) in capsys.readouterr().err
    finally:
        live.kill()
        live.wait()


def test_extending_a_finished_run_logs_the_steps_an_uninterrupted_run_logs(tmp_path):
    """A 4-step run (log every 2: steps 0, 2 and its last, 3) extended to 7 steps logs
    0, 2, 4, 6 like an uninterrupted 7-step run: the first run's last step 3 is not kept,
    and every record equals the uninterrupted run's (wall times aside)."""
    from driftlab.models.engine.train import TrainConfig, train

    base = dict(arch="mlp", act="relu", data="synthetic", size="tiny", batch_size=8,
                lr=0.05, optimizer="momentum", log_every=2, eval_batches=1, progress=False)
    whole, ext = tmp_path / "whole", tmp_path / "ext"
    train(TrainConfig(**base, steps=7, out=str(whole)))
    train(TrainConfig(**base, steps=4, out=str(ext)))
    train(TrainConfig(**base, steps=7, out=str(ext), resume=True))

    def records(d):
        out = []
        for line in (d / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line)
            out.append({k: v for k, v in rec.items() if k not in ("time", "steps_per_s")})
        return out

    steps = [r["step"] for r in records(ext)]
    assert steps == [r["step"] for r in records(whole)] == [0, 2, 4, 6]
    assert records(ext) == records(whole)


def test_an_ensemble_that_cannot_fit_is_refused_up_front_with_the_estimate(
        tmp_path, capsys, monkeypatch):
    """`train --seeds 0-100000` grew to 20 GB before training; now it is refused before
    any member is built, with the estimate (available memory set to 1 GB here)."""
    import driftlab.models.engine.train as engine
    import driftlab.montecarlo.memory as memory

    monkeypatch.setattr(engine, "train_ensemble", lambda *a, **k: pytest.fail("started"))
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**9)
    assert main(["train", "--seeds", "0-100000", "--out", str(tmp_path / "ens")]) == 2
    err = capsys.readouterr().err
    assert "100001 seeds need at least" in err and "1.0 GB available" in err
    assert len(err.strip().splitlines()) == 1
