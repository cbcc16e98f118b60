"""Training benchmarks: rows are well formed, the PyTorch baseline is the same network,
MFU arithmetic and the GPU paper entry point run (at tiny size on the CPU)."""

import json

import jax
import numpy as np
import pytest

from driftlab.bench import train as bt
from driftlab.cli import main
from driftlab.models.arch import gpt
from driftlab.testing import assert_close


def _check_rows(rows):
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    for r in rows:
        assert {"name", "value", "baseline", "baseline_value", "unit", "ratio", "target",
                "note"} <= set(r)
        assert r["baseline_value"] > 0
        if r["value"] is None:  # a timing difference too noisy for a rate (load-dependent)
            assert r["ratio"] is None and "too noisy" in r["note"]
            continue
        assert r["value"] > 0 and r["ratio"] > 0
        assert_close(r["ratio"], r["value"] / r["baseline_value"])
    assert any(n.startswith("instrumented vs plain step [mlp tiny]") for n in names)
    assert any(n.startswith("instrumented vs plain step [gpt tiny]") for n in names)
    overhead = [r for r in rows if r["name"].startswith("instrumented vs plain")]
    assert all(r["target"] == bt.OVERHEAD_TARGET for r in overhead)
    torch_rows = [r for r in rows if "PyTorch" in r["name"]]
    assert len(torch_rows) == 1
    t = torch_rows[0]
    try:
        import torch  # noqa: F401
        assert t["target"] == bt.TORCH_TARGET and t["baseline"].startswith("torch")
    except ImportError:
        assert t["note"].startswith("skipped") and t["target"] is None


def test_quick_bench_cli_prints_json_rows(capsys):
    assert main(["bench", "train", "--quick", "--repeats", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    _check_rows(rows)


def test_bad_repeats_raise():
    with pytest.raises(ValueError, match="repeats"):
        bt.run_bench(quick=True, repeats=0)


def test_gpt_mfu_arithmetic_and_validation():
    cfg = gpt.config("tiny")
    assert_close(bt.gpt_mfu(cfg, 1000.0, 2e9), 1000.0 * gpt.flops_per_token(cfg) / 2e9)
    # the paper model: 6·N dominates, N ≈ 124M
    paper = gpt.config("paper")
    assert 6 * 120e6 < gpt.flops_per_token(paper) < 6 * 130e6 + 12 * 12 * 768 * 2048
    assert_close(bt.gpt_mfu(paper, 1.0, gpt.flops_per_token(paper)), 1.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="tokens_per_s"):
            bt.gpt_mfu(cfg, bad, 1e12)
        with pytest.raises(ValueError, match="peak_flops"):
            bt.gpt_mfu(cfg, 1.0, bad)


def test_nominal_peaks():
    assert_close(bt.nominal_peak_flops("NVIDIA H100 80GB HBM3"), 989.4e12)
    assert_close(bt.nominal_peak_flops("NVIDIA H100 PCIe"), 756e12)
    assert_close(bt.nominal_peak_flops("NVIDIA A100-SXM4-80GB"), 312e12)
    assert bt.nominal_peak_flops("cpu") is None


def test_gpu_paper_entry_runs_on_cpu_at_tiny_size(capsys):
    assert bt.main(["--gpu-paper", "--size", "tiny", "--batch-size", "2", "--dtype",
                    "float32", "--repeats", "1", "--no-instrumented"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size"] == "tiny" and out["seq_len"] == gpt.config("tiny").block_size
    assert out["tokens_per_s"] > 0 and out["peak_source"] == "measured matmul"
    assert 0 < out["mfu"] < 1.5
    assert_close(out["mfu"], out["mfu_vs_matmul"])
    assert out["params"] == gpt.param_count(gpt.config("tiny"))


def test_torch_gpt_is_the_same_network():
    torch = pytest.importorskip("torch")
    import optax

    from driftlab.bench import torch_gpt as tg

    for cfg in (gpt.config("tiny", "gelu"),
                gpt.config("tiny", "clipped_relu2:1", pos="learned", norm="layernorm",
                           branch_scale="both", n_layer=1)):
        # jitted: eager init would compile every small random op on its own
        params = jax.jit(gpt.init, static_argnums=1)(jax.random.PRNGKey(0), cfg)
        batch = bt.gpt_token_batch(cfg, 3, seed=1)

        def loss(p):
            return gpt.loss(gpt.apply(p, batch, cfg), batch, cfg)[0]

        model = tg.load_jax_params(tg.TorchGPT(cfg), params)
        x, y = tg.as_tokens(batch["x"]), tg.as_tokens(batch["y"])
        assert tg.n_params(model) == gpt.param_count(cfg)
        with torch.no_grad():
            # 1e-5 ≈ 84 ε, tighter than the helper's float32 'ops' 64 ε rel + 64 ε·|b| on a scalar.
            # tol: the same float32 loss through PyTorch's and JAX's kernels, in another op order
            assert float(model(x, y)) == pytest.approx(float(jax.jit(loss)(params)), rel=1e-5)
        # one AdamW step moves both to the same weights
        tx = optax.adamw(1e-2, weight_decay=0.0)
        g = jax.jit(jax.grad(loss))(params)
        upd, _ = tx.update(g, tx.init(params), params)
        new = optax.apply_updates(params, upd)
        tg.make_train_step(model, 1e-2)(x, y)
        # AdamW's first step is lr·g/(|g| + ε): float32 gradient differences between the
        # libraries become update differences where |g| ≈ ε.
        # tol: 1% of lr = 1e-2, for those amplified float32 gradient differences
        np.testing.assert_allclose(model.blocks[0].mlp["w_out"].detach().numpy(),
                                   np.asarray(new["block0"]["mlp"]["w_out"]), atol=1e-4)
        # tol: the same 1% of lr
        np.testing.assert_allclose(model.wte.detach().numpy(), np.asarray(new["wte"]), atol=1e-4)


def test_torch_gpt_rejects_bf16():
    pytest.importorskip("torch")
    from driftlab.bench import torch_gpt as tg

    with pytest.raises(ValueError, match="compute_dtype"):
        tg.TorchGPT(gpt.config("tiny", compute_dtype="bfloat16"))
