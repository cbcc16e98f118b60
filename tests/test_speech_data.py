"""Speech data: synthetic and embedded sources, WAV I/O, VoiceBank-style folders, errors."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from driftlab.models.data import speech
from driftlab.models.data.speech import load_speech, read_wav, write_wav

SR = 16000


def _tone(freq, n, amp=0.3):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def _snr_db(batch):
    c, n = batch["clean"].astype(np.float64), batch["noisy"].astype(np.float64)
    return 10 * np.log10(np.sum(c ** 2, 1) / np.sum((n - c) ** 2, 1))


# --------------------------------------------------------------------------- generated


def test_synthetic_batches_are_deterministic_normalized_and_at_snr():
    ds = load_speech("synthetic", seed=0, segment=4000)
    assert ds.meta["name"] == "synthetic" and ds.meta["sample_rate"] == SR
    assert ds.meta["n_train"] > 0 and ds.meta["n_val"] > 0
    b = ds.sample("train", 3, 16, 0)
    assert set(b) == {"noisy", "clean"}
    assert b["noisy"].shape == b["clean"].shape == (16, 4000)
    assert b["noisy"].dtype == b["clean"].dtype == np.float32
    # tol: float32 signals scaled to unit RMS, recomputed here over 4000 samples
    np.testing.assert_allclose(np.sqrt(np.mean(b["noisy"] ** 2, 1)), 1.0, rtol=1e-4)
    again = ds.sample("train", 3, 16, 0)
    assert all(np.array_equal(b[k], again[k]) for k in b)
    assert not np.array_equal(b["clean"], ds.sample("train", 4, 16, 0)["clean"])
    assert not np.array_equal(b["clean"], ds.sample("val", 3, 16, 0)["clean"])
    assert not np.array_equal(b["clean"], ds.sample("train", 3, 16, 1)["clean"])
    assert not np.array_equal(b["clean"], load_speech("synthetic", 1, 4000).sample(
        "train", 3, 16, 0)["clean"])
    # unit-power utterances: the segment SNR lies in the documented range, up to the
    # segment's own level fluctuating around the utterance level
    snr = _snr_db(b)
    assert np.all(snr > speech.SNR_RANGE_DB[0] - 6) and np.all(snr < speech.SNR_RANGE_DB[1] + 6)
    assert snr.std() > 1.0  # SNRs are drawn, not fixed


def test_synthetic_speech_is_speech_like():
    x = speech.synth_speech(np.random.default_rng(0), 16000)
    # tol: the synthesiser scales to unit RMS; 1e-3 allows the float32 rounding of 16000 samples
    assert x.shape == (16000,) and abs(np.sqrt(np.mean(x ** 2)) - 1) < 1e-3
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(16000, 1 / SR)
    # most energy below 4 kHz (voiced harmonics and formants), some above (fricatives)
    low = spec[f < 4000].sum() / spec.sum()
    assert 0.7 < low < 0.999, low
    # a syllabic amplitude envelope: frame energies vary strongly over time
    frames = np.sqrt(np.mean(x[:15872].reshape(-1, 256) ** 2, 1))
    assert frames.max() > 4 * np.percentile(frames, 10)


def test_mix_at_snr_and_pink_noise():
    rng = np.random.default_rng(0)
    clean, noise = _tone(440, 8000), rng.standard_normal(8000).astype(np.float32)
    mixed = speech.mix_at_snr(clean, noise, 5.0)
    # tol: the SNR in dB of float32 signals: rounding of their float32 energies
    assert abs(_snr_db({"clean": clean[None], "noisy": mixed[None]})[0] - 5.0) < 1e-3
    mixed = speech.mix_at_snr(clean, noise, 5.0, speech_power=1.0)
    resid = mixed - clean
    # tol: the same SNR in dB of float32 signals
    assert abs(10 * np.log10(1.0 / np.mean(resid.astype(np.float64) ** 2)) - 5.0) < 1e-3
    pink = speech.pink_noise(rng, 1 << 14)
    spec = np.abs(np.fft.rfft(pink)) ** 2
    lo, hi = spec[10:100].mean(), spec[1000:8000].mean()
    assert lo > 10 * hi  # 1/f power: low bins much stronger than high ones


def test_embedded_falls_back_then_uses_real_wavs(tmp_path, monkeypatch):
    monkeypatch.setattr(speech, "POCKETSPHINX_DIR", str(tmp_path / "absent"))
    ds = load_speech("embedded", 0, 1000)
    assert ds.meta["name"] == "embedded:synthetic-fallback"
    assert ds.sample("train", 0, 2, 0)["clean"].shape == (2, 1000)

    root = tmp_path / "ps" / "sub"
    root.mkdir(parents=True)
    freqs = [300.0, 700.0, 1500.0]  # sorted file names: a, b train; c val
    for name, fr in zip("abc", freqs):
        write_wav(root / f"{name}.wav", _tone(fr, 6000), SR)
    (root / "odd.wav").write_bytes(b"not a wav")  # skipped: the corpus may hold others
    monkeypatch.setattr(speech, "POCKETSPHINX_DIR", str(tmp_path / "ps"))
    ds = load_speech("embedded", 0, 2048)
    assert ds.meta["name"] == "embedded:pocketsphinx"
    assert (ds.meta["n_train"], ds.meta["n_val"]) == (2, 1)

    def dominant(x):
        return np.fft.rfftfreq(x.shape[-1], 1 / SR)[np.argmax(np.abs(np.fft.rfft(x)))]

    train_f = {round(dominant(c)) for c in ds.sample("train", 0, 8, 0)["clean"]}
    val_f = {round(dominant(c)) for c in ds.sample("val", 0, 4, 0)["clean"]}
    tol = SR / 2048  # one FFT bin
    # tol: one FFT bin (SR / 2048): the resolution of the frequency grid
    assert all(min(abs(f - 300), abs(f - 700)) <= tol for f in train_f), train_f
    # tol: the same one FFT bin
    assert all(abs(f - 1500) <= tol for f in val_f), val_f


# --------------------------------------------------------------------------- WAV folders


def _folder(root, n=4, length=3000, clean_dir="wavs_clean", noisy_dir="wavs_noisy", seed=0):
    """Pairs with noisy = 2·clean, so alignment and the shared scale are checkable."""
    rng = np.random.default_rng(seed)
    (root / clean_dir).mkdir(parents=True, exist_ok=True)
    (root / noisy_dir).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = (0.1 * rng.standard_normal(length)).astype(np.float32)
        write_wav(root / clean_dir / f"p{i:03d}.wav", c, SR)
        write_wav(root / noisy_dir / f"p{i:03d}.wav", 2 * c, SR)
    return root


def test_wav_round_trip(tmp_path):
    x = np.clip(0.3 * np.random.default_rng(0).standard_normal(500), -1, 1)
    write_wav(tmp_path / "a.wav", x, SR)
    y = read_wav(tmp_path / "a.wav", SR)
    assert y.dtype == np.float32 and y.shape == (500,)
    # tol: one 16-bit PCM step (1/32768) of the WAV file, plus float32 rounding
    assert np.abs(y - x).max() <= 1 / 32768 + 1e-7


def test_folder_pairs_are_aligned_and_normalized_per_utterance(tmp_path):
    root = _folder(tmp_path / "vb", n=5, length=3000)
    ds = load_speech(str(root), 0, 3000)
    assert ds.meta["name"] == "vb:wavs_clean" and (ds.meta["n_train"], ds.meta["n_val"]) == (4, 1)
    b = ds.sample("train", 0, 6, 0)
    # tol: both files are 16-bit PCM: 2·clean is quantised separately from clean (steps ~1/32768, rescaled)
    np.testing.assert_allclose(b["noisy"], 2 * b["clean"], atol=1e-3)
    # the whole utterance is the segment here: noisy has unit RMS
    # tol: unit RMS after 16-bit quantisation of both files
    np.testing.assert_allclose(np.sqrt(np.mean(b["noisy"] ** 2, 1)), 1.0, rtol=1e-3)
    # shorter files are zero-padded; longer ones cropped at the same place in both
    ds = load_speech(str(root), 0, 4000)
    b = ds.sample("val", 1, 2, 0)
    assert b["clean"].shape == (2, 4000) and np.all(b["clean"][:, 3000:] == 0)
    ds = load_speech(str(root), 0, 1000)
    b = ds.sample("train", 2, 8, 3)
    # tol: the same 16-bit quantisation of the two files
    np.testing.assert_allclose(b["noisy"], 2 * b["clean"], atol=1e-3)
    assert all(np.array_equal(b[k], ds.sample("train", 2, 8, 3)[k]) for k in b)


def test_folder_split_lists_and_voicebank_layout(tmp_path):
    root = _folder(tmp_path / "mp", n=4)
    (root / "training.txt").write_text("p000|hello\np001|a\np002|b\n")
    (root / "test.txt").write_text("p003|world\n")
    ds = load_speech(str(root), 0, 1000)
    assert (ds.meta["n_train"], ds.meta["n_val"]) == (3, 1) and ds.meta["name"].endswith("lists")
    (root / "test.txt").write_text("p009|missing\n")
    with pytest.raises(ValueError, match="p009"):
        load_speech(str(root), 0, 1000)

    vb = tmp_path / "official"
    _folder(vb, n=3, clean_dir="clean_trainset_28spk_wav", noisy_dir="noisy_trainset_28spk_wav")
    _folder(vb, n=2, clean_dir="clean_testset_wav", noisy_dir="noisy_testset_wav", seed=1)
    ds = load_speech(str(vb), 0, 1000)
    assert ds.meta["name"] == "official:voicebank"
    assert (ds.meta["n_train"], ds.meta["n_val"]) == (3, 2)


def _write_raw_wav(path, channels=1, width=2, rate=SR, frames=100):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01" * (frames * channels * width))


@pytest.mark.parametrize("problem,match", [
    ("rate", "sample rate 8000"),
    ("stereo", "2 channels"),
    ("8bit", "8-bit"),
    ("truncated", "truncated"),
    ("garbage", "not a readable"),
])
def test_bad_wav_names_the_file(tmp_path, problem, match):
    root = _folder(tmp_path / "vb", n=3)
    bad = root / "wavs_noisy" / "p001.wav"
    if problem == "rate":
        _write_raw_wav(bad, rate=8000)
    elif problem == "stereo":
        _write_raw_wav(bad, channels=2)
    elif problem == "8bit":
        _write_raw_wav(bad, width=1)
    elif problem == "truncated":
        bad.write_bytes(bad.read_bytes()[:-100])
    else:
        bad.write_bytes(b"RIFF" + bytes(range(40)))
    with pytest.raises(ValueError, match=match) as err:
        load_speech(str(root), 0, 1000)
    assert str(bad) in str(err.value)


def test_folder_errors(tmp_path):
    root = _folder(tmp_path / "vb", n=3)
    (root / "wavs_noisy" / "p001.wav").rename(root / "wavs_noisy" / "q001.wav")
    with pytest.raises(ValueError, match="unmatched.*p001.*q001"):
        load_speech(str(root), 0, 1000)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no speech pairs"):
        load_speech(str(tmp_path / "empty"), 0, 1000)
    one = _folder(tmp_path / "one", n=1)
    with pytest.raises(ValueError, match="at least 2"):
        load_speech(str(one), 0, 1000)
    with pytest.raises(ValueError, match="not 'synthetic'"):
        load_speech(str(tmp_path / "nowhere"), 0, 1000)
    with pytest.raises(ValueError, match="segment"):
        load_speech("synthetic", 0, 0)
    ds = load_speech("synthetic", 0, 100)
    with pytest.raises(ValueError, match="split"):
        ds.sample("dev", 0, 2, 0)
    with pytest.raises(ValueError, match="batch_size"):
        ds.sample("train", 0, 0, 0)


def test_model_data_hook_uses_the_segment():
    from driftlab.models.arch import mpsenet

    cfg = mpsenet.config("tiny", "relu", segment=1200)
    cfg2, ds = mpsenet.data("synthetic", cfg, 0)
    assert cfg2 == cfg and ds.sample("train", 0, 3, 0)["noisy"].shape == (3, 1200)
