"""Why ViT's downstream matrices do not drift under SGD: a derivation, checked exactly.

In a pre-LN transformer every reader of the residual stream x is a LayerNorm, which depends
on x only through x − mean_k(x_k)·1. So ∂ℓ/∂x ⊥ 1 at every position, and for the MLP's
output projection W (z = h W added to x): Σ_k ∂ℓ/∂z_{t,k} = 0, hence
Σ_{i,k} ∂ℓ/∂W_{ik} = Σ_t Σ_i h_{t,i} Σ_k ∂ℓ/∂z_{t,k} = 0 — the mean gradient of W is exactly
zero whatever the sign of E[g|p>0], and (momentum) SGD cannot move mean(W). RMSNorm does
not centre, so GPT-nano's w_out has no such constraint (the control)."""

import jax
import numpy as np

from driftlab.models.arch.base import get_arch, plain_tap
from driftlab.models.arch.params import flatten_dict


def _mean_grad(arch_name: str, path: str, size="tiny", **overrides) -> tuple[float, float]:
    arch = get_arch(arch_name)
    cfg = arch.config(size, "relu", **overrides)
    cfg, ds = arch.data("synthetic", cfg, 0)
    params = arch.init(jax.random.PRNGKey(0), cfg)
    batch = ds.sample("train", 0, 16, 0)

    def loss(p):
        return arch.loss(arch.apply(p, batch, cfg, plain_tap), batch, cfg)[0]

    g = np.asarray(flatten_dict(jax.grad(loss)(params))[path], np.float64)
    return abs(g.mean()), np.abs(g).mean()


def test_layernorm_readers_make_the_downstream_mean_gradient_exactly_zero():
    for i in range(2):
        mean, scale = _mean_grad("vit", f"block{i}/mlp/fc2/w")
        assert mean < 1e-6 * scale, (i, mean, scale)


def test_rmsnorm_readers_do_not_constrain_it_the_control():
    mean, scale = _mean_grad("gpt", "block0/mlp/w_out")
    assert mean > 1e-3 * scale
