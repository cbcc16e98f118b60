"""Every shell command shown in README.md and docs/*.md (```bash blocks) is run here, at tiny
sizes, or is listed in SKIP with the reason; a command that is neither fails the test. The
README's Python quickstart (its ```python block) is run as written.

The commands run through the CLI in one subprocess (`driftlab.cli.main` per command, so JAX
starts once), each document's commands in order in a fresh directory of their own, so that a
`--resume` finds the run its document made before. A command too large for a test runs as its
declared tiny substitute (SUBSTITUTE): same subcommand, same options, smaller sizes.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Commands not run here, each with the reason (keep this short and true).
SKIP = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && driftlab theory check":
        "installs into a new venv (.ci/run does that); the 69 checks run in theory/tests",
    "python -m pytest": "the test suite itself",
    "driftlab theory plots --quick --out reports/theory-quick":
        "compilation-bound (35 s warm, 2 min cold); run by tests/test_theory_cli.py::test_plots_quick",
    "driftlab sweep drift --size cpu --out runs/drift & driftlab sweep drift --size cpu --out runs/drift":
        "two concurrent workers; tests/test_sweep_claims.py::test_two_concurrent_sweeps_run_each_run_once",
    "driftlab sweep spikes --size paper --executor submitit --partition gpu --out runs/spikes":
        "needs a SLURM cluster; tests/test_sweep.py::test_submitit_local_executor runs submitit locally",
    "driftlab report runs/reduced --sweep cpu --workers 2 --out reports/reduced":
        "the whole cpu scale, about an hour",
    "driftlab report runs/gpu --sweep gpu --out reports/gpu": "one H100 for ~40 minutes",
    "driftlab train --arch gpt --size paper --act clipped_relu2:50 --data /data/fineweb10B "
    "--dtype bfloat16 --batch-size 64 --optimizer adamw --lr 6e-4 --schedule cosine "
    "--warmup-steps 200 --steps 7000 --log-every 50 --checkpoint-every 500 --out runs/gpt-paper":
        "GPU at paper size on FineWeb shards",
    "driftlab bench theory": "the whole theorem suite (a minute or more)",
    # Run elsewhere already, in the form given (20-35 s each): not run twice.
    "driftlab bench mc --repeats 3": "tests/test_bench_mc.py runs it at --quick --repeats 1",
    "driftlab bench train --quick --repeats 5":
        "tests/test_bench_train.py::test_quick_bench_cli_prints_json_rows runs it at --repeats 1",
    "driftlab report --from reports/reduced --out reports/rebuilt":
        "tests/test_records.py::test_report_from_records_reproduces_the_checked_in_report",
    "driftlab sweep reports/plans/confirm-v2.json --out runs/confirm-v2":
        "the whole confirmatory sweep (411 cpu-scale runs); tests/test_confirm_plan.py checks its runs",
    "driftlab records runs/confirm-v2 --out reports/confirm-v2/records":
        "needs that sweep's runs; its records are checked in",
    "driftlab report --from reports/confirm-v2 --no-theory --out reports/confirm-v2":
        "tests/test_records.py::test_confirmatory_report_from_records_reproduces_the_checked_in_one",
}

# Commands run in a smaller form: doc command -> the command run.
SUBSTITUTE = {
    "driftlab train --arch mlp --act relu --data embedded --steps 200 --out runs/mlp-relu --json":
        "driftlab train --arch mlp --act relu --data embedded --steps 4 --out runs/mlp-relu --json",
    "driftlab train --out runs/mlp-relu --resume --steps 400":
        "driftlab train --out runs/mlp-relu --resume --steps 8",
    "driftlab train --arch gpt --act clipped_relu2:15 --data embedded --size tiny --steps 300 "
    "--out runs/gpt":
        "driftlab train --arch gpt --act clipped_relu2:15 --data embedded --size tiny --steps 3 "
        "--out runs/gpt",
    "driftlab sweep drift --size cpu --out runs/drift":
        "driftlab sweep drift --size tiny --shard 0/48 --out runs/drift",
    "driftlab sweep tradeoff --size paper --shard 3/16 --out runs/tradeoff":
        "driftlab sweep tradeoff --size tiny --shard 3/16 --out runs/tradeoff",
    "driftlab report runs/drift runs/tradeoff --out reports/mine":
        "driftlab report runs/drift runs/tradeoff --no-theory --out reports/mine",
    "driftlab theory layers --arch gpt --data embedded --probes 4 --seeds 8 --json":
        "driftlab theory layers --arch gpt --data embedded --probes 1 --seeds 2 --batch-size 4 --json",
    "driftlab bench train --ensemble 1,4,8,16": "driftlab bench train --quick --ensemble 2 --repeats 1",
}

_FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(text: str, lang: str) -> list[str]:
    """The bodies of the ```lang fenced blocks of a Markdown text."""
    out, body, current = [], [], None
    for line in text.splitlines():
        fence = _FENCE.match(line.strip())
        if fence and current is None:
            current, body = fence.group(1), []
        elif line.strip() == "```" and current is not None:
            if current == lang:
                out.append("\n".join(body))
            current = None
        elif current is not None:
            body.append(line)
    return out


