"""driftlab inspect (issue 33) on a model file: each reported number against an independent
computation at the same seeds, with a planted error that the comparison catches."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.arch import user_model as um

ROOT = Path(__file__).resolve().parents[1]
MLP = str(ROOT / "examples" / "mlp_relu.py")
SEEDS, N, LR = 4, 8, 0.05


@pytest.fixture(scope="module")
def rows():
    from driftlab.reports.inspect import inspect

    return inspect(MLP, seeds=SEEDS, samples=N, lr=LR, drift_steps=2, probes=2, pairs=2)


def _direct(seed):
    """Per-seed E[g|p>0] of both taps, and ∂L/∂w2, ∂L/∂w3 means, by hand (no tap, no probe)."""
    model = um.load(MLP)
    prm = model.init(um.init_key(seed))
    x, y = um.train_batch(model, seed, 0, N)
    p0 = x @ prm["w1"]

    def ells(p0_, p1_=None):
        h1 = jax.nn.relu(p0_)
        p1 = h1 @ prm["w2"] if p1_ is None else p1_
        f = jax.nn.relu(p1) @ prm["w3"]
        return 0.5 * jnp.sum((f - y) ** 2, axis=1)

    g0 = jax.grad(lambda p: ells(p).sum())(p0)  # Σᵢ ℓᵢ: row i of g0 is ∂ℓᵢ/∂pᵢ
    p1 = jax.nn.relu(p0) @ prm["w2"]
    g1 = jax.grad(lambda p: ells(p0, p).sum())(p1)
    ratio = lambda g, p: float(jnp.sum(g * (p > 0)) / jnp.sum(p > 0))

    def L(params):
        h = jax.nn.relu(jax.nn.relu(x @ params["w1"]) @ params["w2"])
        return jnp.mean(0.5 * jnp.sum((h @ params["w3"] - y) ** 2, axis=1))
    gw = jax.grad(L)(prm)
    return {"layer0": ratio(g0, p0), "layer1": ratio(g1, p1)}, gw, prm


def test_measured_e_g_pos_is_the_per_example_ratio(rows):
    direct = [_direct(s)[0] for s in range(SEEDS)]
    for tap in ("layer0", "layer1"):
        row = next(r for r in rows if r["tap"] == tap and r["quantity"] == "E[g|p>0]")
        want = np.array([d[tap] for d in direct])
        # tol: float32 autodiff on the same arrays by two programs (probe vs direct p); 2e-5 relative
        np.testing.assert_allclose(row["per_seed"], want, rtol=2e-5)
        with pytest.raises(AssertionError):  # a planted 0.1% error is caught
            np.testing.assert_allclose(row["per_seed"], want * 1.001, rtol=2e-5)  # tol: planted
        assert row["n"] == SEEDS and row["se"] > 0 and "per-example" in row["convention"]


def test_step1_drift_is_minus_lr_mean_gradient(rows):
    for w in ("w2", "w3"):
        row = next(r for r in rows if r["quantity"] == "drift" and r["matrix"] == w)
        want = []
        for s in range(SEEDS):
            _, gw, prm = _direct(s)
            s_w = float(jnp.sqrt(jnp.mean(prm[w] ** 2)))
            want.append(-LR * float(jnp.mean(gw[w])) / s_w)
        # tol: float32 mean of W after one step vs an f32 gradient mean: 1e-4 relative
        np.testing.assert_allclose(row["measured_step1"], np.mean(want), rtol=1e-4)
        with pytest.raises(AssertionError):
            np.testing.assert_allclose(row["measured_step1"], np.mean(want) * 1.01, rtol=1e-4)  # tol: planted


def test_rows_cover_every_tap_and_reader(rows):
    kinds = {(r["tap"], r["quantity"], r.get("matrix")) for r in rows}
    assert kinds == {("layer0", "E[g|p>0]", None), ("layer0", "per-layer", None),
                     ("layer0", "drift", "w2"), ("layer1", "E[g|p>0]", None),
                     ("layer1", "per-layer", None), ("layer1", "drift", "w3")}
    pl = {r["tap"]: r for r in rows if r["quantity"] == "per-layer"}
    assert not pl["layer0"]["applies"] and "identity form" in pl["layer0"]["reason"]
    assert pl["layer1"]["applies"]  # activation form, one dense reader
    # the Stein prediction and autodiff agree per seed in expectation: paired z small
    assert abs(pl["layer1"]["z"]) < 4
    # at the output head under MSE the curvature part is 0 (T = k exactly)
    assert abs(pl["layer1"]["curvature"]) < 1e-5 * abs(pl["layer1"]["predicted"])


def test_adamw_first_step_is_the_sign_step():
    from driftlab.reports.inspect import InspectSpec, measure

    model = um.load(MLP)
    program = um.validate(model, N)
    meas = measure(program, InspectSpec(seeds=2, samples=N, optimizer="adamw", lr=1e-3,
                                        drift_steps=1, pairs=2))
    for s in range(2):
        prm = model.init(um.init_key(s))
        vals = []
        for j in range(2):
            x, y = um.estimator_batch(model, s, j, N)
            g = jax.grad(lambda w: jnp.mean(0.5 * jnp.sum(
                (jax.nn.relu(jax.nn.relu(x @ prm["w1"]) @ w) @ prm["w3"] - y) ** 2, 1)))(prm["w2"])
            vals.append(float(jnp.mean(-1e-3 * g / (jnp.abs(g) + 1e-8))))
        # tol: optax's adamw first step vs g/(|g|+eps) in float32: 1e-4 relative
        np.testing.assert_allclose(meas.first_step["w2"][s], np.mean(vals), rtol=1e-4)


def test_json_lines_and_api(tmp_path):
    out = subprocess.run([sys.executable, "-m", "driftlab.cli", "inspect", MLP, "--seeds", "2",
                          "--samples", "4", "--drift-steps", "1", "--probes", "1", "--pairs", "1",
                          "--json"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(objs) == 6 and all("tap" in o and "quantity" in o and "n" in o for o in objs)


def test_import_driftlab_starts_no_jax():
    code = ("import sys, driftlab; assert callable(driftlab.tap) and callable(driftlab.inspect); "
            "assert driftlab.tap('a', 3) == 3 and driftlab.tap('a', 3, lambda z: 2 * z) == 6; "
            "assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
