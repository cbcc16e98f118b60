"""Noisy/clean speech pairs for MP-SENet: synthetic, embedded real speech, or a WAV folder.

``load_speech(source, seed, segment, sample_rate=16000)`` returns a :class:`Dataset`
whose batches are ``{"noisy": float32 (B, L), "clean": float32 (B, L)}`` with
L = ``segment``. As in MP-SENet's data pipeline, both signals of a pair are scaled
by the same factor so that the *noisy* signal has unit RMS (per utterance for files
on disk, per segment for generated pairs). Sources:

- ``"synthetic"``: speech-like clean signals (a glottal-like harmonic series on a
  random, slowly varying f0 contour in 85–255 Hz, shaped by three moving
  formant resonances, gated into 3–6 Hz syllables with pauses, plus unvoiced
  high-frequency bursts), drawn from a fixed pool of ``SYNTHETIC_POOL`` utterance
  identities per split, mixed with generated noise (below).
- ``"embedded"``: real read speech from Debian's ``pocketsphinx-testdata`` WAVs under
  ``POCKETSPHINX_DIR`` (16 kHz mono 16-bit) when that package is installed: files
  sorted by path, the last 10% (at least one) are the validation split. Without it
  the synthetic generator is used instead; ``meta["name"]`` says which
  ("embedded:pocketsphinx" or "embedded:synthetic-fallback").
- a directory PATH in the VoiceBank+DEMAND layout: ``wavs_clean/`` and
  ``wavs_noisy/`` with matching file names (MP-SENet's layout; its ``training.txt``
  / ``test.txt`` name lists, ``name|transcript`` per line, choose the splits when
  present), or the official ``clean_trainset*_wav/`` + ``noisy_trainset*_wav/``
  (+ ``clean_testset*_wav/`` + ``noisy_testset*_wav/`` as the validation split).
  Otherwise the last 10% of the sorted names (at least one) are the validation
  split. Files must be 16-bit PCM mono at ``sample_rate``; anything else, an
  unmatched name, or a truncated/corrupt file raises ValueError naming the file.
  A pair whose lengths differ is cut to the shorter one (as the reference does).

Generated noise (synthetic and embedded sources): one of ``NOISE_TYPES`` per
example, uniformly — white Gaussian, pink (1/f power), or babble (the sum of 3–6
other speech segments of the same split) — at an SNR drawn uniformly from
``SNR_RANGE_DB`` = [0, 15] dB, the range of VoiceBank+DEMAND's training set
(0, 5, 10, 15 dB). As in such datasets the SNR refers to the level of the whole
utterance (unit power for the synthetic generator, the file's mean power for real
speech), so a crop that falls in a pause still carries noise.

``sample(split, step, batch_size, seed)`` depends only on its arguments (and on the
``seed`` given to ``load_speech``). Splits: "train", "val" ("test" aliases "val").
"""

from __future__ import annotations

import glob
import os
import re
import wave
from functools import lru_cache

import numpy as np

from driftlab.models.data import Dataset

POCKETSPHINX_DIR = "/usr/share/pocketsphinx/test/data"
SNR_RANGE_DB = (0.0, 15.0)
NOISE_TYPES = ("white", "pink", "babble")
BABBLE_TALKERS = (3, 6)  # inclusive range of talkers summed into babble noise
SYNTHETIC_POOL = {"train": 1024, "val": 128}
VAL_FRACTION = 0.1
SPLITS = {"train": 0, "val": 1, "test": 1}  # split name -> index ("test" aliases "val")
_SPLIT_NAMES = ("train", "val")
_EPS = 1e-12
_CTRL_HOP = 32  # samples between evaluations of the formant envelope


# --------------------------------------------------------------------------- WAV I/O


