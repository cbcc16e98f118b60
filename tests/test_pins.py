"""Pins (models/engine/pins.py): exactness, composition with optimizers and resume, errors, and the
mean pre-activation shift decomposition."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from driftlab.models.engine import pins
from driftlab.models.engine.train import TrainConfig, train

BASE = dict(arch="mlp", act="relu", data="synthetic", size="tiny", steps=6, batch_size=8,
            lr=0.05, log_every=1, eval_batches=1, progress=False)
GPT = dict(arch="gpt", act="relu", data="synthetic", size="tiny", steps=4, batch_size=4,
           lr=3e-3, optimizer="adamw", log_every=1, eval_batches=1, progress=False,
           model_overrides=(("n_layer", 2), ("block_size", 16)))


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_downstream_mean_pin_holds_exactly_while_the_rest_moves(tmp_path, optimizer):
    free = _records(_run(tmp_path / "free", optimizer, ()))
    pinned = _records(_run(tmp_path / "pin", optimizer, ("downstream-mean",)))
    downstream = ("layer1/w",)  # head/w is an output head, not a downstream matrix
    for rec in pinned:
        for path in downstream:
            assert abs(rec["weights"][path]["mean_change"]) < 1e-7, (rec["step"], path)
        assert set(rec["pins"]["downstream-mean"]) == set(downstream)
    last, last_free = pinned[-1], free[-1]
    # The rest of the update is kept: the pinned matrices' spread and the unpinned
    # layer0/w's mean still move, and without the pin the downstream means move.
    assert abs(last["weights"]["layer0/w"]["mean_change"]) > 1e-5
    for path in downstream:
        assert last["weights"][path]["std"] != pinned[0]["weights"][path]["std"]
    assert max(abs(last_free["weights"][p]["mean_change"]) for p in downstream) > 1e-5
    assert max(abs(last["pins"]["downstream-mean"][p]) for p in downstream) > 1e-6
    conf = json.loads((tmp_path / "pin" / "config.json").read_text())
    assert conf["train"]["pins"] == ["downstream-mean"]


def _run(out, optimizer, pin_names, **kw):
    train(TrainConfig(**{**BASE, **kw}, optimizer=optimizer, pins=pin_names, out=str(out)))
    return out


def test_reader_pin_removes_exactly_the_change_along_the_mean_input():
    key = jax.random.PRNGKey(0)
    w0 = jax.random.normal(key, (6, 5))
    w = w0 + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (6, 5))
    u_bar = jnp.arange(1.0, 7.0)
    reader_map = {"t": pins.Reader("r/w", None, None)}
    ref = {"reader_w0": {"r/w": w0}}
    new, logs = pins.apply_pins({"r": {"w": w}}, ("reader-stream-mean",), ref,
                                {"t": u_bar}, reader_map)
    w_new = new["r"]["w"]
    u_hat = u_bar / jnp.linalg.norm(u_bar)
    # tol: float32 projection onto ū: products of O(1) entries cancelling to 0
    np.testing.assert_allclose(u_bar @ (w_new - w0), 0.0, atol=1e-5)  # ū(R − R₀) = 0
    other = jnp.linalg.svd(jnp.eye(6) - jnp.outer(u_hat, u_hat))[0][:, :5]  # ⟂ û
    # tol: float32: the orthogonal complement via an SVD, products of O(1) entries
    np.testing.assert_allclose(other.T @ w_new, other.T @ w, atol=1e-5)  # rest kept
    removed = np.asarray(w - w_new)
    got = logs["reader-stream-mean"]["r/w"]
    # tol: the logged float32 Frobenius norm vs NumPy's recomputation from the weights
    np.testing.assert_allclose(got["removed_fro"], np.linalg.norm(removed), rtol=1e-5)
    # tol: the logged float32 mean vs NumPy's recomputation from the weights
    np.testing.assert_allclose(got["removed_p_mean"], np.mean(np.asarray(u_bar) @ removed),
                               rtol=1e-5)


def test_sham_pin_runs_the_reader_path_and_removes_nothing():
    """The sham computes (and logs) the reader pin's projection but leaves R bit-exactly
    unchanged; the planted control: the real reader pin on the same inputs changes R."""
    key = jax.random.PRNGKey(3)
    w0 = jax.random.normal(key, (6, 5))
    w = w0 + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (6, 5))
    args = ({"t": pins.Reader("r/w", None, None)},)
    ref = {"reader_w0": {"r/w": w0}}
    u = {"t": jnp.arange(1.0, 7.0)}
    sham, logs = pins.apply_pins({"r": {"w": w}}, ("sham",), ref, u, *args)
    np.testing.assert_array_equal(np.asarray(sham["r"]["w"]), np.asarray(w))
    real, real_logs = pins.apply_pins({"r": {"w": w}}, ("reader-stream-mean",), ref, u, *args)
    assert float(jnp.max(jnp.abs(real["r"]["w"] - w))) > 1e-3
    # tol: NumPy's default rtol 1e-7: the sham logs the norm the real pin would remove
    np.testing.assert_allclose(logs["sham"]["r/w"]["removed_fro"],
                               real_logs["reader-stream-mean"]["r/w"]["removed_fro"])


def test_sham_direction_pin_projects_out_a_zero_mean_direction_and_keeps_the_mean():
    """W ← W − ⟨W − W₀, D̂⟩D̂: afterwards ⟨W − W₀, D̂⟩ = 0, mean(W) is unchanged (D̂ ⊥ 1) and
    W does change (so the control can come out non-zero), unlike the mean pin, which moves
    exactly the mean."""
    key = jax.random.PRNGKey(5)
    w0 = jax.random.normal(key, (8, 6))
    w = w0 + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (8, 6)) + 0.05
    down = {"layer0": "l/w"}
    ref = pins.reference({"l": {"w": w0}}, ("sham-direction",), "vit", None, down)
    d = ref["sham_dir"]["l/w"]
    assert abs(float(jnp.sum(d))) < 1e-5 and abs(float(jnp.sum(d * d)) - 1) < 1e-5  # tol: float32 sums of 48 terms
    out, logs = pins.apply_pins({"l": {"w": w}}, ("sham-direction",), ref, {}, {})
    new = out["l"]["w"]
    assert abs(float(jnp.sum((new - w0) * d))) < 1e-5  # tol: float32 sum of 48 terms
    assert abs(float(jnp.mean(new) - jnp.mean(w))) < 1e-6  # tol: float32 mean of 48 terms
    assert float(jnp.max(jnp.abs(new - w))) > 1e-3
    assert float(logs["sham-direction"]["l/w"]) != 0.0
    mean_pinned, _ = pins.apply_pins({"l": {"w": w}}, ("downstream-mean",),
                                     pins.reference({"l": {"w": w0}}, ("downstream-mean",),
                                                    "vit", None, down), {}, {})
    assert abs(float(jnp.mean(mean_pinned["l"]["w"]) - jnp.mean(w0))) < 1e-6  # tol: float32 mean
    with pytest.raises(ValueError, match="not both"):
        pins.validate_pins(("downstream-mean", "sham-direction"), "mlp")


def test_sham_direction_pin_trains_and_the_summary_has_the_last_batch_sparsity(tmp_path):
    out = _run(tmp_path / "sd", "adamw", ("sham-direction",))
    summary = json.loads((out / "summary.json").read_text())
    assert _records(out)[-1]["pins"]["sham-direction"].keys() == {"layer1/w"}
    for tap in summary["taps"].values():
        assert 0.0 <= tap["sparsity_last"] <= 1.0


def test_sham_pin_refused_with_the_reader_pin_and_outside_reader_archs():
    with pytest.raises(ValueError, match="not both"):
        pins.validate_pins(("reader-stream-mean", "sham"), "mlp")
    with pytest.raises(ValueError, match="allowed archs"):
        pins.validate_pins(("sham",), "vit")


@pytest.mark.slow
def test_reader_pin_in_training_gpt_and_mlp(tmp_path):
    recs = _records(_run(tmp_path / "mlp", "adamw", ("reader-stream-mean",)))
    assert set(recs[0]["pins"]["reader-stream-mean"]) == {"layer0/w", "layer1/w"}
    assert recs[-1]["pins"]["reader-stream-mean"]["layer1/w"]["removed_fro"] > 0
    train(TrainConfig(**GPT, pins=("reader-stream-mean", "downstream-mean"),
                      out=str(tmp_path / "gpt")))
    recs = _records(tmp_path / "gpt")
    for rec in recs:
        for i in range(2):
            assert abs(rec["weights"][f"block{i}/mlp/w_out"]["mean_change"]) < 1e-7
    last = recs[-1]
    assert set(last["pins"]["reader-stream-mean"]) == {"block0/mlp/w_in", "block1/mlp/w_in"}
    assert last["pins"]["reader-stream-mean"]["block0/mlp/w_in"]["removed_fro"] > 0
    assert set(last["shift"]) == {"block0.mlp", "block1.mlp"}


@pytest.mark.slow
def test_pinned_run_resumes_bit_exactly(tmp_path):
    kw = dict(BASE, optimizer="adamw", steps=8, log_every=2,
              pins=("downstream-mean", "reader-stream-mean"))
    train(TrainConfig(**kw, out=str(tmp_path / "full")))
    train(TrainConfig(**kw, out=str(tmp_path / "cut"), checkpoint_every=3), stop_at=5)
    train(TrainConfig(**kw, out=str(tmp_path / "cut"), checkpoint_every=3, resume=True))
    a = _arrays(tmp_path / "full" / "checkpoint.npz")
    b = _arrays(tmp_path / "cut" / "checkpoint.npz")
    for k in a:
        if k != "meta":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _records(tmp_path / "full") == [
        {**r, "steps_per_s": f["steps_per_s"], "time": f["time"]}
        for r, f in zip(_records(tmp_path / "cut"), _records(tmp_path / "full"))]
    # A checkpoint of an unpinned run is not resumed by a pinned one.
    with pytest.raises(ValueError, match="different run"):
        train(TrainConfig(**{**kw, "pins": ()}, out=str(tmp_path / "cut"), resume=True))


def test_shift_decomposition_adds_up(tmp_path):
    recs = _records(_run(tmp_path / "run", "sgd", ()))
    assert "pins" not in recs[0]
    for rec in recs:
        for tap, s in rec["shift"].items():
            # tol: float32 decomposition terms summed in another order (absolute: terms O(1))
            assert s["p_mean"] == pytest.approx(s["drift"] + s["align"] + s["bias"], abs=1e-5)
            # tol: the same float32 sum of decomposition terms
            assert s["p_mean"] == pytest.approx(
                s["p_mean_init_reader"] + s["drift_change"] + s["align_change"], abs=1e-5)
    first = recs[0]["shift"]
    for s in first.values():  # at init the parameters are R₀
        assert s["drift_change"] == 0 and abs(s["align_change"]) < 1e-6
    # MLP hidden layer 1 is read by layer1/w = the downstream matrix of layer0: its drift
    # term is μ(layer1/w)·Σ h̄₀, built from the logged weight mean.
    last = recs[-1]
    # tol: float32: the drift uses the device-side weight mean, the record's mean is another reduction
    assert last["shift"]["layer1"]["drift"] == pytest.approx(
        last["weights"]["layer1/w"]["mean"] * last["shift"]["layer1"]["u_sum"], rel=1e-4)
    # tol: the change is a difference of two float32 means (cancellation), so 10× the drift's tolerance
    assert last["shift"]["layer1"]["drift_change"] == pytest.approx(
        last["weights"]["layer1/w"]["mean_change"] * last["shift"]["layer1"]["u_sum"],
        rel=1e-3)


def test_bad_pins_are_refused_naming_the_allowed_values():
    with pytest.raises(ValueError, match=r"TrainConfig\.pins.*'bogus'.*downstream-mean, "
                                         r"reader-stream-mean"):
        TrainConfig(pins=("bogus",)).validate()
    with pytest.raises(ValueError, match=r"TrainConfig\.pins.*allowed"):
        TrainConfig(pins="downstream-mean").validate()
    with pytest.raises(ValueError, match=r"TrainConfig\.pins.*allowed"):
        TrainConfig(pins=("downstream-mean", "downstream-mean")).validate()
    with pytest.raises(ValueError, match=r"reader-stream-mean.*arch='resnet'.*gpt, mlp"):
        TrainConfig(arch="resnet", pins=("reader-stream-mean",)).validate()
    TrainConfig(arch="resnet", pins=("downstream-mean",)).validate()


def test_cli_pin_option(capsys):
    from driftlab.cli import main

    assert main(["train", "--pin", "nonsense", "--steps", "1"]) == 2
    assert "downstream-mean" in capsys.readouterr().err
    import argparse

    from driftlab.models.engine.train_cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--pin", "downstream-mean",
                                              "--pin", "reader-stream-mean"]))
    assert cfg.pins == ("downstream-mean", "reader-stream-mean")
