"""How far a tensor is from its fp32 reference, pooled over all images: SQNR (dB) and cosine.

SQNR = 10·log10(Σ ref² / Σ (x − ref)²) and cosine = Σ x·ref / √(Σ x² · Σ ref²), both over every
element of every image (sums in float64), so a layer's number is not the mean of per-image ratios
that one near-empty image can dominate. An exact tensor has SQNR +inf (written as null in JSON); an
error on an all-zero reference -inf (written as FLOOR_DB)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FLOOR_DB = -200.0


@dataclass
class Errors:
    signal: float = 0.0   # Σ ref²
    noise: float = 0.0    # Σ (x − ref)²
    dot: float = 0.0      # Σ x·ref
    power: float = 0.0    # Σ x²

    def add(self, x: np.ndarray, ref: np.ndarray) -> None:
        if x.shape != ref.shape:
            raise ValueError(f"shape {x.shape} vs reference {ref.shape}")
        x, ref = x.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
        d = x - ref
        self.signal += float(ref @ ref)
        self.noise += float(d @ d)
        self.dot += float(x @ ref)
        self.power += float(x @ x)

    @property
    def sqnr(self) -> float:
        if self.noise == 0.0:
            return math.inf
        if self.signal == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.signal / self.noise)

    @property
    def cosine(self) -> float:
        if self.signal == 0.0 or self.power == 0.0:
            return 1.0 if self.signal == self.power else 0.0
        return self.dot / math.sqrt(self.signal * self.power)

    def to_dict(self) -> dict:
        return {"sqnr_db": finite(max(self.sqnr, FLOOR_DB)), "cosine": self.cosine}


def finite(v: float | None) -> float | None:
    """JSON has no infinity: an exact (or empty) result is null."""
    return v if v is not None and math.isfinite(v) else None


def db(v: float | None) -> str:
    """SQNR for people: '∞' for an exact tensor."""
    if v is None or v == math.inf:
        return "exact"
    return f"{v:.1f}"
