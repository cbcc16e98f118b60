"""The canonical block and its variants, as a validated frozen config."""

from __future__ import annotations

import math
from dataclasses import dataclass

from driftlab.activations import parse_activation

LOSSES = ("mse", "ce")
REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True)
class BlockSetting:
    """x ~ N(0, I_d) → W1 (n×d) → p → σ → h → W2 → f ∈ R^k → ℓ (docs/theory.md notation).

    Weights are i.i.d. N(0, G²/fan_in). Variants that break the theorem's assumptions:
    ``w2_mean`` ≠ 0 shifts W2's mean; ``target_coupling`` β ≠ 0 makes the MSE target
    y = β·f + ξ correlated with W2. ``reduction`` is the MSE reduction over outputs.
    For the 3-layer drift block the hidden matrix W2 is n×n and W3 is k×n.
    """

    loss: str = "mse"
    act: str = "relu"
    d_in: int = 32
    width: int = 64
    d_out: int = 10
    gain: float = 1.0
    reduction: str = "sum"
    w2_mean: float = 0.0
    target_coupling: float = 0.0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        parse_activation(self.act)
        for field in ("d_in", "width", "d_out"):
            val = getattr(self, field)
            if not (isinstance(val, int) and val > 0):
                raise ValueError(f"{field} must be a positive integer, got {val!r}")
        if not (isinstance(self.gain, (int, float)) and self.gain > 0):
            raise ValueError(f"gain must be positive, got {self.gain!r}")

    @property
    def s1(self) -> float:
        return self.gain / math.sqrt(self.d_in)

    @property
    def s2(self) -> float:
        return self.gain / math.sqrt(self.width)

    def describe(self) -> str:
        extra = "".join([f", μ(W2)={self.w2_mean:g}" if self.w2_mean else "",
                         f", y=β·f+ξ β={self.target_coupling:g}" if self.target_coupling else "",
                         f", reduction={self.reduction}" if self.reduction != "sum" else ""])
        return (f"{self.loss} {self.act} d={self.d_in} n={self.width} k={self.d_out} "
                f"G={self.gain:g}{extra}")