def write_wav(path, x, sample_rate: int = 16000) -> None:
    """Write x (float, nominally in [-1, 1]) as 16-bit PCM mono; values are clipped."""
    pcm = np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_wav_pcm16(path, sample_rate: int) -> np.ndarray:
    """The int16 samples of a 16-bit PCM mono WAV file at ``sample_rate``.

    Raises ValueError naming the file for a corrupt header, a compressed format,
    the wrong channel count, bit depth or sample rate, or fewer data bytes than the
    header announces (a truncated file).
    """
    path = os.fspath(path)
    try:
        with wave.open(path, "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            comp, n_frames = w.getcomptype(), w.getnframes()
            data = w.readframes(n_frames)
    except (wave.Error, EOFError) as err:
        raise ValueError(f"{path}: not a readable PCM WAV file ({err})") from None
    if comp != "NONE":
        raise ValueError(f"{path}: compressed WAV ({comp}) unsupported; need 16-bit PCM")
    if channels != 1:
        raise ValueError(f"{path}: {channels} channels; need mono (1 channel)")
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; need 16-bit PCM")
    if rate != sample_rate:
        raise ValueError(f"{path}: sample rate {rate} Hz; need {sample_rate} Hz")
    if len(data) != 2 * n_frames:
        raise ValueError(f"{path}: truncated: header says {n_frames} frames but the file "
                         f"holds {len(data) // 2}")
    return np.frombuffer(data, dtype="<i2").copy()


def read_wav(path, sample_rate: int = 16000) -> np.ndarray:
    """A 16-bit PCM mono WAV file as float32 in [-1, 1) (see :func:`read_wav_pcm16`)."""
    return read_wav_pcm16(path, sample_rate).astype(np.float32) / 32768.0


# --------------------------------------------------------------------------- synthetic speech


def _smooth_contour(rng, t, n_terms: int, f_lo: float, f_hi: float):
    """A slowly varying zero-mean contour in about [-1, 1]: a few random low-frequency sines."""
    freqs = rng.uniform(f_lo, f_hi, n_terms)
    phases = rng.uniform(0, 2 * np.pi, n_terms)
    amps = rng.uniform(0.3, 1.0, n_terms)
    c = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(0)
    return c / amps.sum()


def synth_speech(rng: np.random.Generator, length: int, sample_rate: int = 16000) -> np.ndarray:
    """A speech-like signal of ``length`` samples with unit RMS (see module docstring).

    Voiced part: harmonics k·f0(t) with amplitudes from a sum of three Lorentzian
    formant resonances (F1 300–800, F2 900–2300, F3 2300–3300 Hz, each drifting by
    ±15% at syllable rate) and a −6 dB/octave tilt, gated by a syllable envelope
    0.1 + 0.9·max(0, sin)^1.5 at 3–6 Hz and by
    occasional pauses. Unvoiced part: differenced white noise in the gaps.
    """
    t = np.arange(length) / sample_rate
    f0 = rng.uniform(85.0, 255.0) * np.exp(0.18 * _smooth_contour(rng, t, 3, 0.3, 3.0))
    # wrapping is exact for integer harmonics and keeps k·phase accurate in float32
    phase = np.mod(2 * np.pi * np.cumsum(f0) / sample_rate + rng.uniform(0, 2 * np.pi), 2 * np.pi)
    n_harm = int(min(40, (0.45 * sample_rate) // f0.max()))
    k = np.arange(1, n_harm + 1, dtype=np.float32)[:, None]
    # harmonic amplitudes change slowly: evaluate them on a 2 ms control grid
    ctrl = np.minimum(np.arange(0, length + _CTRL_HOP, _CTRL_HOP), length - 1)
    freq_k = k * f0[ctrl][None, :].astype(np.float32)
    syllable_rate = rng.uniform(3.0, 6.0)
    envelope = np.zeros_like(freq_k)
    for lo, hi, bw in ((300, 800, 90), (900, 2300, 130), (2300, 3300, 180)):
        centre = rng.uniform(lo, hi) * (1 + 0.15 * _smooth_contour(rng, t[ctrl], 2,
                                                                   0.5 * syllable_rate,
                                                                   syllable_rate))
        envelope += 1.0 / (1.0 + ((freq_k - centre[None, :].astype(np.float32)) / bw) ** 2)
    envelope /= k  # glottal source tilt (about -6 dB/octave)
    # linear interpolation of the control grid back to the sample rate
    pos = np.arange(length) / _CTRL_HOP
    i0 = np.minimum(pos.astype(np.int64), envelope.shape[1] - 2)
    frac = (pos - i0).astype(np.float32)
    amp = envelope[:, i0] * (1 - frac) + envelope[:, i0 + 1] * frac
    voiced = (amp * np.sin(k * phase[None, :].astype(np.float32))).sum(0, dtype=np.float64)
    gate = np.maximum(0.0, np.sin(2 * np.pi * syllable_rate * t + rng.uniform(0, 2 * np.pi)))
    # syllables keep a low voiced floor between them; a slow gate adds real pauses
    gate = (0.1 + 0.9 * gate ** 1.5) * (_smooth_contour(rng, t, 2, 0.2, 1.0) > -0.4)
    fric = np.diff(rng.standard_normal(length + 1)) * 0.15 * np.maximum(0.0, -np.sin(
        2 * np.pi * syllable_rate * t + rng.uniform(0, 2 * np.pi))) ** 4
    x = voiced / (np.sqrt(np.mean(voiced ** 2)) + _EPS) * gate + fric
    return (x / (np.sqrt(np.mean(x ** 2)) + _EPS)).astype(np.float32)


def pink_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum (DC removed), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(length))
    f = np.arange(spec.shape[0], dtype=np.float64)
    spec = spec / np.sqrt(np.maximum(f, 1.0))
    spec[0] = 0.0
    x = np.fft.irfft(spec, n=length)
    return (x / (np.sqrt(np.mean(x ** 2)) + _EPS)).astype(np.float32)


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float,
               speech_power: float | None = None) -> np.ndarray:
    """clean + a·noise with a chosen so that 10·log10(P_speech / P_{a·noise}) = snr_db.

    P_speech is ``speech_power`` when given (the level of the whole utterance a crop
    comes from, as datasets define SNR per utterance, so a silent crop still gets
    noise), else the power of ``clean`` itself.
    """
    p_clean = (np.mean(np.square(clean, dtype=np.float64)) if speech_power is None
               else float(speech_power))
    p_noise = np.mean(np.square(noise, dtype=np.float64)) + _EPS
    a = np.sqrt(p_clean / p_noise / 10.0 ** (snr_db / 10.0))
    return (clean + a * noise).astype(np.float32)


# --------------------------------------------------------------------------- sampling


def _check_request(split: str, step: int, batch_size: int, seed: int) -> int:
    if split not in SPLITS:
        raise ValueError(f"split {split!r} unknown; valid: {', '.join(SPLITS)}")
    if step < 0 or seed < 0 or batch_size < 1:
        raise ValueError(f"step and seed must be >= 0 and batch_size >= 1 (got step="
                         f"{step}, seed={seed}, batch_size={batch_size})")
    return SPLITS[split]


def _normalized(noisy: np.ndarray, clean: np.ndarray, factor: float | None = None):
    """Scale both by ``factor`` (default: 1/RMS of noisy), MP-SENet's input normalization."""
    if factor is None:
        factor = 1.0 / np.sqrt(np.mean(np.square(noisy, dtype=np.float64)) + _EPS)
    return (noisy * factor).astype(np.float32), (clean * factor).astype(np.float32)


def _noisy_from_clean(rng, clean_fn, clean: np.ndarray, power: float, length: int):
    """Mix ``clean`` (from an utterance of mean power ``power``) with a random noise type
    at a random SNR (module docstring)."""
    kind = NOISE_TYPES[rng.integers(len(NOISE_TYPES))]
    if kind == "white":
        noise = rng.standard_normal(length).astype(np.float32)
    elif kind == "pink":
        noise = pink_noise(rng, length)
    else:
        talkers = rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1)
        noise = np.zeros(length, np.float32)
        for _ in range(talkers):
            other, _ = clean_fn(rng)
            noise += other / (np.sqrt(np.mean(other ** 2)) + _EPS)
    return mix_at_snr(clean, noise, rng.uniform(*SNR_RANGE_DB), power)


