"""MP-SENet: magnitude-and-phase speech enhancement in pure JAX (the transformer version).

Pipeline (after Lu et al., "MP-SENet", and its public code; see shared/REFERENCES.md)::

    noisy (B, L) --STFT--> compressed magnitude mag^0.3 and phase, stacked as 2 channels
    encoder:  1x1 conv 2->C, instance norm, act; dense block; (1,3) conv stride 2 over
              frequency (F -> F'), instance norm, act
    n_blocks two-stage blocks: a transformer over time, then one over frequency, each
              with a residual around it
    magnitude decoder: dense block, sub-pixel upsampling (F' -> 2F'), instance norm,
              act, (1,2) conv -> 1 channel (F bins), mask beta·sigmoid(slope_f·x) times
              the noisy compressed magnitude
    phase decoder: dense block, sub-pixel upsampling, instance norm, act, two (1,2)
              conv heads r and i, phase = atan2(i, r)
    -> compressed complex spectrum and, by iSTFT, the enhanced waveform.

Tensors are channels-last, (B, T, F, C); convolution kernels are (time, freq, in,
out). A dense block has ``dense_depth`` layers (kernel (2,3), time dilation 2^i,
causal padding in time), each reading the concatenation of the block input and
all previous layer outputs; its output is the last layer's.

Transformer layer (pre-norm, as the reference): x + MHA(LN1(x)), then
x + FFN(LN2(x)), then LN3. The reference FFN is a bidirectional GRU followed by
LeakyReLU and a linear layer; here it is a position-wise MLP C -> ffn_mult·C -> C
whose hidden activation is the configured ``act`` through ``tap("tf{i}.time.ffn")``
/ ``tap("tf{i}.freq.ffn")``, so the paper's drift question (the matrix
``tf{i}/{time,freq}/ffn/w_out`` reads those activations) applies directly.

Conv-block activations follow ``conv_act``: "prelu" is the reference's learnable
per-channel PReLU (slope initialized at 0.25; it is not one of the registry's
activations and is not tapped), "same" uses ``act`` through the tap, with names
"enc.in", "enc.dense{j}", "enc.down", "mag.dense{j}", "mag.up", "pha.dense{j}",
"pha.up".

Losses (weights from the reference's training script; its metric-discriminator
loss is omitted): magnitude MSE, anti-wrapped phase losses (instantaneous phase,
group delay, instantaneous frequency), complex MSE (summed over re/im), STFT
consistency (the enhanced complex spectrum against the STFT of its own waveform)
and time-domain L1. Metrics: each loss term, the SI-SNR of the output and its
improvement over the noisy input.

Sizes: ``tiny`` C=8, 1 block, 2 heads, n_fft 64 / hop 16, 2000-sample segments
(trains in seconds on a CPU); ``small`` C=32, 2 blocks, 4 heads, n_fft 200 / hop 50,
8000 samples; ``paper`` C=64, 4 blocks, 4 heads, n_fft 400 / hop 100 / Hann 400,
32000 samples (2 s at 16 kHz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from driftlab.activations import parse_activation
from driftlab.models.arch.base import SIZES, Arch, Dataset, plain_tap, replace_checked
from driftlab.models.arch.init import get_init
from driftlab.models.arch.stft import mag_pha_istft, mag_pha_stft, num_frames

CONV_ACTS = ("prelu", "same")
INITS = ("torch_default", "fan_in_normal", "xavier_normal")
PRELU_INIT = 0.25  # PyTorch's nn.PReLU default
LOSS_WEIGHTS = ("w_mag", "w_pha", "w_com", "w_stft", "w_time")
_NAME = "MPSENetConfig"


def _positive(field: str, value, kind=int) -> None:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"{_NAME}.{field}={value!r} invalid; allowed: a positive "
                         f"{kind.__name__}")


@dataclass(frozen=True)
class MPSENetConfig:
    """Hyper-parameters of MP-SENet; validated on construction (ValueError names the field)."""

    act: str = "relu"  # the FFN activation (and the conv one with conv_act="same")
    conv_act: str = "prelu"
    channels: int = 8  # C, the dense channel count (64 in the paper)
    n_blocks: int = 1  # two-stage (time, frequency) transformer blocks
    n_heads: int = 2
    ffn_mult: int = 4  # FFN hidden width / C (the reference's biGRU gives 4C features)
    dense_depth: int = 4
    n_fft: int = 64
    hop: int = 16
    win: int = 64
    compress: float = 0.3  # magnitude compression exponent
    beta: float = 2.0  # the learnable sigmoid's ceiling
    segment: int = 2000  # samples per training example
    sample_rate: int = 16000
    init: str = "torch_default"  # PyTorch's default, as the reference trains with
    gain: float = 1.0
    norm_eps: float = 1e-5
    w_mag: float = 0.9
    w_pha: float = 0.3
    w_com: float = 0.1
    w_stft: float = 0.1
    w_time: float = 0.2

    def __post_init__(self):
        try:
            parse_activation(self.act)
        except ValueError as err:
            raise ValueError(f"{_NAME}.act: {err}") from None
        if self.conv_act not in CONV_ACTS:
            raise ValueError(f"{_NAME}.conv_act={self.conv_act!r} invalid; allowed: "
                             f"{', '.join(CONV_ACTS)}")
        if self.init not in INITS:
            raise ValueError(f"{_NAME}.init={self.init!r} invalid; allowed: {', '.join(INITS)}")
        for name in ("channels", "n_blocks", "n_heads", "ffn_mult", "dense_depth", "n_fft",
                     "hop", "win", "segment", "sample_rate"):
            _positive(name, getattr(self, name))
        for name in ("compress", "beta", "gain", "norm_eps"):
            _positive(name, getattr(self, name), float)
        for name in LOSS_WEIGHTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{_NAME}.{name}={value!r} invalid; allowed: a float >= 0")
        if self.channels % self.n_heads:
            raise ValueError(f"{_NAME}.channels={self.channels} invalid; allowed: a multiple "
                             f"of n_heads={self.n_heads}")
        if self.n_fft % 4:
            # F = n_fft/2 + 1 must be odd so that stride-2 downsampling and 2x sub-pixel
            # upsampling followed by the (1,2) conv return exactly F bins
            raise ValueError(f"{_NAME}.n_fft={self.n_fft} invalid; allowed: a multiple of 4")
        if self.win > self.n_fft:
            raise ValueError(f"{_NAME}.win={self.win} invalid; allowed: 1..n_fft={self.n_fft}")
        if self.hop >= self.win:
            # the Hann window vanishes at its ends: hop < win keeps the iSTFT invertible
            raise ValueError(f"{_NAME}.hop={self.hop} invalid; allowed: 1..win-1={self.win - 1}")
        if self.segment <= self.n_fft // 2:
            raise ValueError(f"{_NAME}.segment={self.segment} invalid; allowed: > n_fft/2 = "
                             f"{self.n_fft // 2} (the STFT reflect-pads by n_fft/2)")

    @property
    def n_freq(self) -> int:
        """F, the one-sided STFT bins."""
        return self.n_fft // 2 + 1

    @property
    def n_freq_half(self) -> int:
        """F', the bins after the encoder's stride-2 frequency convolution."""
        return (self.n_freq - 1) // 2 + 1

    @property
    def n_frames(self) -> int:
        """T, the STFT frames of one ``segment``."""
        return num_frames(self.segment, self.n_fft, self.hop)


PRESETS = {
    "tiny": dict(channels=8, n_blocks=1, n_heads=2, n_fft=64, hop=16, win=64, segment=2000),
    "small": dict(channels=32, n_blocks=2, n_heads=4, n_fft=200, hop=50, win=200,
                  segment=8000),
    "paper": dict(channels=64, n_blocks=4, n_heads=4, n_fft=400, hop=100, win=400,
                  segment=32000),
}


def config(size: str = "tiny", act: str = "relu", **overrides) -> MPSENetConfig:
    """The preset ``size`` with activation ``act`` and field ``overrides`` applied."""
    if size not in SIZES or size not in PRESETS:
        raise ValueError(f"size={size!r} invalid; allowed: {', '.join(PRESETS)}")
    return replace_checked(MPSENetConfig(act=act, **PRESETS[size]), arch="mpsenet",
                           **overrides)


def data(source: str, cfg: MPSENetConfig, seed: int) -> tuple[MPSENetConfig, Dataset]:
    """Noisy/clean segments of ``cfg.segment`` samples (models/data/speech.py); cfg unchanged."""
    from driftlab.models.data.speech import load_speech

    return cfg, load_speech(source, seed, cfg.segment, cfg.sample_rate)


# --------------------------------------------------------------------------- init


def _conv_init(key, cfg, kh: int, kw: int, c_in: int, c_out: int) -> dict:
    w_init = get_init(cfg.init, cfg.gain)
    fan_in, fan_out = kh * kw * c_in, kh * kw * c_out
    return {"w": w_init(key, (kh, kw, c_in, c_out), fan_in, fan_out),
            "b": jnp.zeros((c_out,), jnp.float32)}


def _dense_init(key, cfg, d_in: int, d_out: int, prefix: str) -> dict:
    w_init = get_init(cfg.init, cfg.gain)
    return {f"w_{prefix}": w_init(key, (d_in, d_out), d_in, d_out),
            f"b_{prefix}": jnp.zeros((d_out,), jnp.float32)}


def _norm_init(c: int) -> dict:
    return {"scale": jnp.ones((c,), jnp.float32), "bias": jnp.zeros((c,), jnp.float32)}


def _unit_init(key, cfg, kh, kw, c_in, c_out, conv_out=None) -> dict:
    """conv -> instance norm -> activation; ``conv_out`` channels of the conv (default c_out)."""
    p = {"conv": _conv_init(key, cfg, kh, kw, c_in, conv_out or c_out), "norm": _norm_init(c_out)}
    if cfg.conv_act == "prelu":
        p["prelu"] = {"alpha": jnp.full((c_out,), PRELU_INIT, jnp.float32)}
    return p


def _dense_block_init(key, cfg) -> dict:
    C = cfg.channels
    return {f"layer{i}": _unit_init(jax.random.fold_in(key, i), cfg, 2, 3, C * (i + 1), C)
            for i in range(cfg.dense_depth)}


def _transformer_init(key, cfg) -> dict:
    C, H = cfg.channels, cfg.ffn_mult * cfg.channels
    k = jax.random.split(key, 6)
    attn = {}
    for kk, name in zip(k[:4], "qkvo"):
        attn.update(_dense_init(kk, cfg, C, C, name))
    ffn = {**_dense_init(k[4], cfg, C, H, "in"), **_dense_init(k[5], cfg, H, C, "out")}
    return {"ln1": _norm_init(C), "attn": attn, "ln2": _norm_init(C), "ffn": ffn,
            "ln3": _norm_init(C)}


def init(key, cfg: MPSENetConfig) -> dict:
    """Random parameters: weights from the ``cfg.init`` scheme, biases 0, norms (1, 0),
    PReLU slopes 0.25 and the mask's per-frequency sigmoid slopes 1 (as the reference)."""
    C = cfg.channels
    ks = [jax.random.fold_in(key, i) for i in range(16)]
    params = {
        "enc": {"in": _unit_init(ks[0], cfg, 1, 1, 2, C),
                "dense": _dense_block_init(ks[1], cfg),
                "down": _unit_init(ks[2], cfg, 1, 3, C, C)},
        "mag": {"dense": _dense_block_init(ks[3], cfg),
                "up": _unit_init(ks[4], cfg, 1, 3, C, C, conv_out=2 * C),
                "out": _conv_init(ks[5], cfg, 1, 2, C, 1),
                "slope": jnp.ones((cfg.n_freq,), jnp.float32)},
        "pha": {"dense": _dense_block_init(ks[6], cfg),
                "up": _unit_init(ks[7], cfg, 1, 3, C, C, conv_out=2 * C),
                "out_r": _conv_init(ks[8], cfg, 1, 2, C, 1),
                "out_i": _conv_init(ks[9], cfg, 1, 2, C, 1)},
    }
    for i in range(cfg.n_blocks):
        kb = jax.random.fold_in(key, 100 + i)
        params[f"tf{i}"] = {"time": _transformer_init(jax.random.fold_in(kb, 0), cfg),
                            "freq": _transformer_init(jax.random.fold_in(kb, 1), cfg)}
    return params


