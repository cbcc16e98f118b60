"""CIFAR-style ResNet (He et al. 2016) in pure JAX, with every nonlinearity tapped.

Structure: a 3×3 stem conv → norm → σ, then ``len(widths)`` stages of basic residual
blocks (stage s has ``blocks[s]`` blocks of width ``widths[s]``; the first block of
every stage after the first halves the resolution with stride 2), global average
pooling and a linear head. A basic block computes::

    act1 = σ(norm1(conv1(x)))                      tap "stage{s}.block{b}.act1"
    act2 = σ(norm2(conv2(act1)) + shortcut(x))     tap "stage{s}.block{b}.act2"

where the shortcut is the identity, or a 1×1 strided conv + norm when the shape
changes ("option B" of He et al.; the original CIFAR ResNets used zero-padding,
option A, which has no weights). The stem's activation is tap "stem.act". Stages
are numbered from 1, blocks from 0.

Normalization (``norm``) is purely functional — parameters hold no running state:

* ``"batch"`` (default, as in He et al.): BatchNorm with the statistics of the
  current batch, in training *and* evaluation (no running averages). Under
  data-parallel ``jit`` the statistics are over the global batch.
* ``"group"``: GroupNorm with ``groups`` groups, independent of the batch.
* ``"none"``: no normalization; convolutions then get a zero-initialized bias.

Note for the drift question: a per-channel norm after a conv removes a shift of
that conv's output mean, so it can mask how drift of the downstream conv turns
into sparsity; ``norm="none"`` or ``"group"`` are the controls.

Parameters (declared once, in :func:`param_table`; conv weights HWIO)::

    stem/{conv/w, norm/{scale, bias}},
    stage{s}/block{b}/{conv1, norm1, conv2, norm2[, short_conv, short_norm]},
    head/{w, b}

(with ``norm="none"`` every conv has a bias ``b`` and the norm nodes are empty dicts).

Sizes: ``tiny`` widths 8/16/32, one block per stage, 8×8×1 images (trains in
seconds on the 8×8 digits); ``small`` widths 16/32/64, two blocks per stage
(ResNet-14), 28×28×1 (MNIST-sized); ``paper`` ResNet-20 of He et al. §4.2, widths
16/32/64, three blocks per stage, 32×32×3 (CIFAR-10). ``data()`` replaces the image
shape and class count by those of the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax.numpy as jnp

from driftlab.activations import parse_activation
from driftlab.models.arch import layers as L
from driftlab.models.arch import params as params_lib
from driftlab.models.arch.base import SIZES, Arch, Dataset, plain_tap, replace_checked
from driftlab.models.arch.init import SCHEMES
from driftlab.models.arch.params import Param, ParamTable, conv_fans
from driftlab.models.arch.stein_readers import LinearReader, TapReaders, no_reader_hook

NORMS = ("batch", "group", "none")


def _bad(field: str, value, allowed: str):
    return ValueError(f"ResNetConfig.{field}={value!r} invalid; allowed: {allowed}")


def _is_pos_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


@dataclass(frozen=True)
class ResNetConfig:
    """Hyper-parameters of the ResNet; validated on construction (ValueError names the field)."""

    act: str = "relu"
    size: str = "tiny"
    image_shape: tuple = (8, 8, 1)  # (H, W, C)
    num_classes: int = 10
    widths: tuple = (8, 16, 32)  # channels per stage
    blocks: tuple = (1, 1, 1)  # basic blocks per stage
    norm: str = "batch"
    groups: int = 4  # GroupNorm groups (norm="group" only)
    norm_eps: float = 1e-5
    init: str = "fan_in_normal"  # scheme for conv weights (models/arch/init.py)
    gain: float = math.sqrt(2.0)  # √2 with fan_in_normal is He/Kaiming normal
    head_init: str = "fan_in_normal"
    head_gain: float = 1.0

    def __post_init__(self):
        # Lists arrive from JSON/CLI overrides; tuples keep the config hashable for jit.
        for name in ("image_shape", "widths", "blocks"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        if self.norm is None:  # `--set norm=none` parses as None
            object.__setattr__(self, "norm", "none")
        try:
            parse_activation(self.act)
        except ValueError as err:
            raise ValueError(f"ResNetConfig.act: {err}") from None
        if self.size not in SIZES:
            raise _bad("size", self.size, ", ".join(SIZES))
        if not (isinstance(self.image_shape, tuple) and len(self.image_shape) == 3
                and all(_is_pos_int(v) for v in self.image_shape)):
            raise _bad("image_shape", self.image_shape, "a tuple (H, W, C) of positive ints")
        if not _is_pos_int(self.num_classes) or self.num_classes < 2:
            raise _bad("num_classes", self.num_classes, "an int >= 2")
        for name in ("widths", "blocks"):
            v = getattr(self, name)
            if not (isinstance(v, tuple) and v and all(_is_pos_int(x) for x in v)):
                raise _bad(name, v, "a non-empty tuple of positive ints")
        if len(self.blocks) != len(self.widths):
            raise _bad("blocks", self.blocks, f"a tuple of length len(widths)={len(self.widths)}")
        if self.norm not in NORMS:
            raise _bad("norm", self.norm, ", ".join(NORMS))
        if not _is_pos_int(self.groups):
            raise _bad("groups", self.groups, "a positive int")
        if self.norm == "group" and any(w % self.groups for w in self.widths):
            raise _bad("groups", self.groups, f"a divisor of every width in {self.widths}")
        for name in ("init", "head_init"):
            if getattr(self, name) not in SCHEMES:
                raise _bad(name, getattr(self, name), ", ".join(SCHEMES))
        for name in ("gain", "head_gain", "norm_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise _bad(name, v, "a positive number")


PRESETS = {
    "tiny": dict(image_shape=(8, 8, 1), widths=(8, 16, 32), blocks=(1, 1, 1)),
    "small": dict(image_shape=(28, 28, 1), widths=(16, 32, 64), blocks=(2, 2, 2)),
    "paper": dict(image_shape=(32, 32, 3), widths=(16, 32, 64), blocks=(3, 3, 3)),
}


def config(size: str = "tiny", act: str = "relu", **overrides) -> ResNetConfig:
    """The preset ``size`` with activation ``act`` and field ``overrides`` applied."""
    if size not in PRESETS:
        raise ValueError(f"size={size!r} invalid; allowed: {', '.join(PRESETS)}")
    return replace_checked(ResNetConfig(act=act, size=size, **PRESETS[size]), **overrides)


def data(source: str, cfg: ResNetConfig, seed: int) -> tuple[ResNetConfig, Dataset]:
    """Load images (models/data/images.py) and adapt ``image_shape``/``num_classes`` to them."""
    from driftlab.models.data.images import load_images

    ds = load_images(source, seed, num_classes_synthetic=cfg.num_classes,
                     image_shape_synthetic=tuple(cfg.image_shape))
    shape = tuple(int(v) for v in ds.meta["input_shape"])
    return replace(cfg, image_shape=shape, num_classes=int(ds.meta["num_classes"])), ds


# --------------------------------------------------------------------------- structure


def _block_names(cfg: ResNetConfig):
    """(stage name, block name, in channels, out channels, stride) for every block, in order."""
    out, cin = [], cfg.widths[0]
    for s, (width, n) in enumerate(zip(cfg.widths, cfg.blocks), start=1):
        for b in range(n):
            stride = 2 if (s > 1 and b == 0) else 1
            out.append((f"stage{s}", f"block{b}", cin, width, stride))
            cin = width
    return out


def _needs_projection(cin: int, cout: int, stride: int) -> bool:
    return cin != cout or stride != 1


# --------------------------------------------------------------------------- init


def param_table(cfg: ResNetConfig) -> ParamTable:
    """Every parameter of the ResNet, once (models/arch/params.py).

    Init: conv kernels from ``cfg.init``/``gain`` with fan_in = kh·kw·C_in, fan_out =
    kh·kw·C_out (:func:`models.params.conv_fans`), the head from ``head_init``/``head_gain``,
    norm scales 1 and biases 0 (conv biases, present only with ``norm="none"``, 0). Keys:
    the stem conv ``fold_in(key, 0)``; block i (in :func:`_block_names` order) splits
    ``fold_in(key, 1 + i)`` in 3 for conv1, conv2 and short_conv; the head ``fold_in(key,
    10_000)``. Every parameter goes to AdamW (the kernels are 4-D; no Muon matrices).

    Roles: conv1 and a projection's short_conv read the tap before the block (``stem.act``
    or the previous ``act2``; conv1, declared first, is its downstream matrix), conv2 reads
    ``act1``, the head reads the last ``act2`` through the pool. ``makes`` only with
    ``norm="none"``: then conv1 (+ b) makes ``act1``, conv2 and short_conv (+ b) make
    ``act2``, the stem conv ``stem.act``; with a norm between, no weight makes p.
    The per-layer estimator's readers (:func:`readers`: conv strides, padding, identity
    shortcuts, the pooled head) stay hand-written, since a Param does not carry a conv's
    stride/padding; tests/test_param_tables.py checks they name the table's readers.
    """
    use_bias = cfg.norm == "none"
    ps: list[Param] = []
    empty: list[str] = []

    def conv_norm(path, norm_path, kernel, cin, cout, key, reads, makes):
        shape = (kernel, kernel, cin, cout)
        fan_in, fan_out = conv_fans(shape)
        made = makes if use_bias else None
        ps.append(Param(f"{path}/w", shape, "conv", "adamw", key=key, fan_in=fan_in,
                        fan_out=fan_out, reads=reads, makes=made))
        if use_bias:
            ps.append(Param(f"{path}/b", (cout,), "bias", "adamw", init="zeros", makes=made))
            empty.append(norm_path)
        else:
            ps.append(Param(f"{norm_path}/scale", (cout,), "norm", "adamw", init="ones"))
            ps.append(Param(f"{norm_path}/bias", (cout,), "norm", "adamw", init="zeros"))

    conv_norm("stem/conv", "stem/norm", 3, cfg.image_shape[2], cfg.widths[0], (0,), None,
              "stem.act")
    prev = "stem.act"
    for i, (stage, block, cin, cout, stride) in enumerate(_block_names(cfg)):
        path, name = f"{stage}/{block}", f"{stage}.{block}"
        conv_norm(f"{path}/conv1", f"{path}/norm1", 3, cin, cout, (1 + i, (3, 0)), prev,
                  f"{name}.act1")
        conv_norm(f"{path}/conv2", f"{path}/norm2", 3, cout, cout, (1 + i, (3, 1)),
                  f"{name}.act1", f"{name}.act2")
        if _needs_projection(cin, cout, stride):
            conv_norm(f"{path}/short_conv", f"{path}/short_norm", 1, cin, cout,
                      (1 + i, (3, 2)), prev, f"{name}.act2")
        prev = f"{name}.act2"
    ps.append(Param("head/w", (cfg.widths[-1], cfg.num_classes), "matrix", "adamw",
                    key=(10_000,), fan_in=cfg.widths[-1], fan_out=cfg.num_classes,
                    scheme=cfg.head_init, gain=cfg.head_gain, reads=prev, head=True))
    ps.append(Param("head/b", (cfg.num_classes,), "bias", "adamw", init="zeros"))
    return ParamTable(tuple(ps), cfg.init, cfg.gain, empty=tuple(empty))


def init(key, cfg: ResNetConfig) -> dict:
    """Random parameters of :func:`param_table`."""
    return params_lib.init(key, param_table(cfg))


def param_count(cfg: ResNetConfig) -> int:
    """Number of parameters (models/params.count)."""
    return params_lib.count(param_table(cfg))


# --------------------------------------------------------------------------- forward


def _norm(p: dict, x, cfg: ResNetConfig):
    if cfg.norm == "batch":
        return L.batch_norm(p, x, cfg.norm_eps)
    if cfg.norm == "group":
        return L.group_norm(p, x, cfg.groups, cfg.norm_eps)
    return x


def apply(params: dict, batch, cfg: ResNetConfig, tap=plain_tap):
    """Logits (B, num_classes) for images ``batch["x"]`` (B, H, W, C).

    Every conv and the head pass their output through ``tap.reader_out(weight path, z)``
    when the tap has that method (identity otherwise): the per-layer Stein estimator
    (models/measure/conv_readers.py) shifts a reader's output there, before its norm.
    """
    act = parse_activation(cfg.act)
    out = getattr(tap, "reader_out", None) or no_reader_hook
    conv = lambda path, p, x, **kw: out(f"{path}/w", L.conv2d(p, x, **kw))
    x = jnp.asarray(batch["x"])
    p = params["stem"]
    h = tap("stem.act", _norm(p["norm"], conv("stem/conv", p["conv"], x), cfg), act)
    for stage, block, cin, cout, stride in _block_names(cfg):
        p = params[stage][block]
        name, path = f"{stage}.{block}", f"{stage}/{block}"
        z = _norm(p["norm1"], conv(f"{path}/conv1", p["conv1"], h, stride=stride), cfg)
        a1 = tap(f"{name}.act1", z, act)
        z = _norm(p["norm2"], conv(f"{path}/conv2", p["conv2"], a1), cfg)
        if "short_conv" in p:
            short = _norm(p["short_norm"], conv(f"{path}/short_conv", p["short_conv"], h,
                                                stride=stride, padding=0), cfg)
        else:
            short = h
        h = tap(f"{name}.act2", z + short, act)
    return out("head/w", L.dense(params["head"], L.global_avg_pool(h)))


def loss(outputs, batch, cfg: ResNetConfig):
    """Mean softmax cross-entropy over the batch; metrics ``{"accuracy"}``."""
    value, acc = L.softmax_cross_entropy(outputs, jnp.asarray(batch["y"]))
    return value, {"accuracy": acc}


def downstream(cfg: ResNetConfig) -> dict[str, str]:
    """For each tap, the weight that reads its output (from :func:`param_table`).

    ``act1`` → ``conv2`` of the same block; ``stem.act`` and each ``act2`` → ``conv1``
    of the next block (which is also read by that block's shortcut; conv1 is the one
    feeding another activation; a projection block's ``short_conv`` reads it too). The
    last ``act2`` is read by the head through the pool (:func:`output_heads`).
    """
    return params_lib.downstream(param_table(cfg))


def output_heads(cfg: ResNetConfig) -> dict[str, str | None]:
    """{"head/w": the last block's ``act2``} (read through the global average pool)."""
    return params_lib.output_heads(param_table(cfg))


def readers(cfg: ResNetConfig) -> dict[str, TapReaders]:
    """{tap: everything that reads its h}, for the per-layer Stein estimator.

    ``act1`` → conv2 of its block (then norm2). ``stem.act`` and each ``act2`` → conv1 of
    the next block and that block's shortcut: its 1×1 ``short_conv`` (stride as conv1,
    no padding) in a projection block, else the identity into the next block's ``act2``.
    The last ``act2`` → global average pool → ``head/w``.

    Hand-written beside :func:`param_table` (a Param carries no stride, padding or identity
    shortcut); tests/test_param_tables.py checks these name exactly the table's readers.
    """
    conv = lambda path, **kw: LinearReader(f"{path}/w", "conv", cfg.init, float(cfg.gain), **kw)
    out, prev = {}, "stem.act"
    for stage, block, cin, cout, stride in _block_names(cfg):
        path = f"{stage}/{block}"
        if _needs_projection(cin, cout, stride):
            prev_readers = TapReaders((conv(f"{path}/conv1", stride=stride),
                                       conv(f"{path}/short_conv", stride=stride, padding=0)))
        else:
            prev_readers = TapReaders((conv(f"{path}/conv1", stride=stride),),
                                      identity_into=f"{stage}.{block}.act2")
        out[prev] = prev_readers
        out[f"{stage}.{block}.act1"] = TapReaders((conv(f"{path}/conv2"),))
        prev = f"{stage}.{block}.act2"
    out[prev] = TapReaders((LinearReader("head/w", "pool_dense", cfg.head_init,
                                         float(cfg.head_gain)),))
    return out


ARCH = Arch(name="resnet", config=config, data=data, init=init, apply=apply, loss=loss,
            downstream=downstream, output_heads=output_heads, params=param_table,
            readers=readers)