def _generated_sampler(load_seed: int, segment: int, clean_segment):
    """sample() for sources whose noise we generate; clean_segment(rng, split) returns
    a (L,) crop and the mean power of the utterance it comes from."""

    def sample(split: str, step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """Batch of ``batch_size`` (noisy, clean) pairs, noisy scaled to unit RMS."""
        s = _check_request(split, step, batch_size, seed)
        rng = np.random.default_rng([load_seed, seed, s, step])
        noisy, clean = [], []
        for _ in range(batch_size):
            c, power = clean_segment(rng, s)
            n = _noisy_from_clean(rng, lambda r: clean_segment(r, s), c, power, segment)
            n, c = _normalized(n, c)
            noisy.append(n)
            clean.append(c)
        return {"noisy": np.stack(noisy), "clean": np.stack(clean)}

    return sample


def _synthetic_clean(load_seed: int, segment: int, sample_rate: int):
    """clean_segment(rng, split): a random utterance of the split's fixed synthetic pool."""

    @lru_cache(maxsize=256)  # babble reuses utterances; caching keeps batches cheap
    def utterance(split: int, uid: int) -> np.ndarray:
        return synth_speech(np.random.default_rng([load_seed, split, uid, 7919]), segment,
                            sample_rate)

    def clean_segment(rng, split: int) -> tuple[np.ndarray, float]:
        # the generator's nominal level is unit power, also for a segment that falls
        # entirely in a pause
        return utterance(split, int(rng.integers(SYNTHETIC_POOL[_SPLIT_NAMES[split]]))), 1.0

    return clean_segment


def _crop(rng, x: np.ndarray, segment: int) -> np.ndarray:
    """A random ``segment``-sample window of x, zero-padded at the end if x is shorter."""
    if x.shape[0] >= segment:
        start = int(rng.integers(x.shape[0] - segment + 1))
        return x[start:start + segment]
    return np.pad(x, (0, segment - x.shape[0]))


def _file_clean(files: dict[int, list[np.ndarray]], segment: int):
    """clean_segment(rng, split): a random crop of a random int16 file of the split, and
    that file's mean power."""

    powers = {s: [float(np.mean(np.square(x / 32768.0))) for x in pool]
              for s, pool in files.items()}

    def clean_segment(rng, split: int) -> tuple[np.ndarray, float]:
        i = int(rng.integers(len(files[split])))
        return _crop(rng, files[split][i], segment).astype(np.float32) / 32768.0, powers[split][i]

    return clean_segment


# --------------------------------------------------------------------------- sources


def _split_names(names: list[str]) -> tuple[list[str], list[str]]:
    """Sorted names -> (train, val): the last VAL_FRACTION (at least one) are val."""
    names = sorted(names)
    n_val = max(1, int(round(VAL_FRACTION * len(names))))
    return names[:-n_val], names[-n_val:]


def _embedded(load_seed: int, segment: int, sample_rate: int):
    """(clean_segment, name, counts) for the pocketsphinx speech or its synthetic fallback."""
    paths = sorted(glob.glob(os.path.join(POCKETSPHINX_DIR, "**", "*.wav"), recursive=True))
    audio = {}
    for p in paths:
        try:
            audio[p] = read_wav_pcm16(p, sample_rate)
        except ValueError:
            continue  # an embedded corpus may hold other formats; use what fits
    audio = {p: a for p, a in audio.items() if a.size > 0}
    if len(audio) >= 2:
        train, val = _split_names(list(audio))
        files = {0: [audio[p] for p in train], 1: [audio[p] for p in val]}
        return _file_clean(files, segment), "embedded:pocketsphinx", (len(train), len(val))
    return (_synthetic_clean(load_seed, segment, sample_rate), "embedded:synthetic-fallback",
            (SYNTHETIC_POOL["train"], SYNTHETIC_POOL["val"]))


_TRAINSET_RE = re.compile(r"^clean_trainset(.*)_wav$")
_TESTSET_RE = re.compile(r"^clean_testset(.*)_wav$")


def _noisy_twin(clean_dir: str) -> str:
    """clean_trainset_28spk_wav -> noisy_trainset_28spk_wav."""
    return "noisy" + clean_dir[len("clean"):]


def _split_pairs(root: str, pairs: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Split sorted (clean, noisy) pairs into train and the last VAL_FRACTION as val."""
    if len(pairs) < 2:
        raise ValueError(f"{root}: need at least 2 WAV pairs to form train and val splits "
                         f"(found {len(pairs)})")
    by = {os.path.basename(c): (c, n) for c, n in pairs}
    train, val = _split_names(list(by))
    return {"train": [by[f] for f in train], "val": [by[f] for f in val]}


def _folder_pairs(root: str) -> tuple[dict[str, list[tuple[str, str]]], str]:
    """{"train": [(clean, noisy)], "val": [...]} file pairs of a WAV folder, and its layout."""
    entries = set(os.listdir(root))

    def pairs(clean_dir: str, noisy_dir: str) -> list[tuple[str, str]]:
        cd, nd = os.path.join(root, clean_dir), os.path.join(root, noisy_dir)
        clean = {f for f in os.listdir(cd) if f.lower().endswith(".wav")}
        noisy = {f for f in os.listdir(nd) if f.lower().endswith(".wav")}
        if clean != noisy:
            only_c = sorted(clean - noisy)[:5]
            only_n = sorted(noisy - clean)[:5]
            raise ValueError(f"{root}: unmatched file names between {clean_dir}/ and "
                             f"{noisy_dir}/: only clean {only_c}, only noisy {only_n}")
        if not clean:
            raise ValueError(f"{cd}: no .wav files")
        return [(os.path.join(cd, f), os.path.join(nd, f)) for f in sorted(clean)]

    if {"wavs_clean", "wavs_noisy"} <= entries:
        all_pairs = pairs("wavs_clean", "wavs_noisy")
        lists = [os.path.join(root, f) for f in ("training.txt", "test.txt")]
        if all(os.path.isfile(p) for p in lists):
            known = {os.path.basename(c): (c, n) for c, n in all_pairs}
            split = {}
            for name, lst in zip(_SPLIT_NAMES, lists):
                with open(lst, encoding="utf-8") as f:
                    ids = [ln.split("|")[0].strip() for ln in f if ln.strip()]
                missing = [i for i in ids if i + ".wav" not in known]
                if missing:
                    raise ValueError(f"{lst}: names without a WAV pair in wavs_clean/ and "
                                     f"wavs_noisy/: {missing[:5]}")
                split[name] = [known[i + ".wav"] for i in ids]
            return split, "wavs_clean+lists"
        return _split_pairs(root, all_pairs), "wavs_clean"
    trains = sorted(e for e in entries if _TRAINSET_RE.match(e) and _noisy_twin(e) in entries)
    if trains:
        split = {"train": pairs(trains[0], _noisy_twin(trains[0]))}
        tests = sorted(e for e in entries if _TESTSET_RE.match(e) and _noisy_twin(e) in entries)
        if tests:
            split["val"] = pairs(tests[0], _noisy_twin(tests[0]))
            return split, "voicebank"
        return _split_pairs(root, split["train"]), "voicebank"
    raise ValueError(f"{root}: no speech pairs found; expected wavs_clean/ + wavs_noisy/ or "
                     f"clean_trainset*_wav/ + noisy_trainset*_wav/ (source must be "
                     f"'synthetic', 'embedded' or such a folder)")


def _folder_sampler(root: str, segment: int, sample_rate: int):
    """(sample, layout, counts) for a folder of real noisy/clean WAV pairs."""
    split_pairs, layout = _folder_pairs(root)
    data = {}
    for s, name in enumerate(_SPLIT_NAMES):
        if not split_pairs[name]:
            raise ValueError(f"{root}: the {name} split has no WAV pairs")
        items = []
        for cpath, npath in split_pairs[name]:
            c, n = read_wav_pcm16(cpath, sample_rate), read_wav_pcm16(npath, sample_rate)
            length = min(c.shape[0], n.shape[0])
            if length == 0:
                raise ValueError(f"{npath}: empty WAV file")
            n32 = n[:length].astype(np.float64) / 32768.0
            # per-utterance normalization, as the reference: noisy gets unit RMS
            factor = 1.0 / np.sqrt(np.mean(n32 ** 2) + _EPS)
            items.append((c[:length], n[:length], factor))
        data[s] = items

    def sample(split: str, step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """Batch of random ``segment``-sample crops of random pairs of the split."""
        s = _check_request(split, step, batch_size, seed)
        rng = np.random.default_rng([seed, s, step])
        noisy, clean = [], []
        for _ in range(batch_size):
            c, n, factor = data[s][int(rng.integers(len(data[s])))]
            start = int(rng.integers(max(c.shape[0] - segment, 0) + 1))
            cs = _crop_at(c, start, segment).astype(np.float32) / 32768.0
            ns = _crop_at(n, start, segment).astype(np.float32) / 32768.0
            ns, cs = _normalized(ns, cs, factor)
            noisy.append(ns)
            clean.append(cs)
        return {"noisy": np.stack(noisy), "clean": np.stack(clean)}

    return sample, layout, (len(data[0]), len(data[1]))


def _crop_at(x: np.ndarray, start: int, segment: int) -> np.ndarray:
    """x[start:start+segment], zero-padded at the end to ``segment`` samples."""
    y = x[start:start + segment]
    return np.pad(y, (0, segment - y.shape[0])) if y.shape[0] < segment else y


def load_speech(source: str, seed: int, segment: int, sample_rate: int = 16000) -> Dataset:
    """Open a speech source (see module docstring) as a Dataset of noisy/clean segments."""
    if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
        raise ValueError(f"segment must be a positive int (got {segment!r})")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive int (got {sample_rate!r})")
    source = os.fspath(source)
    extra: dict = {}
    if source in ("synthetic", "embedded"):
        if source == "synthetic":
            clean_fn = _synthetic_clean(seed, segment, sample_rate)
            name, counts = "synthetic", (SYNTHETIC_POOL["train"], SYNTHETIC_POOL["val"])
        else:
            clean_fn, name, counts = _embedded(seed, segment, sample_rate)
        sample = _generated_sampler(seed, segment, clean_fn)
        extra = {"noise_types": list(NOISE_TYPES), "snr_range_db": list(SNR_RANGE_DB)}
    elif os.path.isdir(source):
        sample, layout, counts = _folder_sampler(source, segment, sample_rate)
        name = f"{os.path.basename(os.path.normpath(source))}:{layout}"
    else:
        raise ValueError(f"speech source {source!r} is not 'synthetic', 'embedded' or an "
                         f"existing folder of WAV pairs")
    meta = {"name": name, "sample_rate": sample_rate, "n_train": int(counts[0]),
            "n_val": int(counts[1]), "segment": segment, **extra}
    return Dataset(sample=sample, meta=meta)


__all__ = ["load_speech", "read_wav", "read_wav_pcm16", "write_wav", "synth_speech",
           "pink_noise", "mix_at_snr", "NOISE_TYPES", "SNR_RANGE_DB", "POCKETSPHINX_DIR"]
