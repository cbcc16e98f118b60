"""Muon against a NumPy reference, the routing table, the wcd schedule, and the paper-gpt
recipe (trains, resumes bit-exactly, bad names rejected)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from driftlab.models import gpt, mlp
from driftlab.models.muon import NS_COEFFS, newton_schulz5, scale_by_muon, update_scale
from driftlab.models.optim import make_optimizer, make_schedule, route_labels
from driftlab.models.recipes import RECIPES, recipe_config
from driftlab.models.train import TrainConfig, train


# --------------------------------------------------------------------------- reference


def np_newton_schulz5(g, steps=5, eps=1e-7):
    """Keller Jordan's zeropower_via_newtonschulz5, transcribed to NumPy float64."""
    a, b, c = NS_COEFFS
    x = np.asarray(g, np.float64)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (np.linalg.norm(x) + eps)
    for _ in range(steps):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    return x.T if tall else x


def np_muon_steps(grads, beta=0.95, nesterov=True):
    """Reference muon_update for a (fan_in, fan_out) matrix: momentum.lerp_(g, 1−β);
    u = g.lerp_(momentum, β) (Nesterov); NS₅; × √max(1, fan_out/fan_in)."""
    m = np.zeros_like(grads[0], np.float64)
    out = []
    for g in grads:
        m = beta * m + (1 - beta) * g
        u = beta * m + (1 - beta) * g if nesterov else m
        fan_in, fan_out = g.shape
        out.append(np_newton_schulz5(u) * max(1.0, fan_out / fan_in) ** 0.5)
    return out


@pytest.mark.parametrize("shape", [(8, 24), (24, 8)])
def test_muon_matches_numpy_reference(shape):
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=shape).astype(np.float32) for _ in range(4)]
    tx = scale_by_muon()
    state = tx.init({"w": jnp.zeros(shape)})
    ref = np_muon_steps([g.astype(np.float64) for g in grads])
    ref_plain = np_muon_steps([g.astype(np.float64) for g in grads], nesterov=False)
    for t, g in enumerate(grads):
        upd, state = tx.update({"w": jnp.asarray(g)}, state)
        got = np.asarray(upd["w"], np.float64)
        np.testing.assert_allclose(got, ref[t], rtol=2e-4, atol=2e-5)
        if t > 0:  # the check can fail: without Nesterov the step differs measurably
            assert np.max(np.abs(ref_plain[t] - ref[t])) > 100 * 2e-4 * np.max(np.abs(ref[t]))


def test_newton_schulz_equalizes_singular_values():
    """NS₅ maps singular values into roughly [0.7, 1.2], the rank-one mean direction too."""
    rng = np.random.default_rng(1)
    g = rng.normal(size=(32, 64)) + 5.0  # a dominant mean (rank-one) direction
    s_in = np.linalg.svd(g, compute_uv=False)
    s_out = np.linalg.svd(np.asarray(newton_schulz5(jnp.asarray(g, jnp.float32))),
                          compute_uv=False)
    assert s_in[0] / s_in[-1] > 10
    assert s_out.min() > 0.6 and s_out.max() < 1.25


def test_update_scale_and_bad_scaling():
    assert update_scale((16, 64)) == 2.0 and update_scale((64, 16)) == 1.0
    with pytest.raises(ValueError, match="scaling"):
        update_scale((4, 4), "nope")


# --------------------------------------------------------------------------- routing


def test_routing_table_gpt_and_mlp():
    gcfg = gpt.config("tiny", "relu")
    labels = route_labels(jax.eval_shape(lambda: gpt.init(jax.random.PRNGKey(0), gcfg)))
    assert labels["wte"] == "adamw" and labels["ln_f"]["scale"] == "adamw"
    blk = labels["block0"]
    assert blk["ln1"]["scale"] == "adamw" and blk["ln2"]["scale"] == "adamw"
    assert all(v == "muon" for v in blk["attn"].values())
    assert blk["mlp"] == {"w_in": "muon", "w_out": "muon"}
    mcfg = mlp.config("tiny", "relu")
    mlabels = route_labels(jax.eval_shape(lambda: mlp.init(jax.random.PRNGKey(0), mcfg)))
    flat = {"/".join(str(k.key) for k in p): v
            for p, v in jax.tree_util.tree_leaves_with_path(mlabels)}
    assert flat["layer0/w"] == "adamw" and flat["head/w"] == "adamw"
    assert flat["layer1/w"] == "muon"
    assert all(v == "adamw" for k, v in flat.items() if not k.endswith("/w"))


def test_routed_optimizer_updates_each_group_with_its_optimizer():
    """One step of optimizer="muon" equals Muon on block matrices and AdamW elsewhere."""
    gcfg = gpt.config("tiny", "relu")
    params = gpt.init(jax.random.PRNGKey(0), gcfg)
    grads = jax.tree_util.tree_map(lambda p: jnp.cos(p * 7.0 + 0.3), params)
    lr = 0.01
    tx = make_optimizer("muon", lambda t: lr, adam_beta2=0.95, muon_lr_ratio=0.1)
    upd, _ = tx.update(grads, tx.init(params), params)
    w = grads["block0"]["mlp"]["w_out"]
    ref = -0.1 * lr * np_muon_steps([np.asarray(w, np.float64)])[0]
    np.testing.assert_allclose(np.asarray(upd["block0"]["mlp"]["w_out"]), ref, rtol=2e-4,
                               atol=1e-8)
    adam = optax.adamw(lr, b2=0.95, weight_decay=0.0)
    ref_wte, _ = adam.update(grads["wte"], adam.init(params["wte"]), params["wte"])
    np.testing.assert_allclose(np.asarray(upd["wte"]), np.asarray(ref_wte), rtol=1e-6)


