"""Which weight matrices read each tap's output, found from the traced program (jaxpr).

Every architecture declares ``downstream(cfg)`` (tap → the hidden matrix reading it) and
``output_heads(cfg)`` (head matrix → the tap it reads, or None) by hand; this module
checks those maps against the computation itself, so a renamed parameter or a rewired
block cannot silently make a summary report the drift of the wrong matrix.

A matrix W *reads* tap t when the traced forward pass contains a contraction
(``dot_general`` or ``conv_general_dilated``) with one operand derived from t's output
h = σ(p) and the other from W, where "derived" allows only operations that keep h a
linear read-out of its own entries: layout changes (reshape, transpose, slicing,
padding, concatenation with other values, dtype casts, broadcasting), sums over axes
and scaling by a value that does not itself depend on h (e.g. the global average pool
before a ResNet head). It does not pass through additions of other values (residual
streams), nonlinearities or normalizations, so W is a *direct* reader of h.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

# Primitives through which a value stays a (linear, layout) view of the tap output.
_LAYOUT = {"reshape", "transpose", "convert_element_type", "broadcast_in_dim", "squeeze",
           "expand_dims", "copy", "copy_p", "pad", "slice", "dynamic_slice", "gather",
           "concatenate", "rev", "reduce_sum", "reduce_precision"}
# Binary primitives that keep the tag when the other operand is untagged (scaling).
_SCALE = {"mul", "div"}
_CONTRACT = {"dot_general", "conv_general_dilated"}
_TAP_MARK = "driftlab_tap"


def _sub_jaxprs(eqn):
    """(jaxpr, invars offset) of call-like equations whose inputs map 1:1 to eqn.invars."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is None:
            continue
        sub = getattr(sub, "jaxpr", sub)
        if isinstance(sub, jcore.Jaxpr) and len(sub.invars) == len(eqn.invars):
            return sub
    return None


def _walk(jaxpr, tags: dict, reads: set, makes: set) -> None:
    """Propagate tags {var: frozenset of ("tap", name) / ("w", path) / ("prod", path)}
    through ``jaxpr``, adding (tap, path) to ``reads`` at every contraction of a tap-tagged
    and a weight-tagged operand, and (tap, path) to ``makes`` where a value made by weight
    ``path`` (a contraction with it, plus a bias, through layout changes) enters the tap."""
    def tag(v):
        return frozenset() if isinstance(v, jcore.Literal) else tags.get(v, frozenset())

    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        ins = [tag(v) for v in eqn.invars]
        sub = _sub_jaxprs(eqn)
        if sub is not None:
            inner = dict(zip(sub.invars, ins))
            _walk(sub, inner, reads, makes)
            for o, so in zip(eqn.outvars, sub.outvars):
                tags[o] = frozenset() if isinstance(so, jcore.Literal) else inner.get(so, frozenset())
            continue
        out = frozenset()
        if name in _CONTRACT:
            a, b = ins[0], ins[1]
            for x, y in ((a, b), (b, a)):
                for t in (k for k in x if k[0] == "tap"):
                    for w in (k for k in y if k[0] == "w"):
                        reads.add((t[1], w[1]))
            # the product is made by the weight operand(s): p = u W
            out = frozenset(("prod", k[1]) for k in a | b if k[0] == "w")
        elif name == "add" and len(ins) == 2 and any(k[0] == "inmark" for k in ins[1]):
            tap = next(k[1] for k in ins[1] if k[0] == "inmark")
            makes.update((tap, k[1]) for k in ins[0] if k[0] == "prod")
        elif name == "add" and len(ins) == 2 and any(k[0] == "prod" for k in ins[0] | ins[1]):
            # p = u W + b: a bias (a weight-tagged operand) joins the producers
            out = frozenset(k for k in ins[0] | ins[1] if k[0] == "prod") | \
                frozenset(("prod", k[1]) for k in ins[0] | ins[1] if k[0] == "w")
        elif name in _LAYOUT:
            out = frozenset().union(*ins) if ins else frozenset()
        elif name in _SCALE and len(ins) == 2:
            # scaling by an untagged value keeps the tag (a pool's 1/n, a branch scale)
            out = ins[0] if not ins[1] else (ins[1] if not ins[0] and name == "mul" else frozenset())
        elif name == "add" and len(ins) == 2 and any(k[0] == "mark" for k in ins[1]):
            out = frozenset(k for k in ins[1] if k[0] == "tap") | ins[0]
        for o in eqn.outvars:
            tags[o] = out


def traced_matrices(arch, cfg, params, batch) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """({tap: weights that directly read its output h}, {tap: weights that make its
    pre-activation p}), both from the traced program.

    Traces ``arch.apply(params, batch, cfg, tap)`` with a tap that adds a marker input to
    each tap's input p and output h (no computation is run) and follows the marks through
    the jaxpr (see the module docstring for what counts as a direct read). A weight *makes*
    p when p is a contraction with it (plus a bias weight), up to layout changes. Taps no
    weight reads (or makes) map to an empty set.
    """
    names: list[str] = []
    shapes: dict = {}

    def collect(name, p, act):
        names.append(name)
        shapes[name] = (jax.eval_shape(lambda x: x, p), jax.eval_shape(act, p))
        return act(p)

    jax.eval_shape(lambda prm: arch.apply(prm, batch, cfg, collect), params)
    in_marks = [jnp.zeros(shapes[n][0].shape, shapes[n][0].dtype) for n in names]
    marks = [jnp.zeros(shapes[n][1].shape, shapes[n][1].dtype) for n in names]
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    leaf_paths = ["/".join(str(getattr(k, "key", k)) for k in kp) for kp, _ in with_paths]
    leaves = [v for _, v in with_paths]

    def fn(leaves_, in_list, mark_list):
        prm = jax.tree_util.tree_unflatten(treedef, leaves_)
        p_in, h_out = dict(zip(names, in_list)), dict(zip(names, mark_list))
        return arch.apply(prm, batch, cfg, lambda n, p, act: act(p + p_in[n]) + h_out[n])

    jaxpr = jax.make_jaxpr(fn)(leaves, in_marks, marks).jaxpr
    tags = {v: frozenset({("w", path)}) for v, path in zip(jaxpr.invars, leaf_paths)}
    n = len(leaves)
    for v, name in zip(jaxpr.invars[n:n + len(names)], names):
        tags[v] = frozenset({("inmark", name)})
    for v, name in zip(jaxpr.invars[n + len(names):], names):
        tags[v] = frozenset({("mark", name), ("tap", name)})
    reads: set = set()
    makes: set = set()
    _walk(jaxpr, tags, reads, makes)
    out_reads = {name: set() for name in names}
    out_makes = {name: set() for name in names}
    for t, w in reads:
        out_reads[t].add(w)
    for t, w in makes:
        out_makes[t].add(w)
    return out_reads, out_makes


def reading_matrices(arch, cfg, params, batch) -> dict[str, set[str]]:
    """{tap name: {"/"-joined parameter paths of the weights that directly read its output}}
    (:func:`traced_matrices`)."""
    return traced_matrices(arch, cfg, params, batch)[0]


def making_matrices(arch, cfg, params, batch) -> dict[str, set[str]]:
    """{tap name: {paths of the weights (and bias) that make its pre-activation p}}
    (:func:`traced_matrices`); what models/pins.readers must name."""
    return traced_matrices(arch, cfg, params, batch)[1]
