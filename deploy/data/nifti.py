"""CT volumes in NIfTI (`.nii`, `.nii.gz`): reading, writing, HU windowing and axial slices.

People in medical imaging hand over volumes in Hounsfield units with an affine, not PNGs, and two
scanners rarely store their voxels in the same axis order. So every volume is brought to the
closest canonical orientation (RAS+: axis 0 runs to the patient's Right, 1 to Anterior, 2 to
Superior) before anything looks at its voxels, and the spacing is read from that header. An
axial slice is drawn the way radiologists view it: anterior at the top, the patient's right on the
image's left. HU windowing maps [low, high] linearly onto 0..255 (the liver window [-200, 250] by
default), clipping outside.

nibabel is an optional extra (`pip install segdeploy[ct]`), imported only when a volume is read
or written.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.errors import DeployError
from deploy.io import atomic_write_bytes

LIVER_WINDOW = (-200.0, 250.0)
NIFTI_EXTS = (".nii.gz", ".nii")


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise DeployError("reading or writing NIfTI volumes needs nibabel: pip install 'segdeploy[ct]' "
                          "(or pip install nibabel)") from None
    return nibabel


@dataclass(frozen=True)
class Volume:
    """A volume in canonical (RAS+) orientation: `data` (X, Y, Z), `affine` voxel → mm, `spacing`
    (mm along X, Y, Z)."""
    data: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def num_slices(self) -> int:
        return self.data.shape[2]

    def axial(self, k: int) -> np.ndarray:
        """Axial slice k (0 = most inferior) as a (Y, X) image: anterior at the top, the patient's
        right on the left (radiological view)."""
        return np.ascontiguousarray(self.data[::-1, ::-1, k].T)


def nifti_stem(path: str | os.PathLike) -> str:
    """`volume-3.nii.gz` → `volume-3`."""
    name = Path(path).name
    for ext in NIFTI_EXTS:
        if name.lower().endswith(ext):
            return name[:-len(ext)]
    return Path(path).stem


def _load(path: str | os.PathLike):
    nib = _nibabel()
    try:
        img = nib.load(os.fspath(path))
    except FileNotFoundError:
        raise DeployError(f"no NIfTI file {path}") from None
    except Exception as e:  # nibabel raises ImageFileError, ValueError, EOFError, gzip errors ...
        raise DeployError(f"cannot read NIfTI file {path}: {e}") from None
    if len(img.shape) != 3:
        raise DeployError(f"{path} is not a 3-D volume (shape {img.shape})")
    return nib.as_closest_canonical(img)


def axial_count(path: str | os.PathLike) -> int:
    """How many axial slices `path` has in canonical orientation, from its header alone (listing the
    slices of a folder of volumes must not decode every volume first)."""
    nib = _nibabel()
    try:
        img = nib.load(os.fspath(path))
    except FileNotFoundError:
        raise DeployError(f"no NIfTI file {path}") from None
    except Exception as e:  # as in _load
        raise DeployError(f"cannot read NIfTI file {path}: {e}") from None
    if len(img.shape) != 3:
        raise DeployError(f"{path} is not a 3-D volume (shape {img.shape})")
    axes = nib.orientations.io_orientation(img.affine)[:, 0]
    return int(img.shape[int(np.flatnonzero(axes == 2)[0])])


def _volume(img, data: np.ndarray) -> Volume:
    zooms = img.header.get_zooms()[:3]
    return Volume(data, np.asarray(img.affine, np.float64), tuple(float(z) for z in zooms))


def read_ct(path: str | os.PathLike) -> Volume:
    """A CT volume in HU (float32; the header's scale slope and intercept applied)."""
    img = _load(path)
    return _volume(img, img.get_fdata(dtype=np.float32))


def read_labels(path: str | os.PathLike) -> Volume:
    """A label volume (uint8 class ids; LiTS: 0 background, 1 liver, 2 tumour). Stored floats are
    rounded; a value outside 0..255 is an error."""
    img = _load(path)
    data = np.rint(np.asanyarray(img.dataobj, dtype=np.float64))
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DeployError(f"{path}: label values must lie in 0..255, found {data.min():g}..{data.max():g}")
    return _volume(img, data.astype(np.uint8))


def write_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write `data` with `affine` as NIfTI-1 (gzip-compressed for `.nii.gz`), atomically."""
    img = _nibabel().Nifti1Image(np.asarray(data), np.asarray(affine, np.float64))
    img.header.set_xyzt_units("mm")
    raw = img.to_bytes()
    if str(path).lower().endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, raw)


def window(hu: np.ndarray, low: float = LIVER_WINDOW[0], high: float = LIVER_WINDOW[1]) -> np.ndarray:
    """HU → uint8: `low` → 0, `high` → 255, linear between (rounded), clipped outside."""
    if not high > low:
        raise DeployError(f"HU window must have high > low, got [{low}, {high}]")
    x = (np.asarray(hu, np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
