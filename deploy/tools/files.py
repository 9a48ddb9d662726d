"""The tools' output files (npz, png/jpg), each written atomically (deploy.io), so an interrupted
run never leaves a half-written file under its final name; and the resume check for npz files."""
from __future__ import annotations

import io
import os
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


def npz_ok(path: str | os.PathLike, keys: tuple[str, ...] = ("output_0",)) -> bool:
    """Whether `path` is a complete npz holding `keys` (a resume check, cheap: a zip's directory is
    at its end, so a truncated file does not open)."""
    try:
        with np.load(path) as z:
            return all(k in z.files for k in keys)
    except Exception:  # any unreadable file is simply "not done"
        return False
