"""Build YAML ↔ vdsp JSON equivalence: the same image through both specs must give the same
tensor. A mismatch here (typically a missing BGR swap) is the top cause of int8 accuracy loss
in the field, because calibration used one preprocessing and deployment another."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.config.build import BuildConfig
from deploy.config.vdsp import VdspConfig
from deploy.preprocess.pipeline import Preprocessor


@dataclass(frozen=True)
class Comparison:
    image: str
    max_abs_diff: float        # inf when the shapes differ
    shape_yaml: tuple
    shape_vdsp: tuple
    swapped_max_abs_diff: float | None = None  # the diff if one side's channels were reversed

    @property
    def hint(self) -> str:
        if self.shape_yaml != self.shape_vdsp:
            return (f"shapes differ: YAML gives {self.shape_yaml}, vdsp gives {self.shape_vdsp} "
                    "(check Resize size vs Oimage*)")
        if self.swapped_max_abs_diff is not None and self.swapped_max_abs_diff < 0.5 * self.max_abs_diff:
            return (f"channel order differs: reversing the channels brings the diff to {self.swapped_max_abs_diff:.3g} "
                    "(check CvtColor in process_ops vs ColorCvtCode)")
        return ""


def compare_preprocess(build: BuildConfig, vdsp: VdspConfig, images: list[Path | np.ndarray]) -> list[Comparison]:
    """Run each image (a file, or an RGB HWC uint8 array) through both specs."""
    a_pre = Preprocessor.from_process_ops(build.dataset.process_ops)
    b_pre = Preprocessor.from_vdsp(vdsp)
    out = []
    for i, img in enumerate(images):
        if isinstance(img, np.ndarray):
            name = f"<array {i}>"
            a, b = a_pre.from_rgb(img), b_pre.from_rgb(img)
        else:
            name, a, b = str(img), a_pre.load(img), b_pre.load(img)
        if a.shape != b.shape:
            out.append(Comparison(name, float("inf"), a.shape, b.shape))
            continue
        diff = float(np.abs(a - b).max())
        swapped = float(np.abs(a - b[::-1]).max()) if diff > 0 else None
        out.append(Comparison(name, diff, a.shape, b.shape, swapped))
    return out


def probe_image(seed: int = 0, size: tuple[int, int] = (173, 211)) -> np.ndarray:
    """A deterministic RGB test image with distinct channels and gradients at an odd size,
    used when the build file's dataset folder is not available."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 127 // (h + w)], -1)
    return np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
