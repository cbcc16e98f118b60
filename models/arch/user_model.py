"""A user's model file as something driftlab can measure (issue 33): loading, validation,
the per-example loss, the seed → key conventions, and the taps and their readers found by
tracing the program.

The contract (docs/your-model.md)::

    LOSS = "mse" | "ce"           # or a function loss(outputs, y) -> per-example losses (B,)
    def init(key): ...            # -> params, a pytree of arrays
    def apply(params, x): ...     # -> outputs; each pre-activation marked with driftlab.tap
    def batch(key, n): ...        # -> (x, y), every leaf with leading axis n
    # optional: batch_at(seed, step, n) -> (x, y), a stream indexed by (seed, step) instead
    # of a key (the built-in adapters use it to replay the engine's data stream)

Per-example loss ℓᵢ (one value per example i of the batch, a function of its outputs fᵢ):
"mse": ℓᵢ = ½ Σ (fᵢ − yᵢ)² over every non-batch entry; "ce": softmax cross-entropy of
fᵢ's last axis against integer labels yᵢ, averaged over any positions between the batch
and class axes (a sequence's tokens). The training loss is L = (1/B) Σᵢ ℓᵢ, so
g = ∂ℓᵢ/∂pᵢ = B · ∂L/∂pᵢ whenever example i's pre-activations pᵢ do not feed other
examples' losses (no batch statistics); with BatchNorm it is B · ∂L/∂p, the engine's units.

A parameter W *reads* tap t when the traced forward pass has a contraction
(``dot_general``, ``conv_general_dilated``) with one operand derived from t's marked value
and the other from W. "Derived" follows t's value through elementwise operations on it
(the activation σ, a gate σ(p)·u, a clip, a square), layout changes, sums over axes, and
scaling by any value (mul/div); it stops at additions of a non-constant value that does
not itself derive from t (a residual stream), at other contractions, and inside loops
(``lax.scan``/``while``, which the walk does not enter). W's side follows layout changes
(a transpose: a tied embedding) and scaling by constants.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from driftlab.tap import handling

LOSSES = ("mse", "ce")
REQUIRED = ("init", "apply", "batch")
ESTIMATOR_SEED_OFFSET = 1_000_003  # as models/measure/trajectory.py: estimator data apart from training


class InspectError(ValueError):
    """Bad input to ``driftlab inspect``: one line, exit code 2."""


@dataclass(frozen=True)
class UserModel:
    """A loaded, not yet validated, user model. ``loss`` is "mse", "ce" or "custom"."""

    name: str
    loss: str
    init: Callable
    apply: Callable
    batch: Callable
    loss_fn: Callable | None = None
    batch_at: Callable | None = None


def load(source) -> UserModel:
    """A :class:`UserModel` from a file path, ``builtin:NAME`` (models/arch/builtin_adapter.py)
    or a module-like object; InspectError (one line) when init/apply/batch or LOSS is missing."""
    if isinstance(source, (str, Path)) and str(source).startswith("builtin:"):
        from driftlab.models.arch.builtin_adapter import adapter

        return load(adapter(str(source).split(":", 1)[1]))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise InspectError(f"{path}: no such file")
        name = f"driftlab_user_model_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the user's file: any error is bad input
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise InspectError(f"{path}: import failed: {type(err).__name__}: {first}") from None
        label = str(path)
    else:
        module, label = source, getattr(source, "__name__", type(source).__name__)
    missing = [n for n in REQUIRED if not callable(getattr(module, n, None))]
    if missing:
        raise InspectError(f"{label}: missing {', '.join(missing)}; a model file defines "
                           f"init(key), apply(params, x), batch(key, n) and LOSS")
    loss_fn = getattr(module, "loss", None)
    if callable(loss_fn):
        kind = "custom"
    else:
        kind, loss_fn = getattr(module, "LOSS", None), None
        if kind not in LOSSES:
            raise InspectError(f"{label}: LOSS={kind!r} invalid; allowed: "
                               f"{', '.join(map(repr, LOSSES))} or a function loss(outputs, y)")
    batch_at = getattr(module, "batch_at", None)
    return UserModel(label, kind, module.init, module.apply, module.batch, loss_fn,
                     batch_at if callable(batch_at) else None)


# --------------------------------------------------------------------------- conventions


def init_key(seed: int):
    """Init key of seed s: fold_in(PRNGKey(s), 0), the engine's (models/train.py)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0)


def train_batch(model: UserModel, seed: int, step: int, n: int):
    """(x, y) of training step t of seed s: batch_at(s, t, n), else
    batch(fold_in(fold_in(PRNGKey(s), 1), t), n)."""
    if model.batch_at is not None:
        return model.batch_at(seed, step, n)
    return model.batch(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), step), n)


