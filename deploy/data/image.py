"""Decode images and masks with OpenCV; every failure is an ImageReadError naming the file.

`cv2.imread` returns None for a missing, empty, truncated or unsupported file; here each of
those raises instead, so a caller can never go on with a None. Files are read as bytes and
decoded with `cv2.imdecode` (the same decoders as imread, and any path the OS accepts).
GIF (Carvana's `<id>_mask.gif`) is decoded by OpenCV's own GIF codec (OpenCV >= 4.11);
the palette is applied, so a black/white palette mask reads as 0/255.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from deploy.errors import DeployError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


class ImageReadError(DeployError):
    """An image or mask could not be read or decoded; `path` and `reason` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def _decode(path: str | os.PathLike, flags: int) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(path, e.strerror or str(e)) from None
    if data.size == 0:
        raise ImageReadError(path, "file is empty")
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as e:
        raise ImageReadError(path, f"decoder error: {str(e).strip()}") from None
    if img is None or img.size == 0:
        if data[:4].tobytes() == b"GIF8" and not _gif_supported():
            raise ImageReadError(path, f"this OpenCV build ({cv2.__version__}) has no GIF decoder; "
                                       "use opencv-python(-headless) >= 4.11 or convert the masks to PNG")
        raise ImageReadError(path, "not a decodable image (corrupt, truncated or unsupported format)")
    return img


_TINY_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00"
             b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def _gif_supported() -> bool:
    """Whether this OpenCV decodes GIF at all (asked only after a GIF failed, to word the error)."""
    return cv2.imdecode(np.frombuffer(_TINY_GIF, np.uint8), cv2.IMREAD_GRAYSCALE) is not None


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB. Gray, alpha and 16-bit files are converted as `cv2.imread` would."""
    bgr = _decode(path, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """(H, W) uint8 grayscale mask or matte (png/jpg/gif ...), values as stored (0/255, or 0..255 soft)."""
    return _decode(path, cv2.IMREAD_GRAYSCALE)
