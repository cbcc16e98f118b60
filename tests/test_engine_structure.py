"""The engine stays readable (issue 19): no function in the engine's modules is over
MAX_LINES lines, and the training loop itself stays about LOOP_LINES lines. Lines are
counted from ``def`` to the function's last line, docstring and comments included; a
nested function counts on its own and inside its parent."""

import ast
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[1] / "models" / "engine"
ENGINE = ("steps", "train_state", "deferred_reads", "writers", "checkpointer", "hooks",
          "summarize", "ensemble", "run_dir")
MAX_LINES = 60
LOOP_LINES = 45  # "train() becomes a short loop, about 40 lines"


def engine_files() -> list[Path]:
    files = sorted(MODELS.glob("train*.py")) + [MODELS / f"{m}.py" for m in ENGINE]
    missing = [str(f) for f in files if not f.exists()]
    assert not missing, f"engine modules renamed or gone: {missing}"
    return files


def function_lengths(source: str) -> dict[str, int]:
    """{qualified name: lines} of every function (methods and nested ones included)."""
    out = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
                if not isinstance(child, ast.ClassDef):
                    out[name[:-1]] = child.end_lineno - child.lineno + 1
            visit(child, name)

    visit(ast.parse(source), "")
    return out


def test_no_engine_function_over_60_lines():
    long = {f"{f.name}::{name}": n for f in engine_files()
            for name, n in function_lengths(f.read_text()).items() if n > MAX_LINES}
    assert not long, f"functions over {MAX_LINES} lines (split them): {long}"


def test_the_loop_is_short():
    lengths = function_lengths((MODELS / "train.py").read_text())
    assert lengths["_loop"] <= LOOP_LINES, lengths["_loop"]
    assert lengths["train"] <= LOOP_LINES, lengths["train"]


@pytest.mark.parametrize("body_lines,too_long", [(MAX_LINES - 1, False), (MAX_LINES, True)])
def test_the_count_catches_a_long_function(body_lines, too_long):
    """The planted error: a method (nested in a class) of MAX_LINES + 1 lines is caught,
    one of MAX_LINES is not."""
    body = "".join(f"        x{i} = {i}\n" for i in range(body_lines))
    lengths = function_lengths(f"class A:\n    def f(self):\n{body}\n")
    assert (lengths["A.f"] > MAX_LINES) is too_long
