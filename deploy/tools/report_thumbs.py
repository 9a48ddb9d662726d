"""The report's small pictures, written into its folder so it opens from disk: per image the source,
its ground truth and each run's prediction overlay; for the images a comparison shows, each run's
mask and where it differs from the base run's. Downscaled first (at most THUMB px a side), so a
report of 10 000 images stays a few tens of MB and the browser loads only what a page shows."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deploy.tools import draw, files
from deploy.tools.report_runs import Run, disagreement, read_labels, read_plane

THUMB = 128
LOST = (230, 30, 30)    # RGB: foreground in the base run only
GAINED = (30, 90, 255)  # RGB: foreground in the other run only
DIFFER = (255, 200, 0)  # RGB: both foreground, other class (multi-class)


@dataclass(frozen=True)
class Sources:
    """Where one image's source and ground truth are (None: not known or not there)."""
    image: Path | None
    gt: Path | None


def sources(runs: list[Run], name: str) -> Sources:
    """The first run that knows the folders and has the files decides."""
    img = gt = None
    for r in runs:
        row = r.rows.get(name)
        if img is None and r.image_dir is not None and (r.image_dir / name).is_file():
            img = r.image_dir / name
        if gt is None and row is not None and row.mask and r.mask_dir is not None and (r.mask_dir / row.mask).is_file():
            gt = r.mask_dir / row.mask
    return Sources(img, gt)


def _thumb_size(h: int, w: int) -> tuple[int, int]:
    s = min(1.0, THUMB / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _resize(a: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    return cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _read_rgb(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _colour(labels: np.ndarray) -> np.ndarray:
    return draw.palette(int(labels.max()) + 1)[labels]


def _gt_labels(path: Path | None) -> np.ndarray | None:
    """Ground truth as labels: 0/255 and grey masks at the scoring threshold (>= 125), class ids as they are."""
    m = read_plane(path)
    if m is None:
        return None
    if m.dtype != np.uint8:
        m = (m / max(1, int(m.max())) * 255).astype(np.uint8)
    vals = np.unique(m)
    if set(vals.tolist()) <= {0, 255}:
        return (m > 0).astype(np.uint8)
    ids = vals[vals != 255]
    return m if ids.max() < 20 else (m >= 125).astype(np.uint8)  # class ids (255 = ignore), else grey

class Thumbnails:
    """Writes the pictures under `out/thumbs` and answers with their paths relative to `out`."""

    def __init__(self, out: Path, runs: list[Run]):
        self.out, self.runs = out, runs
        (out / "thumbs").mkdir(parents=True, exist_ok=True)

    def _save(self, name: str, img: np.ndarray) -> str:
        files.save_image(self.out / "thumbs" / name, img, rgb=img.ndim == 3)
        return f"thumbs/{name}"

    def _base(self, name: str) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, int] | None]:
        """(image, GT labels, size) at thumbnail size; the size from the image, else the first mask."""
        src = sources(self.runs, name)
        img, gt = _read_rgb(src.image), _gt_labels(src.gt)
        ref = img if img is not None else gt
        if ref is None:
            masks = [m for m in (read_labels(r.mask_file(name)) for r in self.runs) if m is not None]
            ref = masks[0] if masks else None
        if ref is None:
            return None, None, None
        size = _thumb_size(*ref.shape[:2])
        return (None if img is None else _resize(img, size, False),
                None if gt is None else _resize(gt, size, True), size)

    def row(self, i: int, name: str) -> dict:
        """{"img", "gt", "runs": [overlay per run or None]} for table row `i`."""
        img, gt, size = self._base(name)
        out: dict = {"img": None, "gt": None, "runs": [None] * len(self.runs)}
        if size is None:
            return out
        if img is not None:
            out["img"] = self._save(f"{i}_img.jpg", img)
        if gt is not None:
            out["gt"] = self._save(f"{i}_gt.png", _colour(gt))
        canvas = img if img is not None else np.zeros((*size, 3), np.uint8)
        for k, r in enumerate(self.runs):
            pred = read_labels(r.mask_file(name))
            if pred is not None:
                pred = _resize(pred, size, True)
                gt_fg = None if gt is None else (gt > 0) & (gt != 255)
                out["runs"][k] = self._save(f"{i}_r{k}.jpg", draw.overlay(canvas, pred, gt_fg))
        return out

    def comparison(self, i: int, name: str) -> dict:
        """{"masks": [mask per run], "differ": [map per other run]} for a compared image."""
        img, _, size = self._base(name)
        masks = [read_labels(r.mask_file(name)) for r in self.runs]
        out: dict = {"masks": [None] * len(self.runs), "differ": [None] * (len(self.runs) - 1)}
        if size is None:
            return out
        small = [None if m is None else _resize(m, size, True) for m in masks]
        for k, m in enumerate(small):
            if m is not None:
                out["masks"][k] = self._save(f"{i}_m{k}.png", _colour(m))
        base = masks[0]
        for k, m in enumerate(masks[1:], start=1):
            if base is not None and m is not None:
                out["differ"][k - 1] = self._save(f"{i}_d{k}.png", self._differ_map(img, size, base, m))
        return out

    @staticmethod
    def _differ_map(img: np.ndarray | None, size: tuple[int, int], base: np.ndarray, other: np.ndarray) -> np.ndarray:
        """The dimmed image with the pixels the two masks disagree on coloured (lost, gained, other class)."""
        if other.shape != base.shape:
            other = cv2.resize(other, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_NEAREST)
        diff = disagreement(base, other)
        canvas = np.full((*size, 3), 40, np.uint8) if img is None else (img * 0.35).astype(np.uint8)
        a, b, d = (_resize(x.astype(np.uint8), size, True) for x in (base > 0, other > 0, diff))
        d = d > 0
        canvas[d & (a > 0) & (b == 0)] = LOST
        canvas[d & (a == 0) & (b > 0)] = GAINED
        canvas[d & (a > 0) & (b > 0)] = DIFFER
        return canvas


def write_all(thumbs: Thumbnails, names: list[str], compared: list[str], workers: int = 4) -> tuple[list, dict]:
    """Row thumbnails for `names` (by index) and comparison ones for `compared` (by their index in names)."""
    index = {n: i for i, n in enumerate(names)}
    with ThreadPoolExecutor(workers) as pool:  # OpenCV releases the GIL while it decodes and encodes
        rows = list(pool.map(thumbs.row, range(len(names)), names))
        comp = dict(zip(compared, pool.map(lambda n: thumbs.comparison(index[n], n), compared)))
    return rows, comp
