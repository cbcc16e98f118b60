"""GPT-nano: a nanoGPT-style decoder-only transformer in pure JAX.

Pre-norm blocks (RMSNorm by default, LayerNorm optional), rotary (default) or learned
positions, causal self-attention through ``jax.nn.dot_product_attention`` (so a GPU
can use cuDNN flash attention in bf16), no biases, a 4x MLP whose activation goes
through ``tap("block{i}.mlp", p, act)``, residual branches optionally scaled by
1/sqrt(2·n_layer), a final norm (``final_norm``), and the token embedding tied to the
output head (``tied_head``; untied adds a (D, V) ``head`` matrix).

Init (``init``): ``gpt2_normal`` N(0, 0.02²) by default (nanoGPT); ``fan_in_normal``
N(0, gain²/fan_in); ``torch_default`` U(±gain/√fan_in), PyTorch's nn.Linear default
(not Gaussian: the per-layer Stein prediction is then approximate).

Parameters: declared once, in :func:`param_table` (path, shape, fan-in, init, role and
optimizer group of each; models/arch/params.py derives init, count, maps and routing). The
matrix whose drift the paper predicts is ``block{i}/mlp/w_out``: it reads the MLP
activation.

Sizes: ``tiny`` 2 layers × 32, 2 heads, block 32 (trains in seconds on a CPU);
``small`` nanoGPT's CPU recipe, 4 layers × 128, 4 heads, block 64; ``paper`` the
paper's GPT-nano, 12 layers × 768, 12 heads, MLP 3072, vocabulary 50257, block 2048
(~124M parameters). ``data()`` replaces ``vocab_size`` by the data's vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp

from driftlab.activations import parse_activation
from driftlab.models.arch import params as params_lib
from driftlab.models.arch.base import SIZES, Arch, Dataset, plain_tap, replace_checked
from driftlab.models.arch.linear import linear
from driftlab.models.arch.params import Param, ParamTable
from driftlab.models.arch.instrument import record_reader_input

NORMS = ("rmsnorm", "layernorm")
POSITIONS = ("rope", "learned")
BRANCH_SCALES = ("none", "attn", "both")  # which residual branches get 1/sqrt(2·n_layer)
INITS = ("gpt2_normal", "fan_in_normal", "torch_default")
DTYPES = ("float32", "bfloat16")
ATTN_IMPLS = ("auto", "xla", "cudnn")


def _choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"GPTConfig.{field}={value!r} invalid; allowed: "
                         f"{', '.join(map(str, allowed))}")


def _positive(field: str, value, kind=int) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"GPTConfig.{field}={value!r} invalid; allowed: a positive "
                         f"{kind.__name__}")


@dataclass(frozen=True)
class GPTConfig:
    """Hyper-parameters of GPT-nano; validated on construction (ValueError names the field)."""

    act: str = "relu"
    n_layer: int = 2
    n_heads: int = 2
    n_embd: int = 32
    mlp_ratio: int = 4
    vocab_size: int = 256
    block_size: int = 32
    norm: str = "rmsnorm"
    norm_affine: bool = True
    norm_eps: float = 1e-6
    pos: str = "rope"
    rope_base: float = 10000.0
    # The paper scales the attention branch; "both" also scales the MLP branch.
    branch_scale: str = "attn"
    init: str = "gpt2_normal"
    gain: float = 1.0
    tied_head: bool = True  # False: a separate (D, V) head matrix, same init scheme
    final_norm: bool = True  # False: the head reads the residual stream directly
    compute_dtype: str = "float32"
    attn_impl: str = "auto"  # "auto" lets JAX choose (XLA on CPU, cuDNN where it can)

    def __post_init__(self):
        try:
            parse_activation(self.act)
        except ValueError as err:
            raise ValueError(f"GPTConfig.act: {err}") from None
        for name in ("n_layer", "n_heads", "n_embd", "mlp_ratio", "vocab_size", "block_size"):
            _positive(name, getattr(self, name))
        for name in ("norm_eps", "rope_base", "gain"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            _positive(name, value, float)
        _choice("norm", self.norm, NORMS)
        _choice("norm_affine", self.norm_affine, (True, False))
        _choice("tied_head", self.tied_head, (True, False))
        _choice("final_norm", self.final_norm, (True, False))
        _choice("pos", self.pos, POSITIONS)
        _choice("branch_scale", self.branch_scale, BRANCH_SCALES)
        _choice("init", self.init, INITS)
        _choice("compute_dtype", self.compute_dtype, DTYPES)
        _choice("attn_impl", self.attn_impl, ATTN_IMPLS)
        if self.n_embd % self.n_heads:
            raise ValueError(f"GPTConfig.n_embd={self.n_embd} invalid; allowed: a multiple "
                             f"of n_heads={self.n_heads}")
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(f"GPTConfig.n_embd={self.n_embd} invalid with pos='rope'; "
                             f"allowed: n_embd/n_heads even (got head_dim {self.head_dim})")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_heads

    @property
    def mlp_hidden(self) -> int:
        return self.mlp_ratio * self.n_embd


PRESETS = {
    "tiny": dict(n_layer=2, n_heads=2, n_embd=32, vocab_size=256, block_size=32),
    "small": dict(n_layer=4, n_heads=4, n_embd=128, vocab_size=256, block_size=64),
    "paper": dict(n_layer=12, n_heads=12, n_embd=768, vocab_size=50257, block_size=2048),
}


def config(size: str = "tiny", act: str = "relu", **overrides) -> GPTConfig:
    """The preset ``size`` with activation ``act`` and field ``overrides`` applied."""
    if size not in SIZES or size not in PRESETS:
        raise ValueError(f"size={size!r} invalid; allowed: {', '.join(PRESETS)}")
    return replace_checked(GPTConfig(act=act, **PRESETS[size]), arch="gpt", **overrides)


def data(source: str, cfg: GPTConfig, seed: int) -> tuple[GPTConfig, Dataset]:
    """Load a text source (models/data/text.py) and set ``vocab_size`` to its vocabulary."""
    from driftlab.models.data.text import load_text

    ds = load_text(source, seed, cfg.block_size)
    return replace(cfg, vocab_size=int(ds.meta["vocab_size"])), ds


# --------------------------------------------------------------------------- init


def param_table(cfg: GPTConfig) -> ParamTable:
    """Every parameter of GPT-nano, once (models/arch/params.py); weights are (fan_in, fan_out).

    Embeddings use fan_in = n_embd because the tied head reads them as a (D → V) matrix;
    with ``fan_in_normal`` this gives unit-variance logits at init. Block matrices go to
    Muon, everything else (embeddings, the head, norm scales) to AdamW, as in the paper's
    code. Norm scales (1 at init) exist only with ``norm_affine``. ``block{i}/mlp/w_in``
    makes tap ``block{i}.mlp`` (read from the normalized stream) and ``block{i}/mlp/w_out``
    reads it; the head (the tied ``wte``, or ``head`` when untied) reads the final norm
    (or the stream), no tap.
    """
    D, H, V = cfg.n_embd, cfg.mlp_hidden, cfg.vocab_size
    norms = [f"block{i}/{n}" for i in range(cfg.n_layer) for n in ("ln1", "ln2")] \
        + (["ln_f"] if cfg.final_norm else [])

    def matrix(path, fan_in, fan_out, key, **role):
        return Param(path, (fan_in, fan_out), "matrix", "muon", key=key, fan_in=fan_in,
                     fan_out=fan_out, **role)

    ps = [Param("wte", (V, D), "embedding", "adamw", key=(0,), fan_in=D, fan_out=V,
                head=cfg.tied_head)]
    if cfg.pos == "learned":
        ps.append(Param("wpe", (cfg.block_size, D), "position", "adamw", key=(1,), fan_in=D,
                        fan_out=D))
    for i in range(cfg.n_layer):
        b, tap = f"block{i}", f"block{i}.mlp"
        k = [(100 + i, (6, j)) for j in range(6)]  # fold_in(key, 100 + i), split in 6
        ps += [matrix(f"{b}/attn/w_q", D, D, k[0]), matrix(f"{b}/attn/w_k", D, D, k[1]),
               matrix(f"{b}/attn/w_v", D, D, k[2]), matrix(f"{b}/attn/w_o", D, D, k[3]),
               matrix(f"{b}/mlp/w_in", D, H, k[4], makes=tap),
               matrix(f"{b}/mlp/w_out", H, D, k[5], reads=tap)]
    if cfg.norm_affine:
        ps += [Param(f"{n}/scale", (D,), "norm", "adamw", init="ones") for n in norms]
    if not cfg.tied_head:
        ps.append(Param("head", (D, V), "matrix", "adamw", key=(2,), fan_in=D, fan_out=V,
                        head=True))
    return ParamTable(tuple(ps), cfg.init, cfg.gain,
                      empty=() if cfg.norm_affine else tuple(norms))


def init(key, cfg: GPTConfig) -> dict:
    """Random parameters of :func:`param_table`: matrices from the ``cfg.init`` scheme
    and ``cfg.gain``, norm scales at 1."""
    return params_lib.init(key, param_table(cfg))


# --------------------------------------------------------------------------- layers


def norm(x, p: dict, cfg: GPTConfig):
    """RMSNorm x/rms(x) or LayerNorm (x-mean)/std(x), times ``scale`` if present; no bias.

    Statistics are computed in float32 so bf16 activations do not lose the mean.
    """
    x32 = x.astype(jnp.float32)
    if cfg.norm == "layernorm":
        x32 = x32 - jnp.mean(x32, axis=-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + cfg.norm_eps)
    if "scale" in p:
        y = y * p["scale"]
    return y.astype(x.dtype)


def rope_tables(T: int, head_dim: int, base: float):
    """cos and sin of the rotary angles t·base^(-2j/head_dim), each (T, head_dim/2)."""
    inv_freq = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = jnp.arange(T, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x, cos, sin):
    """Rotate pairs (x_j, x_{j+Q/2}) of x (B, T, N, Q) by the position's angle +θ.

    Converting weights from the paper's code (model_gpt_orig.apply_rotary_emb), which
    rotates by −θ: negate the second half (columns Q/2 … Q−1) of each head's w_q and w_k
    columns; q·k, and so the model, is then the same (docs/recipes.md)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :].astype(x.dtype), sin[:, None, :].astype(x.dtype)
    return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def attention(x_BxTxD, p: dict, cfg: GPTConfig, rope):
    """Causal multi-head self-attention of x (B, T, D) -> (B, T, D); N heads of width Q."""
    B, T, _ = x_BxTxD.shape
    N, Q = cfg.n_heads, cfg.head_dim
    q_BxTxNxQ, k_BxTxNxQ, v_BxTxNxQ = (
        jnp.reshape(linear(x_BxTxD, p[w].astype(x_BxTxD.dtype)), (B, T, N, Q))
        for w in ("w_q", "w_k", "w_v"))
    if rope is not None:
        q_BxTxNxQ, k_BxTxNxQ = apply_rope(q_BxTxNxQ, *rope), apply_rope(k_BxTxNxQ, *rope)
    impl = None if cfg.attn_impl == "auto" else cfg.attn_impl
    # dot_product_attention takes the (batch, tokens, heads, width) layout: no transpose
    y_BxTxNxQ = jax.nn.dot_product_attention(q_BxTxNxQ, k_BxTxNxQ, v_BxTxNxQ, is_causal=True,
                                             implementation=impl)
    return linear(jnp.reshape(y_BxTxNxQ, (B, T, N * Q)), p["w_o"].astype(x_BxTxD.dtype))