# --------------------------------------------------------------------------- layers


def conv2d(x, p: dict, padding=((0, 0), (0, 0)), stride=(1, 1), dilation=(1, 1)):
    """2-D convolution of x (B, T, F, C_in) with p["w"] (kt, kf, C_in, C_out), plus p["b"]."""
    y = jax.lax.conv_general_dilated(x, p["w"], window_strides=stride, padding=padding,
                                     rhs_dilation=dilation,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["b"]


def instance_norm(x, p: dict, eps: float):
    """Normalize each (example, channel) over time and frequency; affine scale and bias.

    Statistics in float32, so a bfloat16 run does not lose small per-channel shifts.
    """
    x32 = x.astype(jnp.float32)
    centred = x32 - jnp.mean(x32, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True)
    y = centred * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]
    return y.astype(x.dtype)


def layer_norm(x, p: dict, eps: float):
    """LayerNorm over the last axis with affine scale and bias (statistics in float32)."""
    x32 = x.astype(jnp.float32)
    centred = x32 - jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    y = centred * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]
    return y.astype(x.dtype)


def prelu(x, alpha):
    """max(0, x) + alpha·min(0, x), alpha per channel (the last axis)."""
    return jnp.where(x >= 0, x, alpha * x)


def conv_activation(name: str, x, p: dict, cfg: MPSENetConfig, tap):
    """The conv-block activation: learnable PReLU, or ``cfg.act`` through the tap."""
    if cfg.conv_act == "prelu":
        return prelu(x, p["prelu"]["alpha"])
    return tap(name, x, parse_activation(cfg.act))


