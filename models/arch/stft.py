"""Short-time Fourier transform and its inverse in pure JAX (torch.stft conventions).

Conventions match ``torch.stft`` / ``torch.istft`` as MP-SENet uses them:
periodic Hann window of ``win_length`` samples zero-padded (centred) to ``n_fft``,
one-sided spectrum (n_fft/2 + 1 bins), no normalization, and with ``center=True``
the signal is reflect-padded by n_fft/2 on both sides so frame t is centred on
sample t·hop. The layout differs from torch: spectra are **time-major**,
``(..., frames, bins)``, which is the layout the model works in.

The inverse is the least-squares overlap-add (Griffin–Lim): frames are windowed
again, summed, and divided by the summed squared window. Where that envelope is
non-zero (NOLA) the round trip is exact; with ``center=True`` the whole signal
is reconstructed, with ``center=False`` only away from the edges (the first and
last samples are covered by window tails only, where the envelope is ~0).

``mag_pha_stft`` / ``mag_pha_istft`` add MP-SENet's compressed-magnitude and phase
representation on top.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def hann_window(win_length: int, n_fft: int | None = None) -> np.ndarray:
    """Periodic Hann window, 0.5 − 0.5·cos(2πn/win_length), zero-padded centred to n_fft."""
    n_fft = win_length if n_fft is None else n_fft
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length={win_length} invalid; allowed: 1..n_fft={n_fft}")
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft, np.float64)
    out[left:left + win_length] = w
    return out.astype(np.float32)


def num_frames(length: int, n_fft: int, hop: int, center: bool = True) -> int:
    """Number of STFT frames of a ``length``-sample signal."""
    if center:
        return 1 + length // hop
    if length < n_fft:
        raise ValueError(f"signal of {length} samples is shorter than n_fft={n_fft}")
    return 1 + (length - n_fft) // hop


def _frame_index(n_frames: int, n_fft: int, hop: int) -> np.ndarray:
    """(n_frames, n_fft) sample indices of every frame in the (padded) signal."""
    return np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]


def stft(x, n_fft: int, hop: int, win_length: int | None = None, center: bool = True):
    """Complex STFT of real signals x (..., L) -> (..., frames, n_fft/2 + 1)."""
    win_length = n_fft if win_length is None else win_length
    window = jnp.asarray(hann_window(win_length, n_fft))
    length = x.shape[-1]
    if center:
        pad = n_fft // 2
        if length <= pad:
            # reflect padding needs more samples than it mirrors
            raise ValueError(f"signal of {length} samples too short for reflect padding "
                             f"of n_fft/2={pad}")
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    n_frames = num_frames(length, n_fft, hop, center)
    frames = x[..., _frame_index(n_frames, n_fft, hop)]  # (..., frames, n_fft)
    return jnp.fft.rfft(frames * window, n=n_fft, axis=-1)


def window_envelope(n_frames: int, n_fft: int, hop: int, win_length: int) -> np.ndarray:
    """Σ_t w²(n − t·hop): the overlap-add normalizer of the inverse STFT."""
    w2 = hann_window(win_length, n_fft).astype(np.float64) ** 2
    env = np.zeros((n_frames - 1) * hop + n_fft, np.float64)
    for t in range(n_frames):
        env[t * hop:t * hop + n_fft] += w2
    return env


def istft(spec, n_fft: int, hop: int, win_length: int | None = None,
          length: int | None = None, center: bool = True):
    """Real signal (..., length) from a one-sided STFT (..., frames, n_fft/2 + 1).

    ``length`` defaults to the longest signal the frames cover. Samples where the
    summed squared window is (numerically) zero are returned as 0 instead of NaN.
    """
    win_length = n_fft if win_length is None else win_length
    n_frames = spec.shape[-2]
    window = jnp.asarray(hann_window(win_length, n_fft))
    frames = jnp.fft.irfft(spec, n=n_fft, axis=-1) * window  # (..., frames, n_fft)
    total = (n_frames - 1) * hop + n_fft
    idx = _frame_index(n_frames, n_fft, hop).reshape(-1)
    lead = frames.shape[:-2]
    y = jnp.zeros(lead + (total,), frames.dtype)
    # scatter-add is the overlap-add; it is linear, so its gradient is a gather
    y = y.at[..., idx].add(frames.reshape(lead + (-1,)))
    env = window_envelope(n_frames, n_fft, hop, win_length)
    ok = env > 1e-11
    y = y * jnp.asarray(np.where(ok, 1.0 / np.where(ok, env, 1.0), 0.0), y.dtype)
    start = n_fft // 2 if center else 0
    if length is None:
        length = total - 2 * start
    y = y[..., start:start + length]
    if y.shape[-1] < length:
        y = jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])])
    return y


def mag_pha_stft(x, n_fft: int, hop: int, win_length: int, compress: float = 0.3,
                 center: bool = True):
    """MP-SENet's input features of x (..., L): (mag^compress, phase, compressed complex).

    mag = sqrt(re² + im² + 1e-9) and phase = atan2(im + 1e-10, re + 1e-5), the same
    offsets as the reference, which keep the square root and atan2 differentiable at
    silent bins. Each output is (..., frames, bins); the complex one is a real array
    (..., frames, bins, 2) holding (mag_c·cos φ, mag_c·sin φ).
    """
    spec = stft(x, n_fft, hop, win_length, center)
    re, im = jnp.real(spec), jnp.imag(spec)
    mag = jnp.sqrt(re * re + im * im + 1e-9)
    pha = jnp.arctan2(im + 1e-10, re + 1e-5)
    mag = jnp.power(mag, compress)
    com = jnp.stack([mag * jnp.cos(pha), mag * jnp.sin(pha)], axis=-1)
    return mag, pha, com


def mag_pha_istft(mag, pha, n_fft: int, hop: int, win_length: int, length: int,
                  compress: float = 0.3, center: bool = True):
    """Waveform (..., length) from a compressed magnitude and a phase (..., frames, bins)."""
    mag = jnp.power(mag, 1.0 / compress)
    spec = jax.lax.complex(mag * jnp.cos(pha), mag * jnp.sin(pha))
    return istft(spec, n_fft, hop, win_length, length, center)


__all__ = ["hann_window", "num_frames", "stft", "istft", "window_envelope",
           "mag_pha_stft", "mag_pha_istft"]
