"""CT volumes in the tools: `deploy run` on a folder of volumes (the slices of `volume-<N>.nii[.gz]`
read straight from the volumes, as if `deploy data slices` had exported them first), and the
per-volume montages of `deploy eval --draw_dir`.

Each axial slice becomes a sample named like its exported file (`volume-<N>_slice-<KKK>.png`, never
written) whose image is the HU-windowed slice as 3 equal channels (what decoding the exported grey
PNG gives) and whose GT is the slice of `segmentation-<N>` as the model is scored against it:
liver-or-tumour as 255 for a single-channel model (`--labels liver`), the class ids for a
multi-class one (`--labels classes`). So a run on the volumes writes the same per-slice files and
scores as a run on the exported folder, and its slice names group into volumes for volumes.csv.

Montages: `<draw_dir>/volumes/<volume>.png` puts a few of a volume's slice overlays side by side
(GT contour green, prediction red, as in each `<stem>_overlay.png`): `MONTAGE_SLICES` spread evenly
over the slices where the GT or the prediction has liver (over all slices when none has), with the
volume's Dice in the title.

A volume is read and windowed once, when its first slice is asked for, and kept while its slices
are read (the last `KEEP` volumes), so memory holds a couple of volumes, not the set.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy.data.ct_slices import Case, CaseSlices, find_cases, label_mask, load_case, parse_slice_name, slice_name
from deploy.data.nifti import LIVER_WINDOW, axial_count, nifti_stem, window
from deploy.data.volume_metrics import LIVER, Overlap

MONTAGE_DIR = "volumes"
MONTAGE_SLICES = 6
KEEP = 2  # volumes kept loaded: the reader threads work on consecutive slices, at most two volumes at once


class VolumeCache:
    """The windowed slices of the last `keep` cases asked for; safe to share between reader threads.
    Pickled without its contents (a cluster worker reads the volumes itself)."""

    def __init__(self, hu_window: tuple[float, float] = LIVER_WINDOW, keep: int = KEEP) -> None:
        window(np.zeros(1), *hu_window)  # a bad window fails here, before any volume is read
        self.hu_window, self.keep = tuple(hu_window), keep
        self._loaded: OrderedDict[Path, CaseSlices] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, case: Case) -> CaseSlices:
        with self._lock:  # one reader loads a volume while the others wait for it
            if case.volume not in self._loaded:
                self._loaded[case.volume] = load_case(case, self.hu_window)
                while len(self._loaded) > self.keep:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(case.volume)
            return self._loaded[case.volume]

    def __getstate__(self) -> dict:
        return {"hu_window": self.hu_window, "keep": self.keep}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["hu_window"], state["keep"])


@dataclass(frozen=True)
class SliceSample:
    """One axial slice of a case, answering what a run reads of a sample (deploy.data.readers.Sample).
    `image` is the exported file's name under the volume folder (no such file exists); `mask` is the
    case's segmentation file, or None."""
    image: Path
    mask: Path | None
    case: Case
    index: int
    cache: VolumeCache = field(compare=False, repr=False)

    def rgb(self) -> np.ndarray:
        grey = self.cache.get(self.case).ct[self.index]
        return np.repeat(grey[..., None], 3, axis=2)

    def gt(self, binary: bool) -> np.ndarray:
        labels = self.cache.get(self.case).labels[self.index]
        return label_mask(labels, "liver" if binary else "classes")


def slice_samples(folder: str | os.PathLike, seg_dir: str | os.PathLike | None = None,
                  hu_window: tuple[float, float] = LIVER_WINDOW) -> list[SliceSample]:
    """Every axial slice of every case in `folder` (segmentations from `seg_dir`, default `folder`), in
    case then slice order; only the headers are read here."""
    cache = VolumeCache(hu_window)
    samples = []
    for case in find_cases(folder, seg_dir):
        n = axial_count(case.volume)
        stem = nifti_stem(case.volume)
        samples += [SliceSample(Path(folder) / slice_name(stem, k, n), case.segmentation, case, k, cache)
                    for k in range(n)]
    return samples


def pick_slices(names: list[str], shown: list[bool], n: int = MONTAGE_SLICES) -> list[str]:
    """Up to `n` of a volume's slice names (in slice order), evenly spread over those `shown` (liver in
    GT or prediction), or over all when none is."""
    pool = [name for name, s in zip(names, shown) if s] or list(names)
    picks = np.unique(np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int))
    return [pool[i] for i in picks]


def write_montages(draw_dir: str | os.PathLike, slices: dict[str, dict[str, Overlap]], volumes: dict | None,
                   overlay_name) -> list[Path]:
    """`draw_dir/volumes/<volume>.png` for each volume among `slices` (slice name → its overlaps), from
    the overlays already drawn (`overlay_name(stem)` under `draw_dir`); slices without one are left out."""
    from deploy.data.image import ImageReadError, read_image_rgb
    from deploy.tools import draw, files

    by_volume: dict[str, list[tuple[int, str]]] = {}
    for name in slices:
        vol, k = parse_slice_name(name)
        by_volume.setdefault(vol, []).append((k, name))
    written = []
    for vol, items in by_volume.items():
        names = [name for _, name in sorted(items)]
        shown = [slices[n][LIVER].pred + slices[n][LIVER].gt > 0 for n in names]
        tiles, captions = [], []
        for name in pick_slices(names, shown):
            try:
                tiles.append(read_image_rgb(Path(draw_dir) / overlay_name(Path(name).stem)))
            except ImageReadError:
                continue
            captions.append(f"slice {parse_slice_name(name)[1]}")
        if tiles:
            dice = (volumes or {}).get("cases", {}).get(vol, {})
            title = f"{vol}: " + ", ".join(f"{k} Dice {v * 100:.1f}" for k, v in dice.items()) + \
                "  (GT green, prediction red)"
            path = Path(draw_dir) / MONTAGE_DIR / f"{vol}.png"
            written.append(files.save_image(path, draw.montage(tiles, captions, title), rgb=True))
    return written