def mlp(x, p: dict, cfg: GPTConfig, tap, name: str):
    """x @ W_in -> σ (through the tap) -> @ W_out."""
    record_reader_input(tap, name, x)  # u = x for the reader pin and shift decomposition
    pre = linear(x, p["w_in"].astype(x.dtype))
    h = tap(name, pre, parse_activation(cfg.act))
    return linear(h, p["w_out"].astype(x.dtype))


def branch_scales(cfg: GPTConfig) -> tuple[float, float]:
    """(attention, MLP) residual-branch multipliers."""
    s = 1.0 / math.sqrt(2 * cfg.n_layer)
    return {"none": (1.0, 1.0), "attn": (s, 1.0), "both": (s, s)}[cfg.branch_scale]


def apply(params: dict, batch, cfg: GPTConfig, tap=plain_tap):
    """Logits (B, T, V) for the tokens ``batch["x"]`` (int, (B, T) with T <= block_size)."""
    tokens = batch["x"]
    B, T = tokens.shape
    if T > cfg.block_size:
        raise ValueError(f"sequence length {T} exceeds GPTConfig.block_size={cfg.block_size}")
    dtype = jnp.dtype(cfg.compute_dtype)
    wte = params["wte"].astype(dtype)
    x = wte[tokens]
    rope = None
    if cfg.pos == "learned":
        x = x + params["wpe"][:T].astype(dtype)
    else:
        rope = rope_tables(T, cfg.head_dim, cfg.rope_base)
    s_attn, s_mlp = branch_scales(cfg)
    for i in range(cfg.n_layer):
        blk = params[f"block{i}"]
        x = x + s_attn * attention(norm(x, blk["ln1"], cfg), blk["attn"], cfg, rope)
        x = x + s_mlp * mlp(norm(x, blk["ln2"], cfg), blk["mlp"], cfg, tap, f"block{i}.mlp")
    if cfg.final_norm:
        x = norm(x, params["ln_f"], cfg)
    head = wte.T if cfg.tied_head else params["head"].astype(dtype)
    return linear(x, head)


