"""The tools' output files (npz, png/jpg), each written atomically (deploy.io), so an interrupted
run never leaves a half-written file under its final name; the one npz reader of the tools' inputs
and outputs (a damaged file is an error naming it, which the tools count and report per file); and
the resume check for npz files."""
from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np

from deploy.errors import DeployError
from deploy.io import atomic_write_bytes


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Uncompressed npz (as `np.savez`, what the vendor tools write and read), as the file's bytes."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    return atomic_write_bytes(path, npz_bytes(arrays))


def image_bytes(img: np.ndarray, ext: str = ".png", rgb: bool = False) -> bytes:
    """The encoded file (PNG/JPG by `ext`); `rgb=True` for an (H, W, 3) RGB array (OpenCV writes BGR).
    Encoding apart from writing lets a cluster worker encode and the driver write the same bytes."""
    if rgb and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise DeployError(f"image encoding ({ext}) failed")
    return buf.tobytes()


def save_image(path: str | os.PathLike, img: np.ndarray, rgb: bool = False) -> Path:
    """PNG/JPG by the path's extension (see image_bytes)."""
    path = Path(path)
    try:
        data = image_bytes(img, path.suffix or ".png", rgb)
    except DeployError as e:
        raise DeployError(f"{e} for {path}") from None
    return atomic_write_bytes(path, data)


def refuse_collisions(folder: str | os.PathLike, outputs: Mapping[str, Iterable[str]], own: Iterable[str]) -> None:
    """Refuse, before anything is written, a set of inputs whose output file names in `folder` are not
    all distinct: `outputs` maps each input (its path, for the message) to the names it writes, `own`
    are the tool's own files (results.csv, iou_hist.png, ...). One file written twice is a result lost."""
    owner = {name: "the tool's own file" for name in own}
    clashes = []
    for source, names in outputs.items():
        for name in names:
            if name in owner:
                clashes.append(f"{source} and {owner[name]} both write {name}")
            else:
                owner[name] = source
    if clashes:
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise DeployError(f"{folder}: output names collide: {'; '.join(clashes[:3])}{more}; "
                          "rename or leave out one of each pair, nothing was written")


# what np.load and reading a member raise for a truncated, damaged or foreign file (BadZipFile and
# zlib.error are not OSErrors; ValueError: pickled objects, a bad header; EOFError: a short member)
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def read_npz(path: str | os.PathLike, keys: Iterable[str], what: str = "npz") -> list[np.ndarray]:
    """The arrays `keys` of an npz file, or a DeployError naming the file and what is wrong with it
    (truncated, random bytes, pickled objects, a key missing)."""
    keys = list(keys)
    try:
        with np.load(path) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DeployError(f"{what} {path}: no {missing[0]} (it has {', '.join(z.files) or 'no arrays'})")
            return [z[k] for k in keys]
    except NPZ_ERRORS as e:
        if isinstance(e, OSError) and e.errno:
            reason = os.strerror(e.errno)
        else:
            reason = f"{e or type(e).__name__} (a truncated file, or not an npz file)"
        raise DeployError(f"cannot read {what} {path}: {reason}") from None


def npz_ok(path: str | os.PathLike, keys: tuple[str, ...] = ("output_0",)) -> bool:
    """Whether `path` is a complete npz holding `keys` (a resume check, cheap: a zip's directory is
    at its end, so a truncated file does not open)."""
    try:
        with np.load(path) as z:
            return all(k in z.files for k in keys)
    except Exception:  # any unreadable file is simply "not done"
        return False
