"""MP-SENet and its STFT: transforms, shapes, losses, training, activations, config errors.

Compiling the whole network takes seconds on a CPU, so the tests compile it as few
times as possible: shapes are checked with ``jax.eval_shape`` (tracing only), the six
activations share one compiled step (the activation is picked by a traced index),
and the engine runs once.
"""

from __future__ import annotations

import importlib.util
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.signal

from driftlab.activations import parse_activation
from driftlab.models.arch import mpsenet
from driftlab.models.arch.stft import (hann_window, istft, mag_pha_istft, mag_pha_stft, num_frames,
                                  stft)

ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "relu2", "clipped_relu2")
# A smaller-than-tiny network: same structure, cheaper to compile and run.
MICRO = dict(channels=4, dense_depth=2, n_heads=1, n_fft=32, hop=8, win=32, segment=512)


def _signal(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _path(tree, path):
    for key in path.split("/"):
        tree = tree[key]
    return tree


# --------------------------------------------------------------------------- STFT


def test_stft_matches_scipy():
    """Our STFT (reflect padding, periodic Hann) equals scipy's up to its 1/Σw scaling."""
    x = _signal(1000).astype(np.float64)
    for n_fft, hop, win in ((64, 16, 64), (64, 16, 48)):
        ours = np.asarray(stft(jnp.asarray(x, jnp.float32), n_fft, hop, win))
        w = hann_window(win, n_fft).astype(np.float64)
        _, _, ref = scipy.signal.stft(x, window=w, nperseg=n_fft, noverlap=n_fft - hop,
                                      boundary="even", padded=False)
        ref = ref.T * w.sum()
        assert ours.shape == ref.shape == (num_frames(1000, n_fft, hop), n_fft // 2 + 1)
        # tol: float32 FFT vs scipy's float64 STFT: rounding ~n_fft·ε relative to the spectrum's peak
        np.testing.assert_allclose(ours, ref, atol=2e-4 * np.abs(ref).max())


@pytest.mark.parametrize("n_fft,hop,win", [(64, 16, 64), (400, 100, 400), (32, 12, 30)])
def test_istft_round_trip(n_fft, hop, win):
    x = _signal((2, 1601), seed=1)
    # center=True: the reflect padding lets the whole signal come back
    # (jitted: one compilation is faster than dispatching every op eagerly)
    y = jax.jit(lambda v: istft(stft(v, n_fft, hop, win), n_fft, hop, win, length=1601))(x)
    # tol: a float32 STFT → iSTFT round trip (FFT and overlap-add) of an O(1) signal
    np.testing.assert_allclose(np.asarray(y), x, atol=2e-5)
    # center=False: perfect reconstruction away from the edges, not at them
    L = 1601 - (1601 - n_fft) % hop  # frames then cover the signal exactly
    y = np.asarray(jax.jit(lambda v: istft(stft(v, n_fft, hop, win, center=False), n_fft, hop,
                                           win, length=L, center=False))(x[:, :L]))
    # tol: the same float32 round trip
    np.testing.assert_allclose(y[:, n_fft:-n_fft], x[:, n_fft:L - n_fft], atol=2e-5)
    assert np.abs(y[:, :2] - x[:, :2]).max() > 1e-3  # the Hann window is ~0 at sample 0


def test_compressed_mag_phase_round_trip():
    x = _signal((2, 800), seed=2)
    mag, pha, com = jax.jit(lambda v: mag_pha_stft(v, 64, 16, 64, compress=0.3))(x)
    assert mag.shape == pha.shape == (2, 51, 33) and com.shape == (2, 51, 33, 2)
    spec = np.asarray(stft(jnp.asarray(x), 64, 16, 64))
    # tol: float32 magnitude compressed by **0.3 vs NumPy's float64 recomputation from the spectrum
    np.testing.assert_allclose(np.asarray(mag), np.sqrt(np.abs(spec) ** 2 + 1e-9) ** 0.3,
                               rtol=1e-4)
    # tol: float32 cos of the phase inside the program vs recomputed outside it
    np.testing.assert_allclose(np.asarray(com[..., 0]), np.asarray(mag * jnp.cos(pha)),
                               rtol=1e-5, atol=1e-6)
    y = jax.jit(lambda m, p: mag_pha_istft(m, p, 64, 16, 64, length=800, compress=0.3))(mag, pha)
    # tol: round trip through the compressed magnitude (**0.3, then back) and the 1e-9 floor in float32
    np.testing.assert_allclose(np.asarray(y), x, atol=1e-3)


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("size,conv_act", [("tiny", "prelu"), ("tiny", "same"),
                                           ("paper", "prelu")])
def test_shapes_params_taps_and_downstream(size, conv_act):
    cfg = mpsenet.config(size, "gelu", conv_act=conv_act)
    params = jax.eval_shape(lambda k: mpsenet.init(k, cfg), jax.random.PRNGKey(0))
    assert sum(x.size for x in jax.tree.leaves(params)) == mpsenet.param_count(cfg)
    B, L = 2, cfg.segment
    batch = {"noisy": jax.ShapeDtypeStruct((B, L), jnp.float32),
             "clean": jax.ShapeDtypeStruct((B, L), jnp.float32)}
    seen = []

    def tap(name, p, act):
        seen.append((name, p.shape))
        return act(p)

    out = jax.eval_shape(lambda p, b: mpsenet.apply(p, b, cfg, tap), params, batch)
    T, F = cfg.n_frames, cfg.n_freq
    assert out["mag"].shape == out["pha"].shape == (B, T, F)
    assert out["com"].shape == (B, T, F, 2) and out["audio"].shape == (B, L)
    names = [n for n, _ in seen]
    assert names == mpsenet.tap_names(cfg) and len(set(names)) == len(names)
    if size == "paper":  # the reference's geometry: 201 bins -> 101, 321 frames, 64 channels
        assert (F, cfg.n_freq_half, T, cfg.channels, cfg.n_blocks) == (201, 101, 321, 64, 4)
        assert mpsenet.param_count(cfg) > 1e6
    shapes = dict(seen)
    C, H, Fh = cfg.channels, cfg.ffn_mult * cfg.channels, cfg.n_freq_half
    assert shapes["tf0.time.ffn"] == (B * Fh, T, H) and shapes["tf0.freq.ffn"] == (B * T, Fh, H)
    down = mpsenet.downstream(cfg)
    heads = mpsenet.output_heads(cfg)
    read_by_head = {t for t in heads.values() if t is not None}
    assert set(down) | read_by_head | ({"enc.down"} & set(names)) == set(names)
    for path in down.values():
        _path(params, path)  # exists
    for tap, path in down.items():
        if tap.endswith(".ffn"):
            assert _path(params, path).shape == (H, C)
    loss, metrics = jax.eval_shape(lambda o, b: mpsenet.loss(o, b, cfg), out, batch)
    assert loss.shape == () and {"si_snr_i", "mag", "pha", "stft", "time"} <= set(metrics)


def test_subpixel_interleaves_like_the_reference():
    """Channel r·C + c at frequency f goes to frequency 2f + r (torch's view/permute)."""
    x = jnp.asarray(_signal((1, 2, 3, 2), seed=3))
    w = jnp.asarray(_signal((1, 3, 2, 4), seed=4))
    y = np.asarray(mpsenet.subpixel_up(x, {"w": w, "b": jnp.zeros(4)}))
    conv = np.asarray(mpsenet.conv2d(x, {"w": w, "b": jnp.zeros(4)}, padding=((0, 0), (1, 1))))
    assert y.shape == (1, 2, 6, 2)
    for f in range(3):
        for r in range(2):
                    # tol: NumPy's default rtol 1e-7: the sub-pixel layer reorders the conv's float32 outputs
            np.testing.assert_allclose(y[:, :, 2 * f + r, :], conv[:, :, f, 2 * r:2 * r + 2])


def test_loss_terms_vanish_on_the_clean_target_and_phase_is_wrap_invariant():
    cfg = mpsenet.config("tiny", "relu", **MICRO)
    rng = np.random.default_rng(5)
    clean = jnp.asarray(rng.standard_normal((2, cfg.segment)), jnp.float32)
    noisy = clean + 0.5 * jnp.asarray(rng.standard_normal((2, cfg.segment)), jnp.float32)
    batch = {"clean": clean, "noisy": noisy}

    @jax.jit
    def terms(shift):
        mag, pha, com = mag_pha_stft(clean, cfg.n_fft, cfg.hop, cfg.win, cfg.compress)
        out = {"mag": mag, "pha": pha + shift, "com": com, "audio": clean}
        return mpsenet.loss(out, batch, cfg)

    _, m0 = terms(0.0)
    _, m1 = terms(2 * math.pi)  # a 2π phase offset is no error for anti-wrapped losses
    for k in ("mag", "ip", "gd", "iaf", "com", "time"):
        assert float(m0[k]) < 1e-5 and float(m1[k]) < 1e-3, (k, float(m0[k]), float(m1[k]))
    assert float(m0["stft"]) < 1e-3  # a real signal's STFT is consistent
    assert float(m0["si_snr"]) > 60 and float(m0["si_snr_i"]) > 50
    # anti-wrapping maps to [0, π]; SI-SNR is scale invariant and known for orthogonal noise
    d = jnp.asarray([0.1, 2 * math.pi + 0.1, -2 * math.pi - 0.1, 3.0])
    # tol: float32 inputs near ±2π: their rounding and that of removing 2π (~1e-6)
    np.testing.assert_allclose(np.asarray(mpsenet.anti_wrap(d)), [0.1, 0.1, 0.1, 3.0],
                               atol=1e-5)
    ref = jnp.asarray([1.0, -1.0, 1.0, -1.0])
    noise = jnp.asarray([1.0, 1.0, -1.0, -1.0]) * 0.1  # orthogonal, zero mean
    expect = 10 * math.log10(4.0 / 0.04)
    # tol: SI-SNR in dB from float32 energies (log10 of a ratio of float32 sums)
    assert abs(float(mpsenet.si_snr(3.0 * (ref + noise), ref)) - expect) < 1e-3


@pytest.fixture(scope="module")
def switch_step():
    """One jitted Adam step of the MICRO network whose every conv and FFN activation is
    ACTIVATIONS[idx] for a traced idx, so all activations share one compilation.

    The tap ignores the configured activation; that the configured name reaches the
    taps is checked separately by tracing each config (test_every_activation_trains).
    """
    acts = [parse_activation(a) for a in ACTIVATIONS]
    cfg = mpsenet.config("tiny", "relu", conv_act="same", **MICRO)
    opt = optax.adam(3e-3)

    def loss_fn(params, batch, idx):
        branches = [lambda z, a=a: a(z) for a in acts]
        tap = lambda name, p, act: jax.lax.switch(idx, branches, p)  # noqa: E731
        return mpsenet.loss(mpsenet.apply(params, batch, cfg, tap), batch, cfg)

    @jax.jit
    def step(params, state, batch, idx):
        (value, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, idx)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value, metrics

    _, ds = mpsenet.data("synthetic", cfg, 0)
    batch = {k: jnp.asarray(v) for k, v in ds.sample("train", 0, 2, 0).items()}
    return cfg, opt, step, batch, mpsenet.init(jax.random.PRNGKey(1), cfg)


def _run(switch_step, idx: int, steps: int):
    cfg, opt, step, batch, params = switch_step
    state = opt.init(params)
    losses, snr_i = [], []
    for _ in range(steps):
        params, state, value, metrics = step(params, state, batch, jnp.int32(idx))
        losses.append(float(value))
        snr_i.append(float(metrics["si_snr_i"]))
    return losses, snr_i


def test_loss_decreases_on_a_fixed_batch(switch_step):
    losses, snr_i = _run(switch_step, ACTIVATIONS.index("relu"), 12)
    assert all(map(math.isfinite, losses))
    assert losses[-1] < 0.9 * losses[0], losses
    assert snr_i[-1] > snr_i[0], snr_i


def test_every_activation_trains(switch_step):
    """Three Adam steps per activation (every conv and FFN activation set to it)."""
    first = {}
    for i, name in enumerate(ACTIVATIONS):
        losses, _ = _run(switch_step, i, 3)
        assert all(map(math.isfinite, losses)), (name, losses)
        assert losses[-1] < losses[0], (name, losses)
        first[name] = losses[0]
    assert len({round(v, 6) for v in first.values()}) == len(ACTIVATIONS)  # idx matters
    _, _, _, batch, params = switch_step
    for name in ACTIVATIONS:  # the configured activation is the one the taps receive
        cfg = mpsenet.config("tiny", name, conv_act="same", **MICRO)
        got = set()

        def tap(_name, z, act):
            got.add(act.label)
            return act(z)

        jax.eval_shape(lambda p, b: mpsenet.apply(p, b, cfg, tap), params, batch)
        assert got == {parse_activation(name).label}


def test_trains_through_engine(tmp_path):
    if importlib.util.find_spec("driftlab.models.engine.train") is None:
        pytest.skip("training engine (models/engine/train.py) not written yet")
    from driftlab.models.engine.train import METRICS_FILE, TrainConfig, train

    overrides = tuple(MICRO.items()) + (("conv_act", "same"),)
    summary = train(TrainConfig(arch="mpsenet", act="clipped_relu2", data="synthetic",
                                size="tiny", steps=2, batch_size=2, lr=1e-3, seed=0,
                                out=str(tmp_path), log_every=1, model_overrides=overrides,
                                eval_batches=0, progress=False))
    assert summary["steps"] == 2 and math.isfinite(summary["final_loss"])
    cfg = mpsenet.config("tiny", "clipped_relu2", **dict(overrides))
    assert set(summary["layers"]) == set(mpsenet.downstream(cfg))
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert set(records[-1]["taps"]) == set(mpsenet.tap_names(cfg))  # every tap is measured


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("field,value,allowed", [
    ("act", "swish", "valid"),
    ("conv_act", "leaky", "prelu, same"),
    ("init", "gpt2_normal", "torch_default"),
    ("n_fft", 62, "multiple of 4"),
    ("win", 128, "n_fft"),
    ("hop", 64, "win-1"),
    ("channels", 6, "multiple of n_heads"),
    ("channels", 0, "positive"),
    ("beta", -2.0, "positive"),
    ("w_pha", -0.1, ">= 0"),
    ("segment", 16, "n_fft/2"),
])
def test_bad_config_names_the_field(field, value, allowed):
    overrides = {"n_heads": 4} if field == "channels" and value == 6 else {}
    overrides[field] = value
    act = overrides.pop("act", "relu")
    with pytest.raises(ValueError, match=field) as err:
        mpsenet.config("tiny", act, **overrides)
    assert allowed in str(err.value)


def test_bad_size_or_unknown_field():
    with pytest.raises(ValueError, match="size.*tiny, small, paper"):
        mpsenet.config("huge")
    with pytest.raises(ValueError, match="nfft"):
        mpsenet.config("tiny", "relu", nfft=64)
