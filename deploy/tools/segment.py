"""One image's work in `deploy run`, shared by the local runstream and the Ray route (deploy.tools.ray_run)
so that both produce byte-identical outputs: `ImageJob.load` decodes and preprocesses (vdsp),
`ImageJob.render` predicts, scores and encodes the image's files, and `write` puts those bytes under
their names in the save folder. Rendering returns bytes instead of writing them so that a cluster
worker can render and the driver write, in the same layout as a local run.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from deploy.data.ct_slices import parse_slice_name
from deploy.data.metrics import gt_at, predict, score_image
from deploy.data.volume_metrics import Overlap, slice_overlaps
from deploy.io import atomic_write_bytes
from deploy.tools import files
from deploy.tools.draw import mask_image
from deploy.tools.report import BAD_IMAGE, BAD_MASK, NO_MASK, OK, Row


@dataclass(frozen=True)
class Outputs:
    """The files one image produces in the save folder."""
    npz: Path
    mask: Path        # source size
    model_mask: Path  # model size

    @classmethod
    def of(cls, save_dir: Path, stem: str) -> "Outputs":
        return cls(save_dir / f"{stem}.npz", save_dir / f"{stem}.png", save_dir / f"{stem}_model.png")

    def names(self) -> tuple[str, ...]:
        return self.npz.name, self.mask.name, self.model_mask.name

    def valid(self, keys: tuple[str, ...]) -> bool:
        """Complete: both PNGs, and the npz holding `keys` (no keys: the run writes no npz)."""
        return (not keys or files.npz_ok(self.npz, keys)) and _png_ok(self.mask) and _png_ok(self.model_mask)


def _overlaps(sample: Any, labels: np.ndarray, gt_model: np.ndarray, binary: bool) -> dict[str, Overlap] | None:
    """A CT slice's (named `<volume>_slice-<k>`) voxel counts for the volume metrics; None for other images."""
    return slice_overlaps(labels, gt_model, binary) if parse_slice_name(sample.image.name) else None


def _png_ok(path: Path) -> bool:
    """A complete PNG ends with its IEND chunk (a cheap check; the files are written atomically anyway)."""
    try:
        with open(path, "rb") as f:
            f.seek(-12, 2)
            return b"IEND" in f.read()
    except OSError:
        return False


@dataclass(frozen=True)
class Rendered:
    """An image's results row and its encoded files (None: not written — no npz wanted, or the image
    was unreadable); `overlaps`: a scored CT slice's voxel counts for the volume metrics (volumes.csv)."""
    row: Row
    npz: bytes | None = None
    mask: bytes | None = None
    model_mask: bytes | None = None
    overlaps: dict[str, Overlap] | None = None


def write(save_dir: Path, sample: Any, rendered: Rendered) -> Rendered:
    """The rendered files under the image's output names (each atomically); returns the row alone."""
    out = Outputs.of(save_dir, sample.image.stem)
    for path, data in ((out.npz, rendered.npz), (out.model_mask, rendered.model_mask), (out.mask, rendered.mask)):
        if data is not None:
            atomic_write_bytes(path, data)
    return Rendered(rendered.row, overlaps=rendered.overlaps)


@dataclass(frozen=True)
class ImageJob:
    """What is done to every image of a run (plain data, so it can be shipped to cluster workers)."""
    pre: Any            # deploy.preprocess.Preprocessor
    out_index: int      # the model output that is the prediction
    threshold: float
    sigmoid: bool
    npz: bool           # keep the raw outputs as <stem>.npz

    def load(self, sample: Any) -> tuple[np.ndarray, tuple[int, int]]:
        img = sample.rgb()
        return self.pre.from_rgb(img), img.shape[:2]

    def render(self, sample: Any, src_size: tuple[int, int], outs: list[np.ndarray]) -> Rendered:
        from deploy.data.image import ImageReadError
        npz = files.npz_bytes({f"output_{i}": o for i, o in enumerate(outs)}) if self.npz else None
        pred = predict(outs[self.out_index][0], self.threshold, self.sigmoid)
        binary = pred.prob is not None
        encoded = Rendered(Row(sample.image.name, NO_MASK), npz=npz,
                           mask=files.image_bytes(mask_image(pred.labels_at(src_size), binary)),
                           model_mask=files.image_bytes(mask_image(pred.labels, binary)))
        if sample.mask is None:
            return encoded
        try:
            gt = sample.gt(binary)
        except ImageReadError as e:
            return replace(encoded, row=Row(sample.image.name, BAD_MASK, mask=sample.mask.name, detail=str(e)))
        iou, dice, gt_model = score_image(pred, gt)
        return replace(encoded, row=Row(sample.image.name, OK, iou, dice, mask=sample.mask.name),
                       overlaps=_overlaps(sample, pred.labels, gt_model, binary))

    def rescore(self, sample: Any, save_dir: Path, binary: bool) -> dict[str, Overlap] | None:
        """A slice an earlier run scored (--resume keeps it): its volume overlaps, from the model-size
        mask that run saved against the GT, as `render` counts them."""
        from deploy.data.image import read_mask
        if sample.mask is None or parse_slice_name(sample.image.name) is None:
            return None
        labels = read_mask(Outputs.of(save_dir, sample.image.stem).model_mask)
        if binary:
            labels = (labels != 0).astype(np.uint8)
        return _overlaps(sample, labels, gt_at(sample.gt(binary), labels.shape, binary), binary)

    def write(self, save_dir: Path, sample: Any, rendered: Rendered) -> Rendered:
        """What the Ray route's driver does with a worker's Rendered: `write` (the module function)."""
        return write(save_dir, sample, rendered)

    def label(self, sample: Any) -> str:
        return sample.image.name

    def run_images(self, infer: Callable[[Sequence[np.ndarray]], list[np.ndarray]], samples: Iterable[Any], *,
                   batch: int, workers: int, save_dir: Path | None = None) -> Iterator[Rendered]:
        """Each sample's Rendered, in order, through the runstream (batched inference, `workers` reader and
        finisher threads). With `save_dir` the finisher threads write the files there and only the rows
        come back; an unreadable image comes back as its row, never inferred."""
        from deploy.data.image import ImageReadError
        from deploy.runtime.stream import Stream

        def finish(sample: Any, src_size: tuple[int, int], outs: list[np.ndarray]) -> Rendered:
            rendered = self.render(sample, src_size, outs)
            return rendered if save_dir is None else write(save_dir, sample, rendered)

        stream = Stream(infer, self.load, finish, batch=batch, workers=workers, skip=(ImageReadError,))
        for done in stream.run(samples):
            yield done.value if done.error is None else Rendered(Row(done.item.image.name, BAD_IMAGE,
                                                                     detail=str(done.error)))