def loss(logits, batch, cfg: GPTConfig):
    """Mean next-token cross-entropy over all B·T positions, and metrics.

    Metrics: ``accuracy`` (top-1 next-token) and ``entropy`` (mean predictive entropy
    in nats; equals log V for a uniform predictor, a check on the init).
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    y = batch["y"]
    nll = -jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    accuracy = jnp.mean((jnp.argmax(logp, axis=-1) == y).astype(jnp.float32))
    entropy = -jnp.mean(jnp.sum(jnp.exp(logp) * logp, axis=-1))
    return jnp.mean(nll), {"accuracy": accuracy, "entropy": entropy}


def downstream(cfg: GPTConfig) -> dict[str, str]:
    """{"block{i}.mlp": "block{i}/mlp/w_out"}: the matrix reading each MLP activation."""
    return params_lib.downstream(param_table(cfg))


def output_heads(cfg: GPTConfig) -> dict[str, str | None]:
    """{"wte": None} when tied: the tied embedding is the output head (reading the final
    norm); {"head": None} when untied.

    A head's part gets zero mean gradient under cross-entropy; being tied, ``wte`` also gets
    the token-embedding gradient, so it is a looser zero-drift control than an untied head.
    """
    return params_lib.output_heads(param_table(cfg))


# --------------------------------------------------------------------------- cost model


def param_count(cfg: GPTConfig, include_position: bool = True) -> int:
    """Number of parameters (the tied head counted once)."""
    kinds = [k for k in params_lib.KINDS if include_position or k != "position"]
    return params_lib.count(param_table(cfg), kinds)


def flops_per_token(cfg: GPTConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token, 6·N + 12·L·n_heads·head_dim·T (PaLM appendix B / nanoGPT MFU).

    N excludes learned position embeddings (a lookup, no matmul) but includes the
    tied embedding, which the head uses as a matmul. The attention term counts the
    full T×T score and value products, forward and backward (as nanoGPT does; a
    causal kernel does about half of it). T defaults to ``cfg.block_size``.
    """
    T = cfg.block_size if seq_len is None else seq_len
    N = param_count(cfg, include_position=False)
    return 6.0 * N + 12.0 * cfg.n_layer * cfg.n_heads * cfg.head_dim * T


ARCH = Arch(name="gpt", config=config, data=data, init=init, apply=apply, loss=loss,
            downstream=downstream, output_heads=output_heads, params=param_table)

__all__ = ["ARCH", "GPTConfig", "config", "data", "param_table", "init", "apply", "loss",
           "downstream", "output_heads",
           "param_count", "flops_per_token"]