def conv_unit(name: str, x, p: dict, cfg, tap, **conv_kwargs):
    """conv -> instance norm -> activation."""
    y = instance_norm(conv2d(x, p["conv"], **conv_kwargs), p["norm"], cfg.norm_eps)
    return conv_activation(name, y, p, cfg, tap)


def dense_block(prefix: str, x, p: dict, cfg: MPSENetConfig, tap):
    """DenseNet-style block: layer i reads [out_{i-1}, ..., out_0, x] (kernel (2,3),
    time dilation 2^i, padded causally in time and by 1 in frequency); returns the
    last layer's output."""
    skip = x
    for i in range(cfg.dense_depth):
        d = 2 ** i
        x = conv_unit(f"{prefix}{i}", skip, p[f"layer{i}"], cfg, tap,
                      padding=((d, 0), (1, 1)), dilation=(d, 1))
        skip = jnp.concatenate([x, skip], axis=-1)
    return x


def subpixel_up(x, p: dict):
    """Sub-pixel upsampling over frequency: (1,3) conv C -> 2C (padded by 1), then the
    two channel groups interleaved along frequency: (B, T, F', C) -> (B, T, 2F', C)."""
    y = conv2d(x, p, padding=((0, 0), (1, 1)))
    B, T, F, C2 = y.shape
    # torch: view (B, r, C, T, F) -> permute (B, C, T, F, r); channel r·C + c goes to
    # frequency f·r + r_index, which is this reshape in channels-last layout
    return y.reshape(B, T, F, 2, C2 // 2).reshape(B, T, 2 * F, C2 // 2)


def attention(x_NxSxC, p: dict, cfg: MPSENetConfig):
    """Non-causal multi-head self-attention of x (N, S, C) -> (N, S, C), with biases:
    N sequences of S steps, H heads of width C/H."""
    N, S, C = x_NxSxC.shape
    H = cfg.n_heads
    q_NxSxHxD, k_NxSxHxD, v_NxSxHxD = (
        (x_NxSxC @ p[f"w_{n}"] + p[f"b_{n}"]).reshape(N, S, H, C // H) for n in "qkv")
    # plain einsum attention: the sequences are short (T frames or F' bins) and it
    # compiles faster on CPU than jax.nn.dot_product_attention
    scores_NxHxSxS = jnp.einsum("nshd,nthd->nhst", q_NxSxHxD, k_NxSxHxD) / math.sqrt(C // H)
    y_NxSxHxD = jnp.einsum("nhst,nthd->nshd", jax.nn.softmax(scores_NxHxSxS, axis=-1),
                           v_NxSxHxD)
    return y_NxSxHxD.reshape(N, S, C) @ p["w_o"] + p["b_o"]


def ffn(name: str, x, p: dict, cfg: MPSENetConfig, tap):
    """x @ W_in + b -> σ (through the tap) -> @ W_out + b."""
    h = tap(name, x @ p["w_in"] + p["b_in"], parse_activation(cfg.act))
    return h @ p["w_out"] + p["b_out"]


def transformer(name: str, x, p: dict, cfg: MPSENetConfig, tap):
    """Pre-norm layer over the sequence axis of x (N, S, C): attention, FFN, final norm."""
    x = x + attention(layer_norm(x, p["ln1"], cfg.norm_eps), p["attn"], cfg)
    x = x + ffn(f"{name}.ffn", layer_norm(x, p["ln2"], cfg.norm_eps), p["ffn"], cfg, tap)
    return layer_norm(x, p["ln3"], cfg.norm_eps)


def two_stage_block(i: int, x_BxTxFxC, p: dict, cfg: MPSENetConfig, tap):
    """Transformer over time then over frequency of x (B, T, F', C), each residual.

    Each stage runs over sequences: the time stage on B·F' sequences of T frames, the
    frequency stage on B·T sequences of F' bins (shapes in the names, F = F' here)."""
    B, T, F, C = x_BxTxFxC.shape
    x_BFxTxC = jnp.transpose(x_BxTxFxC, (0, 2, 1, 3)).reshape(B * F, T, C)
    x_BFxTxC = transformer(f"tf{i}.time", x_BFxTxC, p["time"], cfg, tap) + x_BFxTxC
    x_BTxFxC = jnp.transpose(x_BFxTxC.reshape(B, F, T, C), (0, 2, 1, 3)).reshape(B * T, F, C)
    x_BTxFxC = transformer(f"tf{i}.freq", x_BTxFxC, p["freq"], cfg, tap) + x_BTxFxC
    return x_BTxFxC.reshape(B, T, F, C)


def encoder(x, p: dict, cfg: MPSENetConfig, tap):
    """(B, T, F, 2) -> (B, T, F', C)."""
    x = conv_unit("enc.in", x, p["in"], cfg, tap)
    x = dense_block("enc.dense", x, p["dense"], cfg, tap)
    return conv_unit("enc.down", x, p["down"], cfg, tap, padding=((0, 0), (1, 1)),
                     stride=(1, 2))


def mask_decoder(x, p: dict, cfg: MPSENetConfig, tap):
    """(B, T, F', C) -> magnitude mask (B, T, F) in (0, beta)."""
    x = dense_block("mag.dense", x, p["dense"], cfg, tap)
    x = subpixel_up(x, p["up"]["conv"])
    x = conv_activation("mag.up", instance_norm(x, p["up"]["norm"], cfg.norm_eps), p["up"],
                        cfg, tap)
    x = conv2d(x, p["out"])[..., 0]  # (1,2) valid conv: 2F' - 1 = F bins
    return cfg.beta * jax.nn.sigmoid(p["slope"] * x)


def phase_decoder(x, p: dict, cfg: MPSENetConfig, tap):
    """(B, T, F', C) -> phase (B, T, F) in (-π, π]."""
    x = dense_block("pha.dense", x, p["dense"], cfg, tap)
    x = subpixel_up(x, p["up"]["conv"])
    x = conv_activation("pha.up", instance_norm(x, p["up"]["norm"], cfg.norm_eps), p["up"],
                        cfg, tap)
    r, i = conv2d(x, p["out_r"])[..., 0], conv2d(x, p["out_i"])[..., 0]
    # the offsets of the reference's STFT phase keep atan2's gradient finite at r = i = 0,
    # which happens wherever a ReLU zeroes every input of both heads (zero biases)
    return jnp.arctan2(i + 1e-10, r + 1e-5)


def _stft_args(cfg: MPSENetConfig):
    return dict(n_fft=cfg.n_fft, hop=cfg.hop, win_length=cfg.win, compress=cfg.compress)


def apply(params: dict, batch, cfg: MPSENetConfig, tap=plain_tap) -> dict:
    """Enhance ``batch["noisy"]`` (B, L): a dict with the compressed magnitude ``mag``
    (B, T, F), phase ``pha`` (B, T, F), compressed complex ``com`` (B, T, F, 2) and
    waveform ``audio`` (B, L)."""
    # the STFTs and the reconstruction stay in float32 even when the engine runs the
    # network in bfloat16 (FFTs and atan2 are not worth the precision loss)
    noisy = batch["noisy"].astype(jnp.float32)
    L = noisy.shape[-1]
    dtype = params["enc"]["in"]["conv"]["w"].dtype
    mag, pha, _ = mag_pha_stft(noisy, **_stft_args(cfg))
    x = encoder(jnp.stack([mag, pha], axis=-1).astype(dtype), params["enc"], cfg, tap)
    for i in range(cfg.n_blocks):
        x = two_stage_block(i, x, params[f"tf{i}"], cfg, tap)
    mag_g = mag * mask_decoder(x, params["mag"], cfg, tap).astype(jnp.float32)
    pha_g = phase_decoder(x, params["pha"], cfg, tap).astype(jnp.float32)
    com_g = jnp.stack([mag_g * jnp.cos(pha_g), mag_g * jnp.sin(pha_g)], axis=-1)
    audio = mag_pha_istft(mag_g, pha_g, length=L, **_stft_args(cfg))
    return {"mag": mag_g, "pha": pha_g, "com": com_g, "audio": audio}


# --------------------------------------------------------------------------- loss


def anti_wrap(x):
    """|x − 2π·round(x/2π)|: distance of a phase difference to the nearest multiple of 2π."""
    return jnp.abs(x - jnp.round(x / (2 * math.pi)) * (2 * math.pi))


def phase_losses(pha_ref, pha_gen):
    """(instantaneous phase, group delay, instantaneous frequency) anti-wrapped L1 losses
    of phases (B, T, F): the phase itself, its difference along frequency, along time."""
    ip = jnp.mean(anti_wrap(pha_ref - pha_gen))
    gd = jnp.mean(anti_wrap(jnp.diff(pha_ref, axis=-1) - jnp.diff(pha_gen, axis=-1)))
    iaf = jnp.mean(anti_wrap(jnp.diff(pha_ref, axis=-2) - jnp.diff(pha_gen, axis=-2)))
    return ip, gd, iaf


def si_snr(est, ref, eps: float = 1e-8):
    """Scale-invariant SNR in dB of est against ref (both (..., L)), per signal."""
    est = est - jnp.mean(est, axis=-1, keepdims=True)
    ref = ref - jnp.mean(ref, axis=-1, keepdims=True)
    scale = jnp.sum(est * ref, axis=-1, keepdims=True) / (jnp.sum(ref * ref, axis=-1,
                                                                 keepdims=True) + eps)
    target = scale * ref
    noise = est - target
    return 10.0 * jnp.log10((jnp.sum(target ** 2, axis=-1) + eps)
                            / (jnp.sum(noise ** 2, axis=-1) + eps))


def loss(outputs: dict, batch, cfg: MPSENetConfig):
    """Weighted sum of the MP-SENet generator losses (mean over the batch), and metrics.

    Metrics: ``mag``, ``pha`` (= ip + gd + iaf), ``ip``, ``gd``, ``iaf``, ``com``,
    ``stft``, ``time`` (the unweighted terms), ``si_snr`` of the output and
    ``si_snr_i``, its improvement over the noisy input (dB, batch means).
    """
    clean = batch["clean"]
    mag_r, pha_r, com_r = mag_pha_stft(clean, **_stft_args(cfg))
    _, _, com_hat = mag_pha_stft(outputs["audio"], **_stft_args(cfg))
    l_mag = jnp.mean(jnp.square(mag_r - outputs["mag"]))
    ip, gd, iaf = phase_losses(pha_r, outputs["pha"])
    l_pha = ip + gd + iaf
    # the reference's F.mse_loss(...)·2 over the stacked (re, im) pair: the mean squared
    # complex error per bin
    l_com = 2.0 * jnp.mean(jnp.square(com_r - outputs["com"]))
    l_stft = 2.0 * jnp.mean(jnp.square(outputs["com"] - com_hat))
    l_time = jnp.mean(jnp.abs(clean - outputs["audio"]))
    total = (cfg.w_mag * l_mag + cfg.w_pha * l_pha + cfg.w_com * l_com
             + cfg.w_stft * l_stft + cfg.w_time * l_time)
    snr_out = si_snr(outputs["audio"], clean)
    snr_in = si_snr(batch["noisy"], clean)
    metrics = {"mag": l_mag, "pha": l_pha, "ip": ip, "gd": gd, "iaf": iaf, "com": l_com,
               "stft": l_stft, "time": l_time, "si_snr": jnp.mean(snr_out),
               "si_snr_i": jnp.mean(snr_out - snr_in)}
    return total, metrics


def downstream(cfg: MPSENetConfig) -> dict[str, str]:
    """Tap -> the hidden matrix reading it.

    ``tf{i}.{time,freq}.ffn`` -> ``tf{i}/{time,freq}/ffn/w_out``. With ``conv_act="same"``
    also the conv taps: in a dense block, ``{prefix}{j}`` (and ``enc.in``, the encoder's
    dense-block input) -> the next dense layer's conv, the last one -> the block's
    successor (``enc/down``, ``{mag,pha}/up`` conv). Later dense layers read the same output
    through the concatenation too, over their own slice of input channels; the map names
    the first reader, whose whole kernel mean also covers its other input channels.
    ``enc.down`` has no direct reader (the transformer reads it through LayerNorm) and the
    decoders' ``up`` taps are read by the output heads (:func:`output_heads`).
    """
    out = {f"tf{i}.{axis}.ffn": f"tf{i}/{axis}/ffn/w_out"
           for i in range(cfg.n_blocks) for axis in ("time", "freq")}
    if cfg.conv_act != "same":
        return out
    D = cfg.dense_depth
    out["enc.in"] = "enc/dense/layer0/conv/w"
    for prefix, succ in (("enc", "enc/down/conv/w"), ("mag", "mag/up/conv/w"),
                         ("pha", "pha/up/conv/w")):
        for j in range(D):
            out[f"{prefix}.dense{j}"] = (f"{prefix}/dense/layer{j + 1}/conv/w" if j + 1 < D
                                         else succ)
    return out


def output_heads(cfg: MPSENetConfig) -> dict[str, str | None]:
    """The decoders' output convs (regression heads, so the cross-entropy zero-mean
    argument does not apply): ``mag/out/w`` reads ``mag.up``, ``pha/out_{r,i}/w`` read
    ``pha.up`` (None with the untapped PReLU, ``conv_act="prelu"``)."""
    same = cfg.conv_act == "same"
    return {"mag/out/w": "mag.up" if same else None,
            "pha/out_r/w": "pha.up" if same else None,
            "pha/out_i/w": "pha.up" if same else None}


def tap_names(cfg: MPSENetConfig) -> list[str]:
    """Every tap name one forward pass uses, in call order."""
    def dense(prefix: str) -> list[str]:
        return [f"{prefix}{j}" for j in range(cfg.dense_depth)]

    conv = cfg.conv_act == "same"
    names = (["enc.in", *dense("enc.dense"), "enc.down"] if conv else [])
    for i in range(cfg.n_blocks):
        names += [f"tf{i}.time.ffn", f"tf{i}.freq.ffn"]
    if conv:
        names += [*dense("mag.dense"), "mag.up", *dense("pha.dense"), "pha.up"]
    return names


def param_count(cfg: MPSENetConfig) -> int:
    """Number of parameters, from the architecture (checked against init in the tests)."""
    C, D, H = cfg.channels, cfg.dense_depth, cfg.ffn_mult * cfg.channels
    act = C if cfg.conv_act == "prelu" else 0

    def unit(kh, kw, c_in, c_out, conv_out=None):
        co = conv_out or c_out
        return kh * kw * c_in * co + co + 2 * c_out + act

    dense = sum(unit(2, 3, C * (i + 1), C) for i in range(D))
    enc = unit(1, 1, 2, C) + dense + unit(1, 3, C, C)
    tf = 2 * (3 * 2 * C + 4 * (C * C + C) + C * H + H + H * C + C)
    head = 1 * 2 * C + 1
    mag = dense + unit(1, 3, C, C, 2 * C) + head + cfg.n_freq
    pha = dense + unit(1, 3, C, C, 2 * C) + 2 * head
    return enc + cfg.n_blocks * tf + mag + pha


ARCH = Arch(name="mpsenet", config=config, data=data, init=init, apply=apply, loss=loss,
            downstream=downstream, output_heads=output_heads)

__all__ = ["ARCH", "MPSENetConfig", "config", "data", "init", "apply", "loss", "downstream",
           "output_heads",
           "tap_names", "param_count", "phase_losses", "anti_wrap", "si_snr"]
