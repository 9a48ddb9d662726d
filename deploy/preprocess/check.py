"""Build YAML ↔ vdsp JSON equivalence: the same image through both specs must give the same
tensor. A mismatch here (typically a missing BGR swap) is the top cause of int8 accuracy loss
in the field, because calibration used one preprocessing and deployment another."""
from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, replace
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


PROBE_NAME = "<colour probe>"
# pure and mixed colours for the probe's hard-edged patches: each channel alone, pairs, white, black
_PATCH_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
                  (255, 255, 255), (0, 0, 0))


def colour_probe(size: tuple[int, int] = (173, 211)) -> np.ndarray:
    """probe_image's distinct R, G and B ramps (so any channel swap or mix shows) with a row of
    hard-edged patches across the middle — each channel alone, in pairs, white and black — whose
    edges exercise the resize kernels where they differ most."""
    img = probe_image(0, size)
    h, w = size
    step = max(w // len(_PATCH_COLOURS), 1)
    for i, colour in enumerate(_PATCH_COLOURS):
        img[h // 3: 2 * h // 3, i * step:(i + 1) * step] = colour
    return img


def colour_spread(path: str | Path) -> float:
    """Mean over pixels of (largest − smallest channel): 0 for a grey image, which no channel swap changes."""
    from deploy.data.image import read_image_rgb
    img = read_image_rgb(path).astype(np.int16)
    return float((img.max(-1) - img.min(-1)).mean())


def colourful_images(folder: str | Path, suffix: str | None, num: int, seed: int = 0,
                     candidates: int = 8) -> list[Path]:
    """The `num` most colourful of a seeded choice of `candidates`×`num` files of `folder`, most
    colourful first: grey images (nearly half the nuclei set) cannot show a channel-order mistake."""
    from deploy.data.readers import DataWarning, list_images, select_calibration
    if not list_images(folder, suffix):
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # a small folder: all of it is the choice
        pool = select_calibration(folder, suffix, max(num, 1) * candidates, seed)
    return sorted(pool, key=lambda p: (-colour_spread(p), p.name))[:num]


def check_images(build: BuildConfig, vdsp: VdspConfig, images: list[Path], num: int) -> list[Comparison]:
    """Compare the generated colour probe (written to a PNG, so the file reader runs as for any
    image), then `images`, or else the `num` most colourful images of the build's dataset folder
    (none when it is missing or empty)."""
    path = build.dataset.path
    if not images and num > 0 and path is not None and Path(path).is_dir():
        images = colourful_images(path, build.dataset.suffix, num)
    from deploy.data.image import write_png
    with tempfile.TemporaryDirectory(prefix="segdeploy-probe-") as tmp:
        probe = Path(tmp) / "colour_probe.png"
        write_png(probe, colour_probe())
        results = compare_preprocess(build, vdsp, [probe, *images])
    return [replace(results[0], image=PROBE_NAME), *results[1:]]