# --------------------------------------------------------------------------- schedule


def test_wcd_schedule_values():
    S, W, D, lr = 100, 10, 20, 0.5
    sched = make_schedule(lr, S, W, "wcd", D)
    ref = {0: lr / W, 4: lr * 5 / W, 9: lr, 50: lr, 80: lr, 81: lr * 19 / D, 99: lr / D,
           100: 0.0}
    for t, v in ref.items():
        assert float(sched(t)) == pytest.approx(v, rel=1e-6, abs=1e-9), t
    with pytest.raises(ValueError, match="warmdown_steps"):
        make_schedule(lr, 20, 10, "wcd", 11)
    with pytest.raises(ValueError, match="warmdown_steps"):
        TrainConfig(steps=20, warmup_steps=10, warmdown_steps=11, schedule="wcd").validate()


# --------------------------------------------------------------------------- recipe


def test_recipe_fields_and_overrides():
    cfg = recipe_config("paper-gpt")
    assert (cfg.optimizer, cfg.lr, cfg.muon_lr_ratio, cfg.adam_beta2, cfg.weight_decay) == \
        ("muon", 0.005, 0.1, 0.95, 0.0)
    assert (cfg.schedule, cfg.steps, cfg.warmup_steps, cfg.warmdown_steps) == \
        ("wcd", 7168, 2000, 2028)
    assert dict(cfg.model_overrides)["init"] == "torch_default"
    assert cfg.recipe == f"paper-gpt@{RECIPES['paper-gpt'].version}"
    over = recipe_config("paper-gpt", lr=0.01, model_overrides=(("init", "fan_in_normal"),))
    assert over.lr == 0.01 and dict(over.model_overrides)["init"] == "fan_in_normal"
    assert dict(over.model_overrides)["branch_scale"] == "attn"


def test_bad_recipe_name_is_a_clear_error_and_exit_2(capsys):
    with pytest.raises(ValueError, match=r"recipe='nope' invalid; allowed: paper-gpt"):
        recipe_config("nope")
    from driftlab.cli import main
    assert main(["train", "--recipe", "nope"]) == 2
    assert "recipe='nope' invalid" in capsys.readouterr().err


TINY = dict(steps=24, warmup_steps=4, warmdown_steps=8, batch_size=8, log_every=4,
            eval_batches=1, progress=False)


def _records(path):
    out = []
    for line in (path / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("time"), rec.pop("steps_per_s")
        out.append(rec)
    return out


def test_paper_gpt_recipe_trains_and_resumes_bit_exactly(tmp_path):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = train(recipe_config("paper-gpt", out=str(full_dir), **TINY))
    part = train(recipe_config("paper-gpt", out=str(cut_dir), **TINY), stop_at=11)
    assert part["status"] == "stopped" and part["steps"] == 11
    resumed = train(recipe_config("paper-gpt", out=str(cut_dir), resume=True, **TINY))
    assert resumed["resumed_from"] == 11 and resumed["status"] == "ok"
    assert np.isfinite(full["final_loss"]) and full["final_loss"] < full["val_loss"] + 5
    a, b = np.load(full_dir / "checkpoint.npz"), np.load(cut_dir / "checkpoint.npz")
    assert sorted(a.files) == sorted(b.files)
    assert any(k.startswith("opt/") for k in a.files)
    for k in a.files:  # params and the routed Muon/AdamW state, bit for bit
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _records(full_dir) == _records(cut_dir)
    assert resumed["final_loss"] == full["final_loss"] and resumed["layers"] == full["layers"]
    conf = json.loads((full_dir / "config.json").read_text())
    assert conf["train"]["recipe"] == "paper-gpt@1" and conf["model"]["init"] == "torch_default"
    # The learning rate followed wcd: 0 < lr < peak in warmup and warmdown, peak between.
    lrs = {r["step"]: r["lr"] for r in _records(full_dir)}
    assert lrs[0] == pytest.approx(0.005 / 4) and lrs[8] == pytest.approx(0.005)
    assert lrs[23] == pytest.approx(0.005 / 8)


def test_cli_flags_override_the_recipe():
    import argparse

    from driftlab.models.train_cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(
        ["--recipe", "paper-gpt", "--lr", "0.01", "--steps", "100", "--warmup-steps", "10",
         "--warmdown-steps", "20", "--set", "init=fan_in_normal", "--set", "n_layer=3"]))
    assert (cfg.lr, cfg.steps, cfg.optimizer, cfg.adam_beta2) == (0.01, 100, "muon", 0.95)
    model = dict(cfg.model_overrides)
    assert model["init"] == "fan_in_normal" and model["n_layer"] == 3
    assert model["branch_scale"] == "attn" and cfg.recipe == "paper-gpt@1"
    plain = config_from_args(parser.parse_args([]))
    assert plain == TrainConfig()  # without a recipe: TrainConfig's defaults
