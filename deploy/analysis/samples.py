"""The images an analysis runs: the build's calibration set (the plan's images) or `--images DIR`,
each with its ground-truth mask when one is found (`--masks DIR`, else a `masks`/`seg`/`gt` folder
beside the images, the layout of deploy.data.sets), preprocessed as the build YAML says."""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from deploy.config.build import BuildConfig
from deploy.data.image import read_gt
from deploy.data.readers import DataWarning, list_images, pair_masks
from deploy.errors import DeployError
from deploy.preprocess import Preprocessor
from deploy.quantize.calibrate import BATCH, check_dataset_shape, image_batches

MASK_FOLDERS = ("masks", "seg", "gt", "labels")  # looked for beside the image folder


@dataclass
class Samples:
    images: list[Path]
    masks: list[Path | None]          # the ground truth of each image, where one was found
    image_dir: Path
    mask_dir: Path | None
    pre: Preprocessor
    input_name: str
    batch: int                        # images per onnxruntime call
    fixed: bool                       # the model's batch size is fixed (last batch padded)
    source: str = "calibration set"   # or "--images"
    _gts: dict[int, np.ndarray] | None = None

    @property
    def scored(self) -> int:
        """How many images have a mask (mIoU is over these)."""
        return sum(m is not None for m in self.masks)

    def gt(self, i: int, binary: bool) -> np.ndarray | None:
        """Image i's mask as scoring reads it (read once, then kept: the search scores many times)."""
        if self.masks[i] is None:
            return None
        if self._gts is None:
            self._gts = {}
        if i not in self._gts:
            self._gts[i] = read_gt(self.masks[i], binary)
        return self._gts[i]

    def batches(self) -> Iterator[tuple[np.ndarray, int, int]]:
        """`(x, n, start)`: a float32 NCHW batch, its real rows and the index of its first image."""
        start = 0
        for x, n in image_batches(self.images, self.pre.load, self.batch, self.fixed):
            yield x, n, start
            start += n


def _beside(image_dir: Path) -> Path | None:
    for name in MASK_FOLDERS:
        d = image_dir.parent / name
        if d.is_dir() and d.resolve() != image_dir.resolve():
            return d
    return None


def _pair(images: list[Path], image_dir: Path, mask_dir: Path | None, explicit: bool) -> list[Path | None]:
    """Each image's mask in `mask_dir` (deploy.data.readers.pair_masks rules); a folder found by
    looking (not given) that pairs nothing means no masks, not an error."""
    if mask_dir is None:
        return [None] * len(images)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if not explicit else "default", DataWarning)
            pairs = {s.image.resolve(): s.mask for s in pair_masks(image_dir, mask_dir)}
    except DeployError:
        if explicit:
            raise
        return [None] * len(images)
    return [pairs.get(p.resolve()) for p in images]


def select(cfg: BuildConfig, model: onnx.ModelProto, calibration: list[Path], image_dir: str | Path | None = None,
           mask_dir: str | Path | None = None) -> Samples:
    """The analysis images: `image_dir` (every image in it) or else the calibration images."""
    source = "calibration set" if image_dir is None else "--images"
    if image_dir is not None:
        image_dir = Path(image_dir)
        images = list_images(image_dir)
        if not images:
            raise DeployError(f"--images {image_dir}: no images in that folder")
    else:
        images, image_dir = list(calibration), Path(cfg.dataset.path)
    found = Path(mask_dir) if mask_dir is not None else _beside(image_dir)
    masks = _pair(images, image_dir, found, explicit=mask_dir is not None)
    pre = Preprocessor.from_process_ops(cfg.dataset.process_ops)
    input_name, dims = check_dataset_shape(cfg, model, pre.load(images[0]))
    fixed = isinstance(dims[0], int) and dims[0] > 0
    return Samples(images, masks, image_dir, found if any(masks) else None, pre, input_name,
                   dims[0] if fixed else BATCH, fixed, source)
