"""A fully connected network on flattened images: the smallest model that shows weight drift.

Parameters (declared once, in :func:`param_table`; weights are (fan_in, fan_out), applied
as x @ W): ``layer{i}/{w (d_i, width), [b (width,)]}`` for the hidden layers i = 0 …
depth-1 and ``head/{w (width, out_dim), [b (out_dim,)]}``.

The activation of hidden layer i goes through ``tap("layer{i}", p, act)``. The matrix
that reads it (whose drift the paper predicts) is ``layer{i+1}/w``, or ``head/w`` for
the last hidden layer; ``layer{i}/w`` for i >= 1 are the hidden-to-hidden matrices.

``task="classify"`` uses softmax cross-entropy on the integer labels;
``task="regress"`` uses the mean squared error against one-hot targets (a regressor
on the same data, as in the theory's squared-loss setting).

The model is dtype-agnostic: it computes in the dtype of ``batch["x"]`` (the engine
casts inputs and weights to bfloat16 for mixed precision) and returns float32 logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from driftlab.activations import parse_activation
from driftlab.models.arch import params as params_lib
from driftlab.models.arch.base import SIZES, Arch, Dataset, plain_tap, replace_checked
from driftlab.models.arch.init import SCHEMES
from driftlab.models.arch.params import Param, ParamTable
from driftlab.models.arch.instrument import record_reader_input

TASKS = ("classify", "regress")


def _positive_int(field: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"MLPConfig.{field}={value!r} invalid; allowed: a positive int")


@dataclass(frozen=True)
class MLPConfig:
    """Hyper-parameters of the MLP; validated on construction (ValueError names the field).

    ``gain`` scales the init scheme (``fan_in_normal`` with gain 1 is the theory's
    N(0, 1/fan_in); gain √2 is He init).
    """

    act: str = "relu"
    depth: int = 2  # number of hidden layers (each followed by the activation)
    width: int = 32
    init: str = "fan_in_normal"
    gain: float = 1.0
    bias: bool = True
    task: str = "classify"
    in_dim: int = 64  # flattened input size; data() sets it from the data
    out_dim: int = 10  # classes; data() sets it from the data

    def __post_init__(self):
        try:
            parse_activation(self.act)
        except ValueError as err:
            raise ValueError(f"MLPConfig.act: {err}") from None
        for name in ("depth", "width", "in_dim", "out_dim"):
            _positive_int(name, getattr(self, name))
        if self.init not in SCHEMES:
            raise ValueError(f"MLPConfig.init={self.init!r} invalid; allowed: {', '.join(SCHEMES)}")
        if isinstance(self.gain, bool) or not isinstance(self.gain, (int, float)) \
                or not self.gain > 0:
            raise ValueError(f"MLPConfig.gain={self.gain!r} invalid; allowed: a positive number")
        if self.bias not in (True, False):
            raise ValueError(f"MLPConfig.bias={self.bias!r} invalid; allowed: True, False")
        if self.task not in TASKS:
            raise ValueError(f"MLPConfig.task={self.task!r} invalid; allowed: {', '.join(TASKS)}")


PRESETS = {
    "tiny": dict(depth=2, width=32),
    "small": dict(depth=3, width=256),
    "paper": dict(depth=4, width=1024),
}


def config(size: str = "tiny", act: str = "relu", **overrides) -> MLPConfig:
    """The preset ``size`` with activation ``act`` and field ``overrides`` applied."""
    if size not in SIZES or size not in PRESETS:
        raise ValueError(f"size={size!r} invalid; allowed: {', '.join(PRESETS)}")
    return replace_checked(MLPConfig(act=act, **PRESETS[size]), **overrides)


def data(source: str, cfg: MLPConfig, seed: int) -> tuple[MLPConfig, Dataset]:
    """Load images (models/data/images.py); set ``in_dim`` and ``out_dim`` from the data."""
    from driftlab.models.data.images import load_images

    ds = load_images(source, seed)
    in_dim = math.prod(ds.meta["input_shape"])
    return replace(cfg, in_dim=int(in_dim), out_dim=int(ds.meta["num_classes"])), ds


def layer_dims(cfg: MLPConfig) -> list[tuple[str, int, int]]:
    """(name, fan_in, fan_out) of every linear layer, input to output."""
    dims = [cfg.in_dim] + [cfg.width] * cfg.depth
    names = [f"layer{i}" for i in range(cfg.depth)]
    return [(n, dims[i], dims[i + 1]) for i, n in enumerate(names)] + \
        [("head", cfg.width, cfg.out_dim)]


def param_table(cfg: MLPConfig) -> ParamTable:
    """Every parameter of the MLP, once (models/arch/params.py): weights (fan_in, fan_out) from
    the ``cfg.init`` scheme and ``cfg.gain`` (zero-mean, as the theory assumes), biases 0.

    ``layer{i}/w`` makes tap ``layer{i}`` and reads tap ``layer{i-1}`` (the input image for
    i = 0); ``head/w`` reads the last hidden layer. The hidden-to-hidden matrices
    (``layer{i}/w``, i >= 1, the MLP's analogue of transformer block matrices) go to Muon;
    the input layer, the head and the biases to AdamW, as in the paper's code.
    """
    ps = []
    for i, (name, fan_in, fan_out) in enumerate(layer_dims(cfg)):
        head = name == "head"
        tap = None if head else name
        reads = f"layer{i - 1}" if i else None
        ps.append(Param(f"{name}/w", (fan_in, fan_out), "matrix",
                        "muon" if 0 < i < cfg.depth else "adamw", key=(i,), fan_in=fan_in,
                        fan_out=fan_out, reads=reads, makes=tap, head=head))
        if cfg.bias:
            ps.append(Param(f"{name}/b", (fan_out,), "bias", "adamw", init="zeros", makes=tap))
    return ParamTable(tuple(ps), cfg.init, cfg.gain)


def init(key, cfg: MLPConfig) -> dict:
    """Random parameters of :func:`param_table`."""
    return params_lib.init(key, param_table(cfg))


def _dense(x, layer: dict):
    y = x @ layer["w"].astype(x.dtype)
    if "b" in layer:
        y = y + layer["b"].astype(x.dtype)
    return y


def apply(params: dict, batch, cfg: MLPConfig, tap=plain_tap):
    """Logits (B, out_dim), float32, for images ``batch["x"]`` (B, ...) flattened per example."""
    x = batch["x"]
    x = jnp.reshape(x, (x.shape[0], -1))
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    act = parse_activation(cfg.act)
    for i in range(cfg.depth):
        record_reader_input(tap, f"layer{i}", x)  # for the reader pin (models/engine/pins.py)
        x = tap(f"layer{i}", _dense(x, params[f"layer{i}"]), act)
    return _dense(x, params["head"]).astype(jnp.float32)


def loss(logits, batch, cfg: MLPConfig):
    """Batch-mean cross-entropy (classify) or squared error to one-hot (regress); plus accuracy."""
    y = batch["y"]
    logits = logits.astype(jnp.float32)
    if cfg.task == "classify":
        logp = jax.nn.log_softmax(logits, axis=-1)
        value = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))
    else:
        target = jax.nn.one_hot(y, cfg.out_dim, dtype=jnp.float32)
        value = jnp.mean(jnp.sum(jnp.square(logits - target), axis=-1))
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == y).astype(jnp.float32))
    return value, {"accuracy": accuracy}


def downstream(cfg: MLPConfig) -> dict[str, str]:
    """Tap ``layer{i}`` -> ``layer{i+1}/w``, the hidden matrix that reads it (i < depth-1);
    the last layer is read by the head (:func:`output_heads`)."""
    return params_lib.downstream(param_table(cfg))


def output_heads(cfg: MLPConfig) -> dict[str, str | None]:
    """{"head/w": "layer{depth-1}"}: the classifier reads the last hidden layer."""
    return params_lib.output_heads(param_table(cfg))


ARCH = Arch(name="mlp", config=config, data=data, init=init, apply=apply, loss=loss,
            downstream=downstream, output_heads=output_heads, params=param_table)
