"""Decode images and masks with OpenCV; every failure is an ImageReadError naming the file.

`cv2.imread` returns None for a missing, empty, truncated or unsupported file; here each of
those raises instead, so a caller can never go on with a None. Files are read as bytes and
decoded with `cv2.imdecode` (the same decoders as imread, and any path the OS accepts).
GIF (Carvana's `<id>_mask.gif`) is decoded by OpenCV's own GIF codec (OpenCV >= 4.11);
the palette is applied, so a black/white palette mask reads as 0/255.

Class-index masks stored as palette PNGs (VOC's SegmentationClass: the palette index is the class
id, 255 = boundary) need the indices, not the colours: `read_label_map` decodes the colours with
OpenCV and maps them back through the file's own PLTE chunk.

`write_png` is the one PNG writer of the data sets (synthetic sets, CT slices): atomic, so an
interrupted export never leaves a half-written slice.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from deploy.errors import DeployError
from deploy.io import atomic_write_bytes

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


class ImageReadError(DeployError):
    """An image or mask could not be read or decoded; `path` and `reason` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def _read(path: str | os.PathLike) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(path, e.strerror or str(e)) from None
    if data.size == 0:
        raise ImageReadError(path, "file is empty")
    return data


def _decode(path: str | os.PathLike, flags: int, data: np.ndarray | None = None) -> np.ndarray:
    data = _read(path) if data is None else data
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
    """(H, W, 3) uint8 RGB. Gray, alpha and 16-bit files are converted as `cv2.imread` would.
    The decoder writes RGB itself (OpenCV >= 4.11): a separate BGR->RGB pass cost ~20 % of a
    256x256 PNG decode, the largest per-image cost of `deploy run`."""
    return _decode(path, cv2.IMREAD_COLOR_RGB)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """(H, W) uint8 grayscale mask or matte (png/jpg/gif ...), values as stored (0/255, or 0..255 soft)."""
    return _decode(path, cv2.IMREAD_GRAYSCALE)


def read_gt(path: str | os.PathLike, binary: bool) -> np.ndarray:
    """A GT mask as scoring needs it: grey levels for a binary model (binarised later, UNET-ZOO),
    class ids for a multi-class one."""
    return read_mask(path) if binary else read_label_map(path)


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """(H, W) uint8 class ids: the palette index for a palette PNG, else the grey value."""
    data = _read(path)
    palette = png_palette(data.tobytes())
    if palette is None:
        return _decode(path, cv2.IMREAD_GRAYSCALE, data)
    rgb = _decode(path, cv2.IMREAD_COLOR_RGB, data).astype(np.uint32)
    colours = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    keys = (palette[:, 0].astype(np.uint32) << 16) | (palette[:, 1].astype(np.uint32) << 8) | palette[:, 2]
    order = np.argsort(keys, kind="stable")  # equal colours: the lowest index wins
    pos = np.minimum(np.searchsorted(keys[order], colours), len(keys) - 1)
    if not np.all(keys[order][pos] == colours):
        raise ImageReadError(path, "decoded colours are not in the PNG's palette")
    return order[pos].astype(np.uint8)


def png_palette(data: bytes) -> np.ndarray | None:
    """(N, 3) uint8 RGB palette of an indexed-colour PNG (colour type 3); None for any other file."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 33 or data[25] != 3:
        return None
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"PLTE":
            body = data[pos + 8:pos + 8 + length]
            return np.frombuffer(body[:len(body) // 3 * 3], np.uint8).reshape(-1, 3)
        if kind == b"IDAT":
            return None
        pos += 12 + length
    return None


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Encode (RGB or gray uint8) to PNG and replace `path` atomically."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, _PNG_PARAMS)
    if not ok:
        raise DeployError(f"PNG encoding failed for {path}")
    atomic_write_bytes(path, buf.tobytes())
