"""Declarations of what reads a tap's output h = σ(p): linear readers with a weight, and an
identity shortcut, for architectures whose taps are not read by one dense matrix (ResNet).

A *linear reader* computes z = f(h, W) + b, bilinear in (h, W), and the model passes z through
its ``tap.reader_out(weight_path, z)`` hook before anything else (before the norm):

* ``kind="conv"``: f(h, W) = conv2d(h, W) with ``stride`` and ``padding`` exactly as the model
  applies it (models/layers.conv2d, HWIO kernel). As a matrix product it is the im2col patch
  matrix P (P_{y,(dx,c)} = h_{y+dx,c}, zero outside the image) times W reshaped (K²C, C'),
  y ranging over batch × output positions: every y shares W.
* ``kind="pool_dense"``: f(h, W) = mean_{spatial}(h) W (global average pooling, then a dense head).

``identity_into`` names the tap whose pre-activation adds h unchanged (an identity shortcut:
no weight, so Stein's lemma says nothing about it).
"""

from __future__ import annotations

from dataclasses import dataclass

from driftlab.models.arch import layers as L

READER_KINDS = ("conv", "pool_dense")


@dataclass(frozen=True)
class LinearReader:
    """One weight that reads a tap linearly: z = f(h, W) (+ bias), W from ``scheme``/``gain``."""

    weight: str  # "/"-joined parameter path, also the name passed to tap.reader_out
    kind: str
    scheme: str
    gain: float
    stride: int = 1
    padding: int | None = None  # as models/layers.conv2d: None pads kernel//2 on each side

    def __post_init__(self):
        if self.kind not in READER_KINDS:
            raise ValueError(f"LinearReader.kind={self.kind!r} invalid; allowed: "
                             f"{', '.join(READER_KINDS)}")

    def apply(self, h, w):
        """f(h, W): the reader's output without bias (linear in h and in W)."""
        if self.kind == "conv":
            return L.conv2d({"w": w}, h, stride=self.stride, padding=self.padding)
        return L.global_avg_pool(h) @ w.astype(h.dtype)

    def fans(self, w_shape) -> tuple[int, int]:
        """(fan_in, fan_out) as models/layers counts them (kh·kw·C_in, kh·kw·C_out for convs)."""
        if self.kind == "conv":
            kh, kw, cin, cout = w_shape
            return kh * kw * cin, kh * kw * cout
        return int(w_shape[0]), int(w_shape[1])


@dataclass(frozen=True)
class TapReaders:
    """Everything that reads one tap's h: linear readers, and an optional identity shortcut."""

    readers: tuple[LinearReader, ...]
    identity_into: str | None = None


def no_reader_hook(name: str, z):
    """Default ``reader_out``: the reader's output unchanged."""
    return z


__all__ = ["LinearReader", "TapReaders", "READER_KINDS", "no_reader_hook"]
