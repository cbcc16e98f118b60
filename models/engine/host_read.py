"""Read a pytree of device arrays to the host in one transfer per dtype.

Reading a logged step's statistics leaf by leaf (``float(x)`` on each of ~50 device
scalars, plus the per-weight statistics) costs one device→host round trip per leaf: about
3 ms per logged step on the 2-core CPU machine, more than ten training steps. Here
:func:`pack` concatenates the leaves of each dtype into one flat vector (values are copied
exactly: no casts, no arithmetic), inside a jitted program of its own
(:meth:`HostReader.start`) or inside the program that computed them (the engine's logged
step; :meth:`HostReader.packed`); the few vectors are copied to the host asynchronously and
cut back into the tree's shape. :meth:`PendingRead.ready` says, without waiting, whether
the read would block, so the training loop reads only finished results. The result equals
``tree_map(np.asarray, tree)`` element for element.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from driftlab.models.engine import sharding


def _dtype_name(leaf) -> str:
    """The dtype a leaf has inside jit (Python and NumPy scalars canonicalized)."""
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    return jnp.dtype(jax.dtypes.canonicalize_dtype(dtype)).name


def pack(tree):
    """{dtype name: 1-D concatenation of the raveled leaves of that dtype}, leaves in
    tree order."""
    groups: dict = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        groups.setdefault(_dtype_name(leaf), []).append(jnp.ravel(leaf))
    return {name: jnp.concatenate(parts) for name, parts in groups.items()}


class HostReader:
    """``read(tree)``: the tree's leaves as numpy arrays (0-d for scalars), in one transfer
    per dtype. ``floats(tree)``: the same with every leaf a Python float (JSON-ready);
    leaves must then be scalars.

    ``mesh``: the outputs are replicated over it, so every process (multi-host) reads its
    own copy through :func:`driftlab.models.engine.sharding.to_host`. One instance serves trees
    of any structure: jit compiles the pack once per structure and shapes.
    """

    def __init__(self, mesh):
        self._pack = jax.jit(pack, out_shardings=sharding.replicated(mesh))
        self._layouts: dict = {}  # (treedef, leaf shapes/dtypes) -> where each leaf lies

    def _layout(self, leaves, treedef):
        """[(dtype name, start, stop, shape)] of each leaf in the packed vectors."""
        try:  # jax/numpy arrays: attribute reads only (this runs on every logged step)
            key = (treedef, tuple([(x.shape, x.dtype) for x in leaves]))
        except AttributeError:
            key = (treedef, tuple((np.shape(x), type(x)) for x in leaves))
        if key not in self._layouts:
            used: dict = {}
            layout = []
            for leaf in leaves:
                name, shape = _dtype_name(leaf), np.shape(leaf)
                size = int(np.prod(shape, dtype=np.int64))
                start = used.get(name, 0)
                layout.append((name, start, start + size, shape))
                used[name] = start + size
            self._layouts[key] = layout
        return self._layouts[key]

    def start(self, tree) -> "PendingRead":
        """Dispatch the pack of ``tree`` and start its copy to the host; read it later
        (``PendingRead.ready()`` tells, without waiting, whether that would block)."""
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        if not leaves:
            return PendingRead({}, [], treedef)
        return PendingRead(self._pack(tree), self._layout(leaves, treedef), treedef)

    def layout(self, like) -> tuple:
        """Where each leaf of a tree shaped like ``like`` lies in ``pack(tree)``: worked out
        once per record structure, so that :meth:`packed` does no per-leaf work."""
        leaves, treedef = jax.tree_util.tree_flatten(like)
        return (self._layout(leaves, treedef) if leaves else []), treedef

    def packed(self, packed: dict, layout: tuple) -> "PendingRead":
        """A read of ``packed = pack(tree)`` computed elsewhere (e.g. inside a training
        step); ``layout = self.layout(like)`` for a ``like`` with the structure, shapes and
        dtypes of ``tree`` (e.g. from ``jax.eval_shape``)."""
        return PendingRead(packed, *layout)

    def read(self, tree):
        return self.start(tree).read()

    def floats(self, tree):
        return self.start(tree).floats()


class PendingRead:
    """A packed tree on its way to the host (see :meth:`HostReader.start`)."""

    def __init__(self, packed: dict, layout: list, treedef):
        self._packed, self._layout, self._treedef = packed, layout, treedef
        for v in packed.values():
            if getattr(v, "is_fully_addressable", True):  # multi-host arrays: read later
                v.copy_to_host_async()

    def ready(self) -> bool:
        """Whether reading now would not wait for the device."""
        return all(v.is_ready() for v in self._packed.values())

    def _host(self) -> dict:
        """{dtype name: the packed vector}; a 2-D packed array holds one row per member
        (an ensemble's ``vmap(pack)``): read column by column, that is the pack of the
        stacked tree, leaf by leaf with the members inside each leaf."""
        host = {k: sharding.to_host(v) for k, v in self._packed.items()}
        return {k: v.T.ravel() if v.ndim == 2 else v for k, v in host.items()}

    def read(self):
        """The tree's leaves as numpy arrays (waits for the device if needed)."""
        host = self._host()
        return self._treedef.unflatten([host[name][a:b].reshape(shape)
                                        for name, a, b, shape in self._layout])

    def floats(self):
        """The tree's leaves as Python floats; every leaf must be a scalar."""
        if any(shape != () for _, _, _, shape in self._layout):
            raise ValueError("HostReader.floats: every leaf must be a scalar; use read()")
        # one tolist() per dtype: Python floats of all the scalars at C speed
        values = {k: np.asarray(v, np.float64).tolist() for k, v in self._host().items()}
        return self._treedef.unflatten([values[name][a] for name, a, _, _ in self._layout])