def shell_commands(text: str) -> list[str]:
    """Each command of the ```bash blocks, continuation lines joined, comments dropped,
    whitespace normalized (the form SKIP and SUBSTITUTE use)."""
    commands = []
    for block in blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens:
                commands.append(" ".join(tokens))
    return commands


def documented() -> dict[str, list[str]]:
    """{document name: its shell commands, in order}."""
    return {str(p.relative_to(ROOT)): shell_commands(p.read_text()) for p in DOCS}


def test_every_command_is_run_or_skipped_with_a_reason():
    found = {c for cmds in documented().values() for c in cmds}
    unrunnable = [c for c in found if c not in SKIP and c not in SUBSTITUTE
                  and not c.startswith("driftlab ")]
    assert not unrunnable, f"not a driftlab command: add to SKIP with a reason: {unrunnable}"
    stale = sorted((set(SKIP) | set(SUBSTITUTE)) - found)
    assert not stale, f"listed here but no longer in the docs: {stale}"
    for doc, sub in SUBSTITUTE.items():  # a substitute keeps the subcommand
        assert shlex.split(sub)[:2] == shlex.split(doc)[:2], doc


def test_the_extractor_sees_what_the_docs_show():
    """Power: a command planted in a document is found (and would fail the test above)."""
    text = "x\n```bash\ndriftlab train --arch mlp \\\n  --steps 2   # two steps\n```\n"
    assert shell_commands(text) == ["driftlab train --arch mlp --steps 2"]
    assert shell_commands("```python\nimport driftlab\n```") == []


_DRIVER = textwrap.dedent("""
    import contextlib, io, json, os, shlex, sys, time
    from driftlab.cli import main
    results = []
    for cwd, command in json.loads(sys.argv[1]):
        os.chdir(cwd)
        out = io.StringIO()
        start = time.time()
        try:
            with contextlib.redirect_stdout(out):
                rc = main(shlex.split(command)[1:])
        except SystemExit as err:
            rc = err.code
        except Exception as err:  # reported with its command, the next command still runs
            rc = f"{type(err).__name__}: {err}"
        results.append({"command": command, "rc": rc, "seconds": round(time.time() - start, 1),
                        "stdout": out.getvalue()[-2000:]})
        print(f"{time.time() - start:6.1f} s  rc={rc}  {command}", file=sys.stderr, flush=True)
    print("RESULTS " + json.dumps(results))
""")


def _link_inputs(work: Path) -> None:
    """Read-only inputs the docs' commands name by relative path."""
    (work / "reports").mkdir(parents=True)
    (work / "reports" / "reduced").symlink_to(ROOT / "reports" / "reduced")


def test_docs_commands_run(tmp_path):
    plan = []
    for doc, commands in documented().items():
        work = tmp_path / doc.replace("/", "_")
        _link_inputs(work)
        plan += [(str(work), SUBSTITUTE.get(c, c)) for c in commands if c not in SKIP]
    assert plan
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(plan)], capture_output=True,
                          text=True, timeout=900)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert line, proc.stderr[-3000:]
    results = json.loads(line[-1][len("RESULTS "):])
    failed = [r for r in results if r["rc"] not in (0, None)]
    assert not failed, (failed, proc.stderr[-3000:])
    assert len(results) == len(plan)


def test_readme_quickstart_runs(tmp_path):
    """The README's ```python block, as written, in a fresh directory."""
    (code,) = blocks((ROOT / "README.md").read_text(), "python")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Analytic(" in proc.stdout and "MCResult(" in proc.stdout
    assert (tmp_path / "runs" / "quickstart" / "summary.json").exists()


def test_relative_links_point_at_files():
    """Every relative Markdown link of README.md and docs/*.md names an existing file."""
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken
