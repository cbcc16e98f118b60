"""Fast checks of the per-layer theorem (theory/per_layer.py, models/measure/per_layer.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.arch.base import get_arch
from driftlab.models.measure.per_layer import (LayersSpec, per_seed, run_layers,
                                           agreement_threshold)
from driftlab.theory import per_layer as T
from driftlab.theory.expected_grad import expected_grad_positive_mse, softmax_trace_factor
from driftlab.theory.setting import BlockSetting


def test_symbolic_steps_and_their_power():
    assert T.check_stein_lemma()
    assert T.check_dense_stein(2, 2, 2)
    assert not T.check_dense_stein(2, 2, 2, diagonal_only=True)  # cross-position T_tt' needed
    assert T.check_canonical_reduction(3)


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_reduces_to_canonical_mse(act):
    for reduction in ("sum", "mean"):
        s = BlockSetting(act=act, d_in=16, width=32, d_out=10, reduction=reduction)
        # tol: the same float64 expectation through two code paths (per-layer formula vs canonical), 1e-12 relative
        assert T.canonical_prediction_mse(s) == pytest.approx(
            expected_grad_positive_mse(s).value, rel=1e-12)


def test_ce_trace_matches_softmax_trace_factor():
    rng = np.random.default_rng(0)
    u = 1.3 * rng.standard_normal((200_000, 10))
    s = np.exp(u - u.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    vals = 1 - (s**2).sum(1)
    se = vals.std() / np.sqrt(vals.size)
    # tol: 4 SE of the mean over the sampled logits (tighter than the suite's z* ≈ 4.56)
    assert abs(vals.mean() - softmax_trace_factor(1.3, 10)) < 4 * se


def _mlp_seed(task, exact=True):
    arch = get_arch("mlp")
    cfg, ds = arch.data("synthetic", arch.config("tiny", "relu", depth=1, task=task), 0)
    params = arch.init(jax.random.PRNGKey(3), cfg)
    batch = {k: jnp.asarray(v) for k, v in ds.sample("train", 3, 16, 3).items()}
    fn = jax.jit(lambda pr, b: per_seed(arch, cfg, pr, b, "layer0", 4, jax.random.PRNGKey(0), exact))
    return arch, cfg, params, batch, fn(params, batch)


@pytest.mark.parametrize("task", ["classify", "regress"])
def test_estimator_reduces_to_canonical_T(task):
    """Exact-basis estimator on a one-hidden-layer MLP = s²·E over p>0 of σσ'(p)·T_b with the
    closed-form T_b: 2k (Σ_k (f−y)², no ½) or 1 − ‖softmax(f_b)‖² (CE)."""
    arch, cfg, params, batch, out = _mlp_seed(task)
    x = batch["x"].reshape(batch["x"].shape[0], -1).astype(jnp.float32)
    p = x @ params["layer0"]["w"] + params["layer0"]["b"]
    h = jax.nn.relu(p)
    f = h @ params["head"]["w"] + params["head"]["b"]
    if task == "regress":
        Tb = jnp.full((p.shape[0],), 2.0 * cfg.out_dim)
    else:
        Tb = 1 - jnp.sum(jax.nn.softmax(f) ** 2, axis=-1)
    pos = p > 0
    expect = (1 / cfg.width) * jnp.sum(jnp.where(pos, h * Tb[:, None], 0)) / pos.sum()
    # tol: float32: per_seed's prediction vs the same sum recomputed here in another order
    assert float(out["predicted"]) == pytest.approx(float(expect), rel=1e-4)
    assert float(out["reader_error"]) < 1e-4
    if task == "regress":  # no curvature after the head: prediction = Gauss–Newton part
        # tol: float32: the Gauss–Newton part and the full prediction come from separate reductions
        assert float(out["gauss_newton"]) == pytest.approx(float(out["predicted"]), rel=1e-5)


def test_hutchinson_is_unbiased_for_the_exact_basis():
    *_, exact = _mlp_seed("classify", exact=True)
    arch, cfg, params, batch, _ = _mlp_seed("classify")
    fn = jax.jit(lambda key: per_seed(arch, cfg, params, batch, "layer0", 8, key)["predicted"])
    vals = [float(fn(jax.random.PRNGKey(k))) for k in range(6)]
    se = np.std(vals, ddof=1) / np.sqrt(len(vals))
    # tol: 5 SE over 6 probe keys (an SE from 6 values is itself noisy), + 1e-9 should that SE be 0
    assert abs(np.mean(vals) - float(exact["predicted"])) < 5 * se + 1e-9


def test_mlp_agrees_and_planted_errors_fail():
    n_checks = 2
    z_star = agreement_threshold(n_checks)
    rows = run_layers(LayersSpec("mlp", seeds=24, batch_size=16, exact=True), n_checks,
                      taps=["layer1"])
    assert all(abs(r.z) <= z_star for r in rows)
    assert all(r.sign_verdict == "positive" for r in rows)
    # ×2 planted into the prediction: the same check rejects it at these seeds (a 5% error
    # is below the detectable shift here; see docs/per-layer.md).
    bad = run_layers(LayersSpec("mlp", seeds=24, batch_size=16, exact=True, planted_scale=2.0),
                     n_checks, taps=["layer1"])
    assert any(abs(r.z) > z_star for r in bad)


def test_non_dense_reader_is_refused():
    """The dense estimator refuses a conv reader (ResNet goes through montecarlo/conv_readers)."""
    arch = get_arch("resnet")
    cfg, ds = arch.data("synthetic", arch.config("tiny", "relu"), 0)
    params = arch.init(jax.random.PRNGKey(0), cfg)
    batch = {k: jnp.asarray(v) for k, v in ds.sample("train", 0, 2, 0).items()}
    with pytest.raises(ValueError, match="dense"):
        per_seed(arch, cfg, params, batch, "stage1.block0.act1", 1, jax.random.PRNGKey(0))


def test_cli_layers_json_rows_and_errors(capsys):
    import json

    from driftlab.cli import main

    assert main(["theory", "layers", "--arch", "mlp", "--seeds", "3", "--batch-size", "4",
                 "--set", "depth=2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["tap"] for r in rows] == ["layer0", "layer1"]
    for key in ("predicted", "predicted_se", "measured", "measured_se", "z", "gauss_newton",
                "curvature", "sign_verdict"):
        assert all(key in r for r in rows)
    for bad in (["--arch", "nope"], ["--arch", "gpt", "--size", "huge"],
                ["--arch", "mlp", "--seeds", "1"], ["--arch", "mlp", "--set", "depht=3"]):
        assert main(["theory", "layers", *bad]) == 2
        assert "error" in capsys.readouterr().err
