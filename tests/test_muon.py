"""Muon against a NumPy reference, the routing table, the wcd schedule, and the paper-gpt
recipes (fields, phase scaling, trains and resumes bit-exactly, bad names rejected). The
paper's own Muon step is checked in tests/test_paper_muon_reference.py."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from driftlab.models.arch import gpt, mlp
from driftlab.models.engine.muon import NS_COEFFS, newton_schulz5, scale_by_muon, update_scale
from driftlab.models.engine.optim import make_optimizer, make_schedule, route_labels
from driftlab.models.engine.recipes import RECIPES, recipe_config
from driftlab.models.engine.train import TrainConfig, train
from driftlab.testing import assert_close


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
        # tol: five float32 Newton–Schulz iterations (quintic matmul chains) vs a float64 reference
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
    # the paper's rule √max(rows, cols): 8× (D × D, D × 4D) and 16× (4D × D) at D = 64
    assert update_scale((64, 64), "paper") == 8.0 and update_scale((256, 64), "paper") == 16.0
    assert_close(update_scale((64, 256), "moonlight"), 0.2 * 16)
    for bad in (dict(scaling="nope"), dict(momentum="nope"), dict(ns_dtype="float16")):
        with pytest.raises(ValueError, match=f"muon {next(iter(bad))}='"):
            scale_by_muon(**bad)
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
    # tol: the float32 Newton–Schulz iterations vs the float64 reference, as above
    np.testing.assert_allclose(np.asarray(upd["block0"]["mlp"]["w_out"]), ref, rtol=2e-4,
                               atol=1e-8)
    adam = optax.adamw(lr, b2=0.95, weight_decay=0.0)
    ref_wte, _ = adam.update(grads["wte"], adam.init(params["wte"]), params["wte"])
    # tol: the AdamW branch vs optax.adamw on the same float32 gradient: a few roundings, elementwise
    np.testing.assert_allclose(np.asarray(upd["wte"]), np.asarray(ref_wte), rtol=1e-6)


# --------------------------------------------------------------------------- schedule


def test_wcd_schedule_values():
    S, W, D, lr = 100, 10, 20, 0.5
    sched = make_schedule(lr, S, W, "wcd", D)
    ref = {0: lr / W, 4: lr * 5 / W, 9: lr, 50: lr, 80: lr, 81: lr * 19 / D, 99: lr / D,
           100: 0.0}
    for t, v in ref.items():
        assert_close(float(sched(t)), v, dtype="float32", err_msg=str(t))
    with pytest.raises(ValueError, match="warmdown_steps"):
        make_schedule(lr, 20, 10, "wcd", 11)
    with pytest.raises(ValueError, match="warmdown_steps"):
        TrainConfig(steps=20, warmup_steps=10, warmdown_steps=11, schedule="wcd").validate()


def test_wcd_schedule_with_an_early_end_is_the_papers_as_run():
    """get_lr_multiplier(warmup 0, warmdown 1450, num_iterations 5800) over 7168 steps:
    1 until 4350, (5800 − t)/1450 down to 0 at 5800, then 0 (the step is clamped)."""
    lr = 0.005
    sched = make_schedule(lr, 7168, 0, "wcd", 1450, warmdown_end=5800)

    def paper(step):  # models/model_gpt_orig.py, Model.get_lr_multiplier
        step = min(step, 5800)
        return 1.0 if step < 5800 - 1450 else (5800 - step) / 1450

    for t in (0, 4349, 4350, 5000, 5799, 5800, 5801, 7167):
        assert_close(float(sched(t)), lr * paper(t), dtype="float32", err_msg=str(t))
    with pytest.raises(ValueError, match="warmdown_end"):
        TrainConfig(steps=20, warmdown_end=21, schedule="wcd").validate()
    with pytest.raises(ValueError, match="warmdown_steps.*warmdown_end = 10"):
        TrainConfig(steps=20, warmdown_steps=11, warmdown_end=10, schedule="wcd").validate()


# --------------------------------------------------------------------------- recipe


def test_recipe_fields_and_overrides():
    cfg = recipe_config("paper-gpt")
    assert (cfg.optimizer, cfg.lr, cfg.muon_lr_ratio, cfg.adam_beta2, cfg.weight_decay) == \
        ("muon", 0.005, 0.1, 0.95, 0.0)
    assert (cfg.muon_scale, cfg.muon_momentum, cfg.muon_ns_dtype, cfg.act) == \
        ("paper", "sum", "bfloat16", "clipped_relu2:50")
    assert (cfg.schedule, cfg.steps, cfg.warmup_steps, cfg.warmdown_steps, cfg.warmdown_end) \
        == ("wcd", 7168, 0, 1450, 5800)
    assert cfg.phase_scaling is None  # the recipe's own length: nothing scaled
    assert dict(cfg.model_overrides)["init"] == "torch_default"
    assert cfg.recipe == "paper-gpt@2" == f"paper-gpt@{RECIPES['paper-gpt'].version}"
    conf = recipe_config("paper-gpt-config")
    assert (conf.recipe, conf.warmup_steps, conf.warmdown_steps, conf.warmdown_end,
            conf.muon_scale) == ("paper-gpt-config@1", 2000, 2028, None, "paper")
    old = recipe_config("paper-gpt@1")  # the first port, unchanged so its runs resume
    assert (old.recipe, old.warmup_steps, old.warmdown_steps, old.muon_scale, old.act,
            old.muon_ns_dtype) == ("paper-gpt@1", 2000, 2028, "jordan", "relu", "float32")
    assert recipe_config("paper-gpt@1", steps=20, warmup_steps=2, warmdown_steps=3) \
        .phase_scaling is None  # @1's phases are absolute
    over = recipe_config("paper-gpt", lr=0.01, model_overrides=(("init", "fan_in_normal"),))
    assert over.lr == 0.01 and dict(over.model_overrides)["init"] == "fan_in_normal"
    assert dict(over.model_overrides)["branch_scale"] == "attn"


def test_phases_scale_with_steps_and_explicit_values_win():
    """Boundaries b → round(b·S/7168) half up: warmdown end 5800 → 16, its start 4350 → 12."""
    cfg = recipe_config("paper-gpt", steps=20)
    assert (cfg.warmup_steps, cfg.warmdown_steps, cfg.warmdown_end) == (0, 4, 16)
    assert "20/7168" in cfg.phase_scaling and "warmdown_end 5800→16" in cfg.phase_scaling
    mine = recipe_config("paper-gpt", steps=20, warmdown_steps=3)
    assert (mine.warmdown_steps, mine.warmdown_end) == (3, 16)
    assert "explicit warmdown_steps kept" in mine.phase_scaling
    conf = recipe_config("paper-gpt-config", steps=1500)  # 2000 → 419, 5140 → 1076
    assert (conf.warmup_steps, conf.warmdown_steps, conf.warmdown_end) == (419, 424, None)
    assert recipe_config("paper-gpt", steps=7168).phase_scaling is None


def test_paper_gpt_1_keeps_its_run_identity():
    """Fields added for paper-gpt@2 stay out of a @1 run's identity and of preset run ids
    at their defaults, so checkpoints and sweeps made before them still match."""
    from driftlab.models.engine.train import model_config, run_identity
    from driftlab.models.arch import gpt as gpt_arch
    from driftlab.reports.presets import LATE_FIELDS, config_dict

    old = recipe_config("paper-gpt@1", steps=20, warmup_steps=2, warmdown_steps=3)
    ident = run_identity(old, model_config(gpt_arch, old))
    assert not set(LATE_FIELDS) & set(ident) and not set(LATE_FIELDS) & set(config_dict(old))
    new = recipe_config("paper-gpt", steps=20)
    ident = run_identity(new, model_config(gpt_arch, new))
    assert (ident["muon_scale"], ident["muon_ns_dtype"], ident["warmdown_end"]) == \
        ("paper", "bfloat16", 16)


def test_bad_recipe_name_is_a_clear_error_and_exit_2(capsys):
    with pytest.raises(ValueError, match=r"recipe='nope' invalid; allowed: paper-gpt"):
        recipe_config("nope")
    from driftlab.cli import main
    assert main(["train", "--recipe", "nope"]) == 2
    assert "recipe='nope' invalid" in capsys.readouterr().err


def _records(path):
    out = []
    for line in (path / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("time"), rec.pop("steps_per_s")
        out.append(rec)
    return out


def test_paper_gpt_cli_steps_20_trains_and_resumes_bit_exactly(tmp_path, capsys):
    """``driftlab train --recipe paper-gpt --steps 20``: phases scaled (stated on stderr and
    in config.json), trains, and a run cut at step 9 resumes to the same bits."""
    import argparse

    from driftlab.cli import main
    from driftlab.models.engine.train_cli import add_arguments, config_from_args

    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    argv = ["--recipe", "paper-gpt", "--steps", "20", "--size", "tiny", "--batch-size", "4",
            "--log-every", "5", "--eval-batches", "1", "--no-progress"]
    assert main(["train", *argv, "--out", str(full_dir)]) == 0
    assert "phases scaled by 20/7168" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    part = train(config_from_args(parser.parse_args(argv + ["--out", str(cut_dir)])),
                 stop_at=9)
    assert part["status"] == "stopped" and part["steps"] == 9
    assert main(["train", *argv, "--out", str(cut_dir), "--resume", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    full = json.loads((full_dir / "summary.json").read_text())
    assert resumed["resumed_from"] == 9 and resumed["status"] == "ok"
    assert np.isfinite(full["final_loss"])
    a, b = np.load(full_dir / "checkpoint.npz"), np.load(cut_dir / "checkpoint.npz")
    assert sorted(a.files) == sorted(b.files) and any(k.startswith("opt/") for k in a.files)
    for k in a.files:  # params and the routed Muon/AdamW state, bit for bit
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _records(full_dir) == _records(cut_dir)
    assert resumed["final_loss"] == full["final_loss"]
    conf = json.loads((full_dir / "config.json").read_text())["train"]
    assert conf["recipe"] == "paper-gpt@2" and conf["muon_scale"] == "paper"
    assert (conf["warmup_steps"], conf["warmdown_steps"], conf["warmdown_end"]) == (0, 4, 16)
    assert "warmdown_end 5800→16" in conf["phase_scaling"]
    # lr: the peak until the warmdown starts at 12, then (16 − t)/4 of it, 0 from 16 on
    lrs = {r["step"]: r["lr"] for r in _records(full_dir)}
    assert_close([lrs[0], lrs[10], lrs[15]], [0.005, 0.005, 0.005 / 4], dtype="float32")
    assert lrs[19] == 0.0


def test_cli_flags_override_the_recipe():
    import argparse

    from driftlab.models.engine.train_cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(
        ["--recipe", "paper-gpt", "--lr", "0.01", "--steps", "100", "--warmup-steps", "10",
         "--warmdown-steps", "20", "--set", "init=fan_in_normal", "--set", "n_layer=3"]))
    assert (cfg.lr, cfg.steps, cfg.optimizer, cfg.adam_beta2) == (0.01, 100, "muon", 0.95)
    model = dict(cfg.model_overrides)
    assert model["init"] == "fan_in_normal" and model["n_layer"] == 3
    assert model["branch_scale"] == "attn" and cfg.recipe == "paper-gpt@2"
    plain = config_from_args(parser.parse_args([]))
    assert plain == TrainConfig()  # without a recipe: TrainConfig's defaults
