"""The contract between the training engine and every architecture.

An architecture is a module that exposes ``ARCH = Arch(...)``. Parameters are
nested dicts of arrays. Every activation call in a model goes through a *tap*:

    h = tap("block0.mlp", p, act)

The default tap just returns ``act(p)``. The engine passes an instrumented tap that
adds a zero "probe" to ``p`` (so one backward pass also yields ∂ℓ/∂p) and records
``p`` and ``h`` for sparsity, spike and gradient-sign statistics. Tap names must be
unique within one forward pass and stable across calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from driftlab.activations import Activation
from driftlab.models.data import Dataset  # noqa: F401 (the data sources' type, below the architectures)
from driftlab.names import ARCH_MODULES, SIZES  # noqa: F401 (declared in driftlab/names.py)

Params = Any  # nested dict of jax arrays
Batch = Mapping[str, Any]  # dict of arrays with a leading batch axis


class Tap(Protocol):
    def __call__(self, name: str, p, act: Activation): ...


def plain_tap(name: str, p, act: Activation):
    """The uninstrumented tap: h = σ(p)."""
    return act(p)


@dataclass(frozen=True)
class Arch:
    """One architecture.

    config(size, act, **overrides) -> frozen dataclass config (has ``.act: str``);
        ``size`` is one of ``SIZES``; unknown override fields raise ValueError.
    data(source, cfg, seed) -> (cfg, Dataset): ``source`` is "synthetic", "embedded"
        or a filesystem path in the architecture's real data format; returns the
        config adapted to the data (input shape, classes, vocabulary).
    init(key, cfg) -> params
    apply(params, batch, cfg, tap) -> outputs
    loss(outputs, batch, cfg) -> (scalar loss, dict of scalar metrics)
    downstream(cfg) -> {tap name: "/"-joined path of the hidden weight matrix that reads
        that activation's output}, the matrices whose drift the paper predicts. Output
        heads are not in it (a tap read only by a head is absent).
    output_heads(cfg) -> {"/"-joined path of an output-head matrix: the tap whose output
        it reads, or None when it reads a non-tapped value (a final norm, a PReLU)}.
        Under softmax cross-entropy a head's mean gradient is exactly zero (the softmax
        residual sums to zero over classes), so summaries show heads separately, as the
        zero-drift control, and never average them into the hidden layers' drift.
    Both maps are checked against the traced program by models/arch/readers.py (tests).
    params(cfg) -> models/params.ParamTable, or None: every parameter declared once (path,
        shape, fan-in, init, role, optimizer group). An architecture that declares it
        derives init, downstream and output_heads from it; the engine takes the Muon/AdamW
        routing and the pins take their reading matrices from it.
    readers(cfg) -> {tap: models/stein_readers.TapReaders}, or None: every linear reader
        of each tap's output (convolutions, pooled heads, identity shortcuts), for the
        per-layer Stein estimator of taps not read by one dense matrix
        (models/measure/conv_readers.py).
    """

    name: str
    config: Callable[..., Any]
    data: Callable[[str, Any, int], tuple[Any, Dataset]]
    init: Callable[[Any, Any], Params]
    apply: Callable[[Params, Batch, Any, Tap], Any]
    loss: Callable[[Any, Batch, Any], tuple[Any, dict]]
    downstream: Callable[[Any], dict[str, str]]
    output_heads: Callable[[Any], dict[str, str | None]]
    params: Callable[[Any], Any] | None = None
    readers: Callable[[Any], dict] | None = None




def get_arch(name: str) -> Arch:
    import importlib

    if name not in ARCH_MODULES:
        raise ValueError(f"unknown architecture {name!r}; valid: {', '.join(ARCH_MODULES)}")
    return importlib.import_module(ARCH_MODULES[name]).ARCH


# Config fields renamed so that one fact has one name in every architecture (the init gain
# is ``gain``, the attention head count ``n_heads``): arch -> {old name: current name}.
# Old names are still accepted where configs come in (arch.config, ``--set``, a run's
# config.json), with a note on stderr. Identities stay spelled with the old names
# (:func:`legacy_field_names`: a checkpoint's run identity, a preset's run id and
# run.json), so the run directories written before the rename keep resuming.
RENAMED_FIELDS = {
    "gpt": {"init_gain": "gain", "n_head": "n_heads"},
    "vit": {"heads": "n_heads"},
    "mpsenet": {"init_gain": "gain"},
}


def current_field_names(arch: str, fields: Mapping[str, Any], note: bool = True) -> dict:
    """``fields`` with old config-field names of ``arch`` replaced by the current ones;
    ValueError when a field is given under both names."""
    renamed = RENAMED_FIELDS.get(arch, {})
    out = {}
    for name, value in fields.items():
        new = renamed.get(name, name)
        if new != name:
            if new in fields:
                raise ValueError(f"config field {name!r} is the old name of {new!r}; "
                                 f"allowed: one of them, not both")
            if note:
                import sys

                print(f"driftlab: {arch} config field {name!r} is now called {new!r}; "
                      f"the old name is accepted for now", file=sys.stderr)
        out[new] = value
    return out


def current_name(arch: str, field: str) -> str:
    """The current name of config field ``field`` of ``arch`` (itself unless renamed)."""
    return RENAMED_FIELDS.get(arch, {}).get(field, field)


def legacy_name(arch: str, field: str) -> str:
    """Config field ``field`` of ``arch`` spelled as identities written before its rename
    spell it (see :data:`RENAMED_FIELDS`); unrenamed fields are returned as they are."""
    back = {new: old for old, new in RENAMED_FIELDS.get(arch, {}).items()}
    return back.get(field, field)


def legacy_field_names(arch: str, fields: Mapping[str, Any]) -> dict:
    """``fields`` with every name spelled by :func:`legacy_name`."""
    return {legacy_name(arch, name): value for name, value in fields.items()}


def replace_checked(cfg, arch: str | None = None, **overrides):
    """dataclasses.replace that names the field and the valid fields on a typo; with
    ``arch``, fields given under an old name (:data:`RENAMED_FIELDS`) go to the current one."""
    import dataclasses

    if arch is not None:
        overrides = current_field_names(arch, overrides)
    fields = {f.name for f in dataclasses.fields(cfg)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown config field(s) {bad} for {type(cfg).__name__}; "
                         f"valid: {sorted(fields)}")
    return dataclasses.replace(cfg, **overrides)
