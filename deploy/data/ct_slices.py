"""A LiTS-style folder of CT volumes → the 2-D slice layout the liver seeds were trained and scored on.

Input (LiTS 2017): `SRC/volume-<N>.nii[.gz]` with `SRC/segmentation-<N>.nii[.gz]` (0 background,
1 liver, 2 tumour; a volume without one is exported without masks). Output, per axial slice k
(0 = most inferior, canonical orientation, see deploy.data.nifti):

    DST/CT/volume-<N>_slice-<kkk>.png    8-bit grey: the HU window mapped onto 0..255
    DST/seg/volume-<N>_slice-<kkk>.png   the labels, same name (DSB2018-style pairing)

`labels="classes"` keeps the class ids 0/1/2 (the 3-class liver/tumour UNet, scored as a class-index
GT); `labels="liver"` writes liver-or-tumour as 255 (the single-foreground UNet 3+, scored like the
other binary seeds). The slice index has at least 3 digits, so names sort in slice order, and the
volume stem comes back out of a slice name with `parse_slice_name` (volume metrics group by it).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.data.image import IMAGE_EXTS, write_png
from deploy.data.nifti import LIVER_WINDOW, NIFTI_EXTS, nifti_stem, read_ct, read_labels, window
from deploy.data.readers import DataWarning
from deploy.errors import DeployError

CT_DIR, SEG_DIR = "CT", "seg"
LABEL_MODES = ("classes", "liver")
_VOLUME = re.compile(r"^volume-(\d+)$")
_SLICE = re.compile(r"^(?P<volume>.+)_slice-(?P<index>\d+)$")


@dataclass(frozen=True)
class Case:
    """One LiTS case: its number, CT volume and (when present) segmentation file."""
    number: int
    volume: Path
    segmentation: Path | None


def slice_name(volume_stem: str, k: int, num_slices: int) -> str:
    """`volume-3`, 42 → `volume-3_slice-042.png` (wider indices for volumes of 1000+ slices)."""
    width = max(3, len(str(num_slices - 1)))
    return f"{volume_stem}_slice-{k:0{width}d}.png"


def parse_slice_name(name: str) -> tuple[str, int] | None:
    """`volume-3_slice-042(.png)` → ("volume-3", 42); None for a name that is not a slice's."""
    m = _SLICE.match(Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTS else name)
    return (m["volume"], int(m["index"])) if m else None


def is_volume_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds LiTS volumes (`volume-<N>.nii[.gz]`): what `deploy run` reads as CT."""
    folder = Path(folder)
    return folder.is_dir() and any(_VOLUME.match(stem) for stem in _nifti_files(folder))


def _nifti_files(folder: Path) -> dict[str, Path]:
    return {nifti_stem(p): p for p in sorted(folder.iterdir())
            if p.is_file() and p.name.lower().endswith(NIFTI_EXTS)}


def find_cases(src: str | os.PathLike, seg_dir: str | os.PathLike | None = None) -> list[Case]:
    """The `volume-<N>` files of `src` with their `segmentation-<N>` files (in `seg_dir`, default `src`), by N."""
    src = Path(src)
    if not src.is_dir():
        raise DeployError(f"CT folder {src} is not a directory")
    if seg_dir is not None and not Path(seg_dir).is_dir():
        raise DeployError(f"segmentation folder {seg_dir} is not a directory")
    files = _nifti_files(src)
    segs = files if seg_dir is None else _nifti_files(Path(seg_dir))
    cases = [Case(int(m[1]), p, segs.get(f"segmentation-{m[1]}"))
             for stem, p in files.items() if (m := _VOLUME.match(stem))]
    if not cases:
        raise DeployError(f"no LiTS volumes (volume-<N>.nii or .nii.gz) in {src}")
    missing = [c.volume.name for c in cases if c.segmentation is None]
    if missing:
        warnings.warn(f"{len(missing)} of {len(cases)} volumes in {src} have no segmentation-<N> file "
                      f"(e.g. {missing[0]}); their slices have no masks", DataWarning, stacklevel=2)
    return sorted(cases, key=lambda c: c.number)


def label_mask(labels: np.ndarray, mode: str) -> np.ndarray:
    """A slice's mask as `mode` writes it: the class ids, or liver-or-tumour as 255 ("liver")."""
    return labels if mode == "classes" else np.where(labels > 0, 255, 0).astype(np.uint8)


@dataclass(frozen=True)
class CaseSlices:
    """One case read and windowed: `ct` (Z, H, W) uint8 axial slices, `labels` (Z, H, W) class ids or None."""
    stem: str
    ct: np.ndarray
    labels: np.ndarray | None

    def name(self, k: int) -> str:
        return slice_name(self.stem, k, len(self.ct))


def load_case(case: Case, hu_window: tuple[float, float] = LIVER_WINDOW) -> CaseSlices:
    """A case's axial slices as the export writes them (and `deploy run` on a NIfTI folder reads them)."""
    ct = read_ct(case.volume)
    seg = read_labels(case.segmentation) if case.segmentation else None
    if seg is not None and seg.data.shape != ct.data.shape:
        raise DeployError(f"{case.segmentation.name} has shape {seg.data.shape} but {case.volume.name} "
                          f"has {ct.data.shape} (after reorienting both)")
    slices = np.stack([window(ct.axial(k), *hu_window) for k in range(ct.num_slices)])
    labels = None if seg is None else np.stack([seg.axial(k) for k in range(seg.num_slices)])
    return CaseSlices(nifti_stem(case.volume), slices, labels)


def export_slices(src: str | os.PathLike, dst: str | os.PathLike, *, hu_window: tuple[float, float] = LIVER_WINDOW,
                  labels: str = "classes", progress: bool = False) -> tuple[int, int]:
    """Write every axial slice of every case in `src` under `dst/CT` and `dst/seg`; (cases, slices)."""
    if labels not in LABEL_MODES:
        raise DeployError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
    from tqdm import tqdm

    cases = find_cases(src)
    ct_dir, seg_dir = Path(dst) / CT_DIR, Path(dst) / SEG_DIR
    total = 0
    for case in tqdm(cases, desc="volumes", unit="vol", disable=not progress):
        loaded = load_case(case, hu_window)
        for k, ct in enumerate(loaded.ct):
            write_png(ct_dir / loaded.name(k), ct)
            if loaded.labels is not None:
                write_png(seg_dir / loaded.name(k), label_mask(loaded.labels[k], labels))
        total += len(loaded.ct)
    return len(cases), total
