"""Vision Transformer (Dosovitskiy et al. 2021) in pure JAX, with the MLP activation tapped.

Structure: a patch×patch patch embedding (a strided conv, i.e. a linear map of each
flattened patch), an optional learned CLS token, learned position embeddings, ``depth``
pre-norm blocks::

    x = x + attn(LN1(x))
    x = x + fc2(σ(fc1(LN2(x))))        σ through tap "block{i}.mlp", fc1: D → mlp_ratio·D

a final LayerNorm, pooling (the CLS token, or the mean of the patch tokens) and a
linear classification head. No dropout (the drift question is about the optimizer,
and dropout would make apply stochastic).

Parameters (declared once, in :func:`param_table`; dense weights are (fan_in, fan_out))::

    patch/{w, b}, pos (1, T, D), [cls (1, 1, D)],
    block{i}/{ln1/{scale, bias}, attn/{q, k, v, o}/{w, b}, ln2, mlp/{fc1, fc2}/{w, b}},
    ln_f/{scale, bias}, head/{w, b}

The matrix whose drift the paper predicts is ``block{i}/mlp/fc2/w``.

Init: every matrix from ``init``/``gain`` (default fan_in_normal, gain 1, the theory's
setting; ``xavier_normal`` is closer to the original ViT), biases 0, LayerNorm 1/0,
position embeddings and CLS token N(0, 0.02²) as in the reference implementation.
The head is *not* zero-initialized (the original ViT's choice), since a zero head
would make every gradient below it vanish at step 0.

Sizes: ``tiny`` patch 2 on 8×8×1 (16 tokens), width 32, 2 blocks, 2 heads (trains in
seconds on the 8×8 digits); ``small`` patch 4 on 28×28×1 (49 tokens), width 64,
4 blocks, 4 heads; ``paper`` ViT-S widths — width 384, 12 blocks, 6 heads, MLP 1536 —
with patch 4 on 32×32×3 CIFAR images (64 tokens), the usual CIFAR adaptation of
ViT-S/16 (override ``patch=16`` for 224×224 inputs). ``data()`` replaces the image
shape and class count by those of the data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax.numpy as jnp

from driftlab.activations import parse_activation
from driftlab.models.arch import layers as L
from driftlab.models.arch import params as params_lib
from driftlab.models.arch.base import SIZES, Arch, Dataset, plain_tap, replace_checked
from driftlab.models.arch.init import SCHEMES
from driftlab.models.arch.params import Param, ParamTable

POOLS = ("cls", "mean")
POS_STD = 0.02  # position/CLS embedding scale of the reference ViT


def _bad(field: str, value, allowed: str):
    return ValueError(f"ViTConfig.{field}={value!r} invalid; allowed: {allowed}")


def _is_pos_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of the ViT; validated on construction (ValueError names the field)."""

    act: str = "gelu"
    size: str = "tiny"
    image_shape: tuple = (8, 8, 1)  # (H, W, C)
    num_classes: int = 10
    patch: int = 2
    dim: int = 32
    depth: int = 2
    n_heads: int = 2
    mlp_ratio: int = 4
    pool: str = "cls"
    bias: bool = True
    norm_eps: float = 1e-6
    init: str = "fan_in_normal"
    gain: float = 1.0

    def __post_init__(self):
        if isinstance(self.image_shape, list):  # lists arrive from JSON/CLI overrides
            object.__setattr__(self, "image_shape", tuple(self.image_shape))
        try:
            parse_activation(self.act)
        except ValueError as err:
            raise ValueError(f"ViTConfig.act: {err}") from None
        if self.size not in SIZES:
            raise _bad("size", self.size, ", ".join(SIZES))
        if not (isinstance(self.image_shape, tuple) and len(self.image_shape) == 3
                and all(_is_pos_int(v) for v in self.image_shape)):
            raise _bad("image_shape", self.image_shape, "a tuple (H, W, C) of positive ints")
        for name in ("num_classes", "patch", "dim", "depth", "n_heads", "mlp_ratio"):
            if not _is_pos_int(getattr(self, name)):
                raise _bad(name, getattr(self, name), "a positive int")
        if self.num_classes < 2:
            raise _bad("num_classes", self.num_classes, "an int >= 2")
        H, W, _ = self.image_shape
        if H % self.patch or W % self.patch:
            raise _bad("patch", self.patch, f"a divisor of the image height and width {H}x{W}")
        if self.dim % self.n_heads:
            raise _bad("n_heads", self.n_heads, f"a divisor of dim={self.dim}")
        if self.pool not in POOLS:
            raise _bad("pool", self.pool, ", ".join(POOLS))
        if self.bias not in (True, False):
            raise _bad("bias", self.bias, "True, False")
        if self.init not in SCHEMES:
            raise _bad("init", self.init, ", ".join(SCHEMES))
        for name in ("gain", "norm_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise _bad(name, v, "a positive number")

    @property
    def num_patches(self) -> int:
        return (self.image_shape[0] // self.patch) * (self.image_shape[1] // self.patch)

    @property
    def num_tokens(self) -> int:
        return self.num_patches + (1 if self.pool == "cls" else 0)


PRESETS = {
    "tiny": dict(image_shape=(8, 8, 1), patch=2, dim=32, depth=2, n_heads=2),
    "small": dict(image_shape=(28, 28, 1), patch=4, dim=64, depth=4, n_heads=4),
    "paper": dict(image_shape=(32, 32, 3), patch=4, dim=384, depth=12, n_heads=6),
}


def config(size: str = "tiny", act: str = "gelu", **overrides) -> ViTConfig:
    """The preset ``size`` with activation ``act`` and field ``overrides`` applied."""
    if size not in PRESETS:
        raise ValueError(f"size={size!r} invalid; allowed: {', '.join(PRESETS)}")
    return replace_checked(ViTConfig(act=act, size=size, **PRESETS[size]), arch="vit",
                           **overrides)


def data(source: str, cfg: ViTConfig, seed: int) -> tuple[ViTConfig, Dataset]:
    """Load images (models/data/images.py) and adapt ``image_shape``/``num_classes`` to them.

    Raises ValueError naming ``patch`` if the data's image size is not a multiple of it.
    """
    from driftlab.models.data.images import load_images

    ds = load_images(source, seed, num_classes_synthetic=cfg.num_classes,
                     image_shape_synthetic=tuple(cfg.image_shape))
    shape = tuple(int(v) for v in ds.meta["input_shape"])
    return replace(cfg, image_shape=shape, num_classes=int(ds.meta["num_classes"])), ds


# --------------------------------------------------------------------------- init


def param_table(cfg: ViTConfig) -> ParamTable:
    """Every parameter of the ViT, once (models/arch/params.py; see the module docstring for
    the init of each). Block matrices go to Muon; the patch conv, position and CLS
    embeddings, norms, biases and the head to AdamW. ``block{i}/mlp/fc1`` makes tap
    ``block{i}.mlp`` and ``block{i}/mlp/fc2/w`` reads it; the head reads the final norm."""
    D, M, C, P = cfg.dim, cfg.mlp_ratio * cfg.dim, cfg.image_shape[2], cfg.patch

    def dense(path, fan_in, fan_out, key, group="muon", bias=cfg.bias, reads=None, makes=None,
              head=False):
        out = [Param(f"{path}/w", (fan_in, fan_out), "matrix", group, key=key, fan_in=fan_in,
                     fan_out=fan_out, reads=reads, makes=makes, head=head)]
        if bias:
            out.append(Param(f"{path}/b", (fan_out,), "bias", "adamw", init="zeros", makes=makes))
        return out

    def norm(path):
        return [Param(f"{path}/scale", (D,), "norm", "adamw", init="ones"),
                Param(f"{path}/bias", (D,), "norm", "adamw", init="zeros")]

    ps = [Param("patch/w", (P, P, C, D), "conv", "adamw", key=(0,), fan_in=P * P * C,
                fan_out=P * P * D)]
    if cfg.bias:
        ps.append(Param("patch/b", (D,), "bias", "adamw", init="zeros"))
    ps.append(Param("pos", (1, cfg.num_tokens, D), "position", "adamw", init="normal",
                    key=(1,), std=POS_STD))
    if cfg.pool == "cls":
        ps.append(Param("cls", (1, 1, D), "embedding", "adamw", init="normal", key=(2,),
                        std=POS_STD))
    for i in range(cfg.depth):
        b, tap, k = f"block{i}", f"block{i}.mlp", 100 + i  # fold_in(key, 100 + i), split in 3
        ps += norm(f"{b}/ln1") + norm(f"{b}/ln2")
        for j, name in enumerate(("q", "k", "v", "o")):  # attention: split in 4 again
            ps += dense(f"{b}/attn/{name}", D, D, (k, (3, 0), (4, j)))
        ps += dense(f"{b}/mlp/fc1", D, M, (k, (3, 1)), makes=tap)
        ps += dense(f"{b}/mlp/fc2", M, D, (k, (3, 2)), reads=tap)
    ps += norm("ln_f")
    ps += dense("head", D, cfg.num_classes, (10_000,), group="adamw", bias=True, head=True)
    return ParamTable(tuple(ps), cfg.init, cfg.gain)


def init(key, cfg: ViTConfig) -> dict:
    """Random parameters of :func:`param_table`."""
    return params_lib.init(key, param_table(cfg))


# --------------------------------------------------------------------------- forward


def apply(params: dict, batch, cfg: ViTConfig, tap=plain_tap):
    """Logits (B, num_classes) for images ``batch["x"]`` (B, H, W, C)."""
    act = parse_activation(cfg.act)
    x = L.patch_embed(params["patch"], jnp.asarray(batch["x"]), cfg.patch)  # (B, N, D)
    if cfg.pool == "cls":
        cls = jnp.broadcast_to(params["cls"].astype(x.dtype), (x.shape[0], 1, cfg.dim))
        x = jnp.concatenate([cls, x], axis=1)
    x = x + params["pos"].astype(x.dtype)
    for i in range(cfg.depth):
        p = params[f"block{i}"]
        x = x + L.multi_head_attention(p["attn"], L.layer_norm(p["ln1"], x, cfg.norm_eps),
                                       cfg.n_heads)
        h = tap(f"block{i}.mlp", L.dense(p["mlp"]["fc1"], L.layer_norm(p["ln2"], x, cfg.norm_eps)), act)
        x = x + L.dense(p["mlp"]["fc2"], h)
    x = L.layer_norm(params["ln_f"], x, cfg.norm_eps)
    pooled = x[:, 0] if cfg.pool == "cls" else jnp.mean(x, axis=1)
    return L.dense(params["head"], pooled)


def loss(outputs, batch, cfg: ViTConfig):
    """Mean softmax cross-entropy over the batch; metrics ``{"accuracy"}``."""
    value, acc = L.softmax_cross_entropy(outputs, jnp.asarray(batch["y"]))
    return value, {"accuracy": acc}


def downstream(cfg: ViTConfig) -> dict[str, str]:
    """Tap ``block{i}.mlp`` → ``block{i}/mlp/fc2/w``, the MLP's output projection."""
    return params_lib.downstream(param_table(cfg))


def output_heads(cfg: ViTConfig) -> dict[str, str | None]:
    """{"head/w": None}: the classifier reads the final LayerNorm of the pooled token."""
    return params_lib.output_heads(param_table(cfg))


ARCH = Arch(name="vit", config=config, data=data, init=init, apply=apply, loss=loss,
            downstream=downstream, output_heads=output_heads, params=param_table)
