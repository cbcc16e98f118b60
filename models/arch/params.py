"""Parameter tables: every parameter of an architecture declared once (issue 23).

An architecture that declares ``Arch.params(cfg) -> ParamTable`` lists each parameter as a
:class:`Param` (in the spirit of jax-llm-examples' ``ArrayInfo``): its "/"-joined path,
its shape from the config, its fan-in and fan-out, how it is initialized (which PRNG key,
which scheme), its role in the network and its optimizer group. Everything else that
used to restate the layout is derived here from that one list:

* :func:`init` — the parameters (nested dicts of float32 arrays);
* :func:`count` — the number of parameters;
* :func:`downstream`, :func:`output_heads` — the maps of the ``Arch`` contract;
* :func:`readers` — the pins' reading matrices (models/engine/pins.py);
* the Muon/AdamW routing (``group``; models/optim.table_routes);
* :func:`init_variance` — s_W², the init variance of a matrix (the per-layer theorem);
* :func:`shapes` — {path: shape}, e.g. for the PyTorch mirror (driftlab/bench/torch_gpt.py).

The traced-program checks (models/arch/readers.py, tests/test_downstream_map.py) verify the
roles against the computation, so a table whose roles drift from ``apply`` fails a test.

Roles, in the notation of models/engine/pins.py (p = u W [+ b], h = σ(p) the tap's output):
``reads`` is the tap whose output h this matrix reads directly (a hidden layer's
downstream matrix, or a head's input; None when it reads an untapped value); ``makes`` is
the tap whose pre-activation p this weight (or bias) computes; ``head`` marks an output
head (a tied embedding is one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp

from driftlab.models.arch import init as init_schemes

KINDS = ("matrix", "conv", "embedding", "position", "norm", "bias")
GROUPS = ("muon", "adamw")
# How a parameter is initialized: "scheme" draws from the config's init scheme and gain
# (models/arch/init.py); "normal" is N(0, std²) with the entry's own ``std`` (ViT's position
# embeddings); "ones"/"zeros" are constant (norm scales, biases).
INITS = ("scheme", "normal", "ones", "zeros")
# The kinds of weight that can be a tap's downstream reader (a dense matrix or a convolution).
DOWNSTREAM_KINDS = ("matrix", "conv")


@dataclass(frozen=True)
class Param:
    """One parameter. ``key`` says how its PRNG key comes from the model key: each entry
    is an int i (``fold_in(k, i)``) or a pair (n, j) (``split(k, n)[j]``), applied in
    order; constants have ``key=()``. ``fan_in``/``fan_out`` are what the init scheme is
    given (for an embedding read as the tied head's (D → V) matrix, fan_in = D; for an
    HWIO conv kernel (kh, kw, C_in, C_out), :func:`conv_fans`).

    ``scheme``/``gain`` (``init="scheme"`` only) draw this entry from another scheme or gain
    than the table's (ResNet's head: ``head_init``/``head_gain``); None: the table's."""

    path: str
    shape: tuple[int, ...]
    kind: str
    group: str
    init: str = "scheme"
    key: tuple = ()
    fan_in: int | None = None
    fan_out: int | None = None
    reads: str | None = None
    makes: str | None = None
    head: bool = False  # an output head (the zero-drift control under cross-entropy)
    std: float | None = None  # init="normal" only
    scheme: str | None = None  # init="scheme" only; None: ParamTable.scheme
    gain: float | None = None  # init="scheme" only; None: ParamTable.gain

    def __post_init__(self):
        for field, allowed in (("kind", KINDS), ("group", GROUPS), ("init", INITS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"Param({self.path!r}).{field}={getattr(self, field)!r} "
                                 f"invalid; allowed: {', '.join(allowed)}")
        if self.init == "scheme" and (self.fan_in is None or self.fan_out is None or not self.key):
            raise ValueError(f"Param({self.path!r}): init='scheme' needs fan_in, fan_out "
                             f"and a key")
        if (self.init == "normal") != (self.std is not None) or \
                (self.init == "normal" and not self.key):
            raise ValueError(f"Param({self.path!r}): std (and a key) go with init='normal' only")
        if (self.scheme is not None or self.gain is not None) and self.init != "scheme":
            raise ValueError(f"Param({self.path!r}): scheme/gain go with init='scheme' only")
        if self.scheme is not None and self.scheme not in init_schemes.SCHEMES:
            raise ValueError(f"Param({self.path!r}).scheme={self.scheme!r} invalid; allowed: "
                             f"{', '.join(init_schemes.SCHEMES)}")
        if self.gain is not None and (isinstance(self.gain, bool) or
                                      not isinstance(self.gain, (int, float)) or not self.gain > 0):
            raise ValueError(f"Param({self.path!r}).gain={self.gain!r} invalid; allowed: a "
                             f"positive number")

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ParamTable:
    """The parameters of one configured model, and the draw they are initialized from.

    ``scheme``/``gain`` are the init scheme and gain of every ``init="scheme"`` entry that
    declares none of its own (:attr:`Param.scheme`, :attr:`Param.gain`).
    ``empty`` lists dict nodes that exist without parameters (a norm without an affine
    scale), so the parameter tree keeps the structure the model's code indexes.
    """

    params: tuple[Param, ...]
    scheme: str
    gain: float
    empty: tuple[str, ...] = ()

    def __post_init__(self):
        paths = [p.path for p in self.params]
        dup = sorted({p for p in paths if paths.count(p) > 1})
        if dup:
            raise ValueError(f"ParamTable: parameters declared twice: {dup}")

    def __iter__(self):
        return iter(self.params)

    def __getitem__(self, path: str) -> Param:
        for p in self.params:
            if p.path == path:
                return p
        raise KeyError(f"no parameter {path!r}; declared: {', '.join(x.path for x in self.params)}")


def conv_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of an HWIO conv kernel (kh, kw, C_in, C_out): kh·kw·C_in and
    kh·kw·C_out, the convention of PyTorch, He et al. and models/layers.conv2d_init."""
    kh, kw, cin, cout = shape
    return kh * kw * cin, kh * kw * cout


def scheme_of(table: "ParamTable", p: Param) -> tuple[str, float]:
    """(scheme, gain) that ``init="scheme"`` entry ``p`` is drawn from: its own, else the table's."""
    return (table.scheme if p.scheme is None else p.scheme,
            table.gain if p.gain is None else p.gain)


def _key(key, steps: Iterable):
    for s in steps:
        key = jax.random.fold_in(key, s) if isinstance(s, int) else jax.random.split(key, s[0])[s[1]]
    return key


def _set(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split("/")
    for name in parents:
        tree = tree.setdefault(name, {})
    if leaf in tree:
        raise ValueError(f"parameter {path!r} set twice")
    tree[leaf] = value


def init(key, table: ParamTable) -> dict:
    """The parameters of ``table`` as nested dicts: scheme entries drawn with their own key
    (:func:`scheme_of`: the entry's scheme and gain, else ParamTable.scheme, .gain), normal
    entries N(0, std²), norm scales 1, biases 0, all float32."""
    tree: dict = {}
    for path in table.empty:
        node = tree
        for name in path.split("/"):
            node = node.setdefault(name, {})
    for p in table:
        if p.init == "scheme":
            draw = init_schemes.get_init(*scheme_of(table, p))
            value = draw(_key(key, p.key), p.shape, p.fan_in, p.fan_out)
        elif p.init == "normal":
            value = p.std * jax.random.normal(_key(key, p.key), p.shape)
        elif p.init == "ones":
            value = jnp.ones(p.shape, jnp.float32)
        else:
            value = jnp.zeros(p.shape, jnp.float32)
        _set(tree, p.path, value)
    return tree


def count(table: ParamTable, kinds: Iterable[str] = KINDS) -> int:
    """Number of parameters of the given ``kinds`` (all by default); a tied head is one
    parameter (the embedding), so it is counted once."""
    kinds = set(kinds)
    return sum(p.size for p in table if p.kind in kinds)


def shapes(table: ParamTable) -> dict[str, tuple[int, ...]]:
    """{path: shape} of every parameter."""
    return {p.path: p.shape for p in table}


def downstream(table: ParamTable) -> dict[str, str]:
    """{tap: the hidden matrix (or conv kernel) reading its output} (heads excluded;
    models/base.Arch). When several weights read one tap (a ResNet block's conv1 and its
    projection shortcut), the first declared is its downstream matrix."""
    out: dict[str, str] = {}
    for p in table:
        if p.reads is not None and p.kind in DOWNSTREAM_KINDS and not p.head:
            out.setdefault(p.reads, p.path)
    return out


def output_heads(table: ParamTable) -> dict[str, str | None]:
    """{head path: the tap it reads, or None} (models/base.Arch)."""
    return {p.path: p.reads for p in table if p.head}


class Reader(NamedTuple):
    """The matrix producing a tap's pre-activation, p = u @ weight (+ bias) (models/engine/pins.py)."""

    weight: str  # "/"-joined parameter path, shape (fan_in, units)
    bias: str | None
    feeds: str | None  # the tap whose output h is u (MLP hidden layers), else None


def readers(table: ParamTable) -> dict[str, Reader]:
    """{tap: Reader(weight, bias, feeds)}: the weight computing the tap's pre-activation,
    its bias (None without), and the tap its input is the output of (None: no tap).
    ValueError when several weights make one tap (a ResNet block's conv2 and projection
    shortcut with ``norm="none"``): a Reader names one."""
    made: dict[str, list[str]] = {}
    for p in table:
        if p.makes is not None and p.kind != "bias":
            made.setdefault(p.makes, []).append(p.path)
    several = {t: ws for t, ws in made.items() if len(ws) > 1}
    if several:
        raise ValueError(f"readers: taps made by several weights, no single Reader: {several}")
    bias = {p.makes: p.path for p in table if p.makes is not None and p.kind == "bias"}
    return {p.makes: Reader(p.path, bias.get(p.makes), p.reads)
            for p in table if p.makes is not None and p.kind != "bias"}


def init_variance(table: ParamTable, path: str) -> float:
    """s_W² = Var of one entry of parameter ``path`` at init (models/init.variance)."""
    p = table[path]
    if p.init == "normal":
        return p.std**2
    if p.init != "scheme":
        raise ValueError(f"parameter {path!r} is a constant ({p.init}) at init; no variance")
    return init_schemes.variance(*scheme_of(table, p), p.fan_in, p.fan_out)


def flatten_dict(tree, prefix: str = "") -> dict[str, object]:
    """Nested dicts -> {"a/b/c": leaf}; keys in sorted order (as jax flattens dicts)."""
    out = {}
    for key in sorted(tree):
        path = f"{prefix}{key}"
        value = tree[key]
        if isinstance(value, dict):
            out.update(flatten_dict(value, path + "/"))
        else:
            out[path] = value
    return out


def unflatten_dict(flat: dict[str, object]) -> dict:
    """Inverse of :func:`flatten_dict`."""
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree
