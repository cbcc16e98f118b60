"""Registries read from source, without importing the module that declares them.

``driftlab --help`` and each subcommand's ``--help`` must answer before JAX starts, but
TrainConfig and the model configs are declared in modules that import JAX (the valid
names are in driftlab/names.py, which does not). Reading those declarations from the source (``ast``) keeps each fact declared
once: help lists what the code defines, and tests/test_cli_help.py compares every value
read here with the imported one.

Only literal declarations are evaluated: ``NAME = <literal>`` at module level, where a
bare name inside the literal refers to another such constant of the same module. Anything
else (a call, an attribute, an import) is returned as its source text.
"""

from __future__ import annotations

import ast
import functools
import importlib.util


class Unresolved(str):
    """The source text of a declaration that is not a literal."""


@functools.lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ValueError(f"module {module!r} not found")
    with open(spec.origin, encoding="utf-8") as fh:
        return ast.parse(fh.read())


def _assignments(module: str) -> dict[str, ast.expr]:
    found = {}
    for node in _tree(module).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and node.value is not None:
            found[node.target.id] = node.value
    return found


def _evaluate(node: ast.expr, module: str, depth: int = 0):
    names = _assignments(module)

    def resolve(n: ast.AST) -> ast.AST:
        if isinstance(n, ast.Name) and n.id in names and depth < 8:
            value = _evaluate(names[n.id], module, depth + 1)
            if not isinstance(value, Unresolved):
                return ast.Constant(value) if not isinstance(value, (tuple, list, dict)) \
                    else ast.parse(repr(value), mode="eval").body
        for field, child in ast.iter_fields(n):
            if isinstance(child, ast.AST):
                setattr(n, field, resolve(child))
            elif isinstance(child, list):
                setattr(n, field, [resolve(c) if isinstance(c, ast.AST) else c for c in child])
        return n

    copy = ast.parse(ast.unparse(node), mode="eval").body
    try:
        return ast.literal_eval(resolve(copy))
    except (ValueError, TypeError, SyntaxError):
        return Unresolved(ast.unparse(node))


def _dataclass(module: str, cls: str) -> ast.ClassDef:
    for node in _tree(module).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return node
    raise ValueError(f"class {module}.{cls} not found")


def dataclass_defaults(module: str, cls: str) -> dict[str, object]:
    """{field: default} of the dataclass ``cls`` in ``module``, in declaration order;
    a ``field(...)`` or other non-literal default is its source text (Unresolved)."""
    out = {}
    for node in _dataclass(module, cls).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and "ClassVar" not in ast.unparse(node.annotation):
            out[node.target.id] = (Unresolved("(required)") if node.value is None
                                   else _evaluate(node.value, module))
    return out


def config_class(module: str) -> str:
    """The name of the one class ending in ``Config`` that ``module`` defines."""
    names = [n.name for n in _tree(module).body
             if isinstance(n, ast.ClassDef) and n.name.endswith("Config")]
    if len(names) != 1:
        raise ValueError(f"{module}: expected one *Config class, found {names}")
    return names[0]
