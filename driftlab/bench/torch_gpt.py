"""GPT-nano in PyTorch: the same network as models/arch/gpt.py, as the benchmark's baseline.

Imports ``torch`` at module load: torch is an optional extra (``pip install
driftlab[torch]``), so only import this module after checking that torch exists
(``driftlab.bench.train`` does, and skips the comparison with a note otherwise).

The model mirrors :mod:`driftlab.models.arch.gpt` for a given :class:`GPTConfig`: pre-norm
blocks with RMSNorm (``F.rms_norm``) or LayerNorm without bias, rotary (same
half-split convention) or learned positions, causal ``F.scaled_dot_product_attention``,
no biases, a ``mlp_ratio``× MLP with the configured activation, residual branches
scaled per ``branch_scale``, a final norm and the embedding tied to the head.
Weights keep the JAX layout (fan_in, fan_out) and are applied as ``x @ W``, so
:func:`load_jax_params` copies a JAX parameter dict one to one and both frameworks
train the very same network from the very same initialization.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from driftlab.activations import parse_activation
from driftlab.models.arch import gpt
from driftlab.models.arch import params as params_lib
from driftlab.models.arch.gpt import GPTConfig, branch_scales


def torch_activation(spec: str):
    """The registry activation ``spec`` (driftlab/activations.py) as a torch function.

    Clipped activations use ``clamp(max=clip)``, whose gradient is zero where the clip
    is active, as in the JAX registry.
    """
    act = parse_activation(spec)
    base = {
        "relu": F.relu,
        "gelu": lambda z: F.gelu(z, approximate="none"),
        "silu": F.silu,
        "tanh": torch.tanh,
        "relu2": lambda z: torch.square(F.relu(z)),
        "gelu2": lambda z: torch.square(F.gelu(z, approximate="none")),
        "identity": lambda z: z,
    }
    if act.clip is None:
        return base[act.name]
    inner = base[act.name.removeprefix("clipped_")]
    return lambda z: torch.clamp(inner(z), max=act.clip)


def _check_supported(cfg: GPTConfig) -> None:
    if cfg.compute_dtype != "float32":
        raise ValueError(f"GPTConfig.compute_dtype={cfg.compute_dtype!r} invalid for the "
                         f"PyTorch baseline; allowed: float32")
    for field in ("tied_head", "final_norm"):  # the mirror has the tied head and ln_f only
        if getattr(cfg, field) is not True:
            raise ValueError(f"GPTConfig.{field}={getattr(cfg, field)!r} invalid for the "
                             f"PyTorch baseline; allowed: True")


class TorchGPT(torch.nn.Module):
    """GPT-nano (see the module docstring); ``forward(x, y)`` returns the mean cross-entropy."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        _check_supported(cfg)
        self.cfg = cfg
        # Shapes from GPT's one parameter table; the values are placeholders: the benchmark
        # always copies the JAX initialization in (load_jax_params).
        shape = params_lib.shapes(gpt.param_table(cfg))

        def P(path):
            return torch.nn.Parameter(torch.zeros(shape[path]))

        def group(prefix, names):
            return torch.nn.ParameterDict({n: P(f"{prefix}/{n}") for n in names
                                           if f"{prefix}/{n}" in shape})

        self.wte = P("wte")
        self.wpe = P("wpe") if "wpe" in shape else None
        self.blocks = torch.nn.ModuleList()
        for i in range(cfg.n_layer):
            blk = torch.nn.Module()
            blk.ln1 = group(f"block{i}/ln1", ("scale",))
            blk.attn = group(f"block{i}/attn", ("w_q", "w_k", "w_v", "w_o"))
            blk.ln2 = group(f"block{i}/ln2", ("scale",))
            blk.mlp = group(f"block{i}/mlp", ("w_in", "w_out"))
            self.blocks.append(blk)
        self.ln_f = group("ln_f", ("scale",))
        self.act = torch_activation(cfg.act)
        self.s_attn, self.s_mlp = branch_scales(cfg)
        if cfg.pos == "rope":
            Q = cfg.head_dim
            inv_freq = cfg.rope_base ** (-torch.arange(0, Q, 2, dtype=torch.float32) / Q)
            angles = torch.arange(cfg.block_size, dtype=torch.float32)[:, None] * inv_freq[None]
            self.register_buffer("cos", torch.cos(angles), persistent=False)
            self.register_buffer("sin", torch.sin(angles), persistent=False)

    def _norm(self, x, p):
        w = p["scale"] if "scale" in p else None
        if self.cfg.norm == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), w, None, self.cfg.norm_eps)
        return F.rms_norm(x, (x.shape[-1],), w, self.cfg.norm_eps)

    def _rope(self, x, T: int):
        """Rotate pairs (x_j, x_{j+Q/2}) of x (B, T, N, Q) as models/gpt.apply_rope does."""
        half = x.shape[-1] // 2
        c, s = self.cos[:T, None, :], self.sin[:T, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)

    def _attention(self, x_BxTxD, p):
        B, T, D = x_BxTxD.shape
        N, Q = self.cfg.n_heads, self.cfg.head_dim
        q_BxTxNxQ, k_BxTxNxQ, v_BxTxNxQ = ((x_BxTxD @ p[w]).view(B, T, N, Q)
                                           for w in ("w_q", "w_k", "w_v"))
        if self.cfg.pos == "rope":
            q_BxTxNxQ, k_BxTxNxQ = self._rope(q_BxTxNxQ, T), self._rope(k_BxTxNxQ, T)
        # torch's attention takes heads before tokens: (B, N, T, Q)
        y_BxNxTxQ = F.scaled_dot_product_attention(
            q_BxTxNxQ.transpose(1, 2), k_BxTxNxQ.transpose(1, 2), v_BxTxNxQ.transpose(1, 2),
            is_causal=True)
        return y_BxNxTxQ.transpose(1, 2).reshape(B, T, D) @ p["w_o"]

    def logits(self, tokens):
        """Logits (B, T, V) of int64 tokens (B, T)."""
        T = tokens.shape[1]
        x = self.wte[tokens]
        if self.wpe is not None:
            x = x + self.wpe[:T]
        for blk in self.blocks:
            x = x + self.s_attn * self._attention(self._norm(x, blk.ln1), blk.attn)
            h = self.act(self._norm(x, blk.ln2) @ blk.mlp["w_in"])
            x = x + self.s_mlp * (h @ blk.mlp["w_out"])
        return self._norm(x, self.ln_f) @ self.wte.T

    def forward(self, tokens, targets):
        """Mean next-token cross-entropy over all B·T positions."""
        logits = self.logits(tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def load_jax_params(model: TorchGPT, params: dict) -> TorchGPT:
    """Copy a models/arch/gpt.py parameter dict (same config) into ``model``; shapes must match."""
    def put(dst, src, where):
        src = torch.from_numpy(np.array(src, dtype=np.float32))
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f"parameter {where}: shape {tuple(src.shape)} does not match the "
                             f"PyTorch model's {tuple(dst.shape)}")
        with torch.no_grad():
            dst.copy_(src)

    put(model.wte, params["wte"], "wte")
    if model.wpe is not None:
        put(model.wpe, params["wpe"], "wpe")
    for i, blk in enumerate(model.blocks):
        src = params[f"block{i}"]
        for group in ("ln1", "attn", "ln2", "mlp"):
            for name, dst in getattr(blk, group).items():
                put(dst, src[group][name], f"block{i}/{group}/{name}")
    for name, dst in model.ln_f.items():
        put(dst, params["ln_f"][name], f"ln_f/{name}")
    return model


def make_train_step(model: TorchGPT, lr: float, weight_decay: float = 0.0):
    """One AdamW step as a function ``step(tokens, targets) -> loss tensor``.

    AdamW hyper-parameters match optax.adamw's defaults used by the engine
    (β 0.9/0.999, ε 1e-8, decoupled decay ``weight_decay`` on every parameter).
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=weight_decay, foreach=True)

    def step(tokens, targets):
        opt.zero_grad(set_to_none=True)
        loss = model(tokens, targets)
        loss.backward()
        opt.step()
        return loss

    return step


def as_tokens(a) -> torch.Tensor:
    """A numpy/JAX integer array as an int64 torch tensor (what embedding lookups take)."""
    return torch.from_numpy(np.asarray(a).astype(np.int64))


def n_params(model: TorchGPT) -> int:
    """Number of parameters (the tied head counted once, as gpt.param_count does)."""
    return int(sum(math.prod(p.shape) for p in model.parameters()))