def estimator_batch(model: UserModel, seed: int, j: int, n: int):
    """(x, y) number j of the estimator batches of seed s, independent of the training
    stream: batch_at(s + 1 000 003, j, n), else batch(fold_in(fold_in(PRNGKey(s), 2), j), n)."""
    if model.batch_at is not None:
        return model.batch_at(seed + ESTIMATOR_SEED_OFFSET, j, n)
    return model.batch(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 2), j), n)


def per_example_loss(model: UserModel, outputs, y):
    """ℓᵢ for every example i, shape (B,) (module docstring)."""
    if model.loss == "custom":
        return model.loss_fn(outputs, y)
    out = jnp.asarray(outputs).astype(jnp.float32)
    if model.loss == "mse":
        d = out - jnp.asarray(y, jnp.float32)
        return 0.5 * jnp.sum(jnp.square(d).reshape(d.shape[0], -1), axis=1)
    logp = jax.nn.log_softmax(out, axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.asarray(y)[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.mean(nll.reshape(nll.shape[0], -1), axis=1)


# --------------------------------------------------------------------------- the shim Arch


def identity(p):
    return p


@dataclass(frozen=True)
class UserConfig:
    """What models/measure/per_layer.py and models/measure/trajectory.py read from a config.

    ``act_fn``: σ of the tap the per-layer estimator is run on (per_layer._act);
    ``readers``: {tap: the one dense matrix reading it} for per_layer.reading_matrix;
    ``init``/``gain``: a placeholder scheme (trajectory.Problem's s_W is overwritten with
    the init's measured RMS)."""

    act: str = "identity"
    act_fn: Callable | None = None
    readers: tuple = ()
    init: str = "fan_in_normal"
    gain: float = 1.0


def as_arch(model: UserModel):
    """A models/base.Arch whose batch is {"x": x, "y": y}: apply runs the user's apply with
    every ``driftlab.tap(name, p, act)`` routed to the engine's tap(name, p, act or identity);
    loss is (L = mean ℓᵢ, {}). ``config``/``data`` are not used by the generic path."""
    from driftlab.models.arch.base import Arch

    def apply(params, batch, cfg, tap):
        with handling(lambda n, p, act: tap(n, p, identity if act is None else act)):
            return model.apply(params, batch["x"])

    def loss(outputs, batch, cfg):
        return jnp.mean(per_example_loss(model, outputs, batch["y"])), {}

    def unused(*a, **k):
        raise NotImplementedError("a user model has no config()/data(); driftlab inspect "
                                  "draws batches from its batch()")

    return Arch(name=model.name, config=unused, data=unused, init=lambda key, cfg: model.init(key),
                apply=apply, loss=loss, downstream=lambda cfg: dict(cfg.readers),
                output_heads=lambda cfg: {})


# --------------------------------------------------------------------------- tracing


def leaf_paths(params) -> list[str]:
    """"/"-joined paths of the leaves of ``params`` (dict keys, sequence indices, attributes)."""
    def part(k):
        for a in ("key", "idx", "name"):
            if hasattr(k, a):
                return str(getattr(k, a))
        return str(k)
    return ["/".join(part(k) for k in kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


@dataclass(frozen=True)
class TapInfo:
    """One tap: its name, the shape of p, whether it was written in the activation form
    (``tap(name, p, act)``) and that σ, and the parameters that read it (traced)."""

    name: str
    shape: tuple
    act: Callable | None
    readers: tuple[str, ...] = field(default=())


_LAYOUT = {"reshape", "transpose", "convert_element_type", "broadcast_in_dim", "squeeze",
           "expand_dims", "copy", "copy_p", "pad", "slice", "dynamic_slice", "gather",
           "concatenate", "rev", "reduce_sum", "reduce_precision", "cumsum"}
_UNARY = {"neg", "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "erf", "erfc",
          "sqrt", "rsqrt", "cbrt", "integer_pow", "square", "abs", "sign", "sin", "cos",
          "floor", "ceil", "round", "is_finite", "not", "real", "imag"}
# keep the value's tap tags whatever the other operand (scaling, gating, masking, selection)
_GATE = {"mul", "div", "select_n", "gt", "ge", "lt", "le", "eq", "ne", "and", "or", "clamp"}
# keep them only when the other operand is a constant or itself derives from a tap
_SHIFT = {"add", "sub", "max", "min", "pow", "atan2", "rem", "add_any"}
_CONTRACT = {"dot_general", "conv_general_dilated"}


def _sub(eqn):
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is None:
            continue
        closed = sub if hasattr(sub, "consts") else None
        sub = getattr(sub, "jaxpr", sub)
        if isinstance(sub, jcore.Jaxpr) and len(sub.invars) == len(eqn.invars):
            return sub, closed
    return None, None


def _walk(jaxpr, tags: dict, reads: set, marks: dict) -> None:
    """Propagate tags {var: (taps, weights, const)} through ``jaxpr`` (module docstring),
    adding (tap, weight path) to ``reads`` at each contraction of a tap- and a weight-tagged
    operand. ``marks``: {mark input var: tap name}."""
    empty = (frozenset(), frozenset(), False)

    def tag(v):
        if isinstance(v, jcore.Literal):
            return (frozenset(), frozenset(), True)
        return tags.get(v, empty)

    for v in jaxpr.constvars:
        tags[v] = (frozenset(), frozenset(), True)
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        ins = [tag(v) for v in eqn.invars]
        sub, _ = _sub(eqn)
        if sub is not None:
            inner = dict(zip(sub.invars, ins))
            _walk(sub, inner, reads, {sv: marks[v] for v, sv in zip(eqn.invars, sub.invars)
                                      if not isinstance(v, jcore.Literal) and v in marks})
            for o, so in zip(eqn.outvars, sub.outvars):
                tags[o] = (frozenset(), frozenset(), True) if isinstance(so, jcore.Literal) \
                    else inner.get(so, empty)
            continue
        taps = [t for t, _, _ in ins]
        weights = [w for _, w, _ in ins]
        const = bool(ins) and all(c for _, _, c in ins)
        all_taps = frozenset().union(*taps) if taps else frozenset()
        if name in _CONTRACT:
            a, b = ins[0], ins[1]
            for x, y in ((a, b), (b, a)):
                reads.update((t, w) for t in x[0] for w in y[1])
            out = (frozenset(), frozenset(), const)
        elif name == "add" and any(v in marks for v in eqn.invars if not isinstance(v, jcore.Literal)):
            mark = next(marks[v] for v in eqn.invars if not isinstance(v, jcore.Literal) and v in marks)
            out = (all_taps | {mark}, frozenset(), False)
        elif name in _LAYOUT:
            out = (all_taps, frozenset().union(*weights) if weights else frozenset(), const)
        elif name in _UNARY:
            out = (all_taps, frozenset(), const)
        elif name in _GATE:
            scale_w = len(ins) == 2 and name in ("mul", "div") and (ins[0][2] or ins[1][2])
            out = (all_taps, frozenset().union(*weights) if scale_w else frozenset(), const)
        elif name in _SHIFT:
            keep = all(t or c for t, _, c in ins)  # no non-constant untagged operand
            out = (all_taps if keep else frozenset(), frozenset(), const)
        else:
            out = (frozenset(), frozenset(), const and name not in ("rng_bit_generator",))
        for o in eqn.outvars:
            tags[o] = out


def discover(model: UserModel, params, x) -> list[TapInfo]:
    """Every tap of ``apply(params, x)`` in call order, with its traced readers.

    InspectError on a tap name used twice, on apply failing on (params, x) (the batch
    does not fit), and when no tap is found. Nothing is computed (abstract evaluation)."""
    found: dict[str, tuple] = {}

    def record(name, p, act):
        if name in found:
            raise InspectError(f"tap name {name!r} used twice in one forward pass; tap names "
                               f"must be unique")
        if not hasattr(p, "shape") or not hasattr(p, "dtype"):
            raise InspectError(f"tap {name!r}: value is a {type(p).__name__}, not an array")
        found[name] = (tuple(p.shape), p.dtype, act)
        return p if act is None else act(p)

    def run(prm, xx):
        with handling(record):
            return model.apply(prm, xx)

    try:
        jax.eval_shape(run, params, x)
    except InspectError:
        raise
    except Exception as err:
        shapes = jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), x)
        first = (str(err).strip().splitlines() or [""])[0]
        raise InspectError(f"apply(params, x) fails on batch() with x shapes {shapes}: "
                           f"{type(err).__name__}: {first}") from None
    if not found:
        raise InspectError("no tap found: mark each pre-activation inside apply with "
                           "h = act(driftlab.tap(name, p)) or h = driftlab.tap(name, p, act)")
    names = list(found)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    paths = leaf_paths(params)
    mark_list = [jnp.zeros(found[n][0], found[n][1]) for n in names]

    def fn(leaves_, marks_, xx):
        prm = jax.tree_util.tree_unflatten(treedef, leaves_)
        m = dict(zip(names, marks_))

        def marked(name, p, act):
            p = p + m[name]
            return p if act is None else act(p)
        with handling(marked):
            return model.apply(prm, xx)

    jaxpr = jax.make_jaxpr(fn)(leaves, mark_list, x).jaxpr
    n = len(leaves)
    tags = {v: (frozenset(), frozenset({path}), False) for v, path in zip(jaxpr.invars, paths)}
    marks = {v: name for v, name in zip(jaxpr.invars[n:n + len(names)], names)}
    for v in marks:
        tags[v] = (frozenset(), frozenset(), False)
    reads: set = set()
    _walk(jaxpr, tags, reads, marks)
    by_tap = {name: sorted({w for t, w in reads if t == name}, key=paths.index) for name in names}
    return [TapInfo(nm, found[nm][0], found[nm][2], tuple(by_tap[nm])) for nm in names]


# --------------------------------------------------------------------------- validation


def check_params(params) -> None:
    """InspectError unless ``params`` is a non-empty pytree whose leaves are float arrays."""
    leaves = jax.tree_util.tree_leaves(params)
    paths = leaf_paths(params)
    if not leaves:
        raise InspectError("init(key) returned no arrays; params must be a pytree of arrays")
    for path, leaf in zip(paths, leaves):
        if not isinstance(leaf, (jax.Array, np.ndarray)):
            raise InspectError(f"init(key): params leaf {path or '<root>'!r} is a "
                               f"{type(leaf).__name__}, not an array; params must be a pytree "
                               f"of arrays")
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise InspectError(f"init(key): params leaf {path or '<root>'!r} has dtype "
                               f"{leaf.dtype}; params must be floating-point arrays")


def check_batch(xy, n: int) -> None:
    """InspectError unless ``xy`` is (x, y) with every leaf an array of leading axis n."""
    if not (isinstance(xy, tuple) and len(xy) == 2):
        raise InspectError(f"batch(key, n) returned a {type(xy).__name__}; allowed: a pair (x, y)")
    for part, tree in zip("xy", xy):
        for leaf in jax.tree_util.tree_leaves(tree):
            shape = np.shape(leaf)
            if not shape or shape[0] != n:
                raise InspectError(f"batch(key, {n}): {part} has a leaf of shape {shape}; "
                                   f"allowed: leading axis {n}")


@dataclass(frozen=True)
class Program:
    """A validated model: its taps (with readers) and parameter paths and count."""

    model: UserModel
    taps: tuple[TapInfo, ...]
    paths: tuple[str, ...]
    n_params: int


def validate(model: UserModel, n: int) -> Program:
    """Every check of the input contract on seed 0 (one line each, InspectError):
    params a pytree of float arrays; batch a pair with leading axis n; apply runs on it;
    taps found, uniquely named and each read by some parameter; outputs fit the loss
    (ℓᵢ has shape (n,)); outputs and loss finite at init."""
    def checked_init(key):  # leaf types are checked on what init returns, before jit converts
        out = model.init(key)
        check_params(out)
        return out

    try:
        params = jax.jit(checked_init)(init_key(0))
    except InspectError:
        raise
    except Exception:
        params = None  # init is not traceable (Python-side code): call it as it is
    if params is None:
        try:
            params = checked_init(init_key(0))
        except InspectError:
            raise
        except Exception as err:
            raise InspectError(f"init(key) failed: {type(err).__name__}: "
                               f"{(str(err).strip().splitlines() or [''])[0]}") from None
    try:
        xy = train_batch(model, 0, 0, n)
    except Exception as err:
        raise InspectError(f"batch(key, {n}) failed: {type(err).__name__}: "
                           f"{(str(err).strip().splitlines() or [''])[0]}") from None
    check_batch(xy, n)
    x, y = xy
    taps = discover(model, params, x)
    unread = [t.name for t in taps if not t.readers]
    if unread:
        raise InspectError(f"tap {unread[0]!r}: no parameter reads its value (a reader is a "
                           f"matrix contracted with the tap's activation; see docs/your-model.md)")

    def losses(prm, xx, yy):
        with handling(lambda name, p, act: p if act is None else act(p)):
            out = model.apply(prm, xx)
        return out, per_example_loss(model, out, yy)

    try:
        shape = jax.eval_shape(losses, params, x, y)[1].shape
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise InspectError(f"the outputs of apply do not fit y of batch() under LOSS="
                           f"{model.loss!r}: {type(err).__name__}: {first}") from None
    if tuple(shape) != (n,):
        raise InspectError(f"the per-example loss has shape {tuple(shape)}; allowed: ({n},) "
                           f"(outputs and y of batch() must share the batch axis)")
    out, ell = jax.jit(losses)(params, x, y)
    bad = [i for i, leaf in enumerate(jax.tree_util.tree_leaves(out))
           if not bool(jnp.all(jnp.isfinite(leaf)))]
    if bad or not bool(jnp.all(jnp.isfinite(ell))):
        what = "outputs" if bad else "per-example loss"
        raise InspectError(f"non-finite {what} at init (seed 0): apply(params, x) must be "
                           f"finite at initialization")
    return Program(model, tuple(taps), tuple(leaf_paths(params)),
                   int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params))))


__all__ = ["InspectError", "UserModel", "load", "validate", "discover", "Program", "TapInfo",
           "as_arch", "UserConfig", "per_example_loss", "init_key", "train_batch",
           "estimator_batch", "check_params", "check_batch", "leaf_paths", "LOSSES"]
