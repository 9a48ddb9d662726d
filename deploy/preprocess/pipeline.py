"""One preprocessing implementation behind both front doors (build YAML `process_ops` and the
vdsp JSON): both are translated into the same op values (deploy.config.ops) and run here, so a
difference between the two can only come from the configs, never from two code paths."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from deploy import catalogue
from deploy.config.ops import CvtColor, Crop, DecodeImage, Normalize, Op, Pad, Resize, ToTensor
from deploy.config.vdsp import OP_CROP, VdspConfig
from deploy.errors import ConfigError, DeployError
from deploy.host import check_memory
from deploy.preprocess.resize import resize


def _cvt(img: np.ndarray, op: CvtColor) -> np.ndarray:
    return img[..., ::-1]  # RGB2BGR and BGR2RGB are the same plane swap


def _resize(img: np.ndarray, op: Resize) -> np.ndarray:
    return resize(img, op.size, op.method)


def _pad(img: np.ndarray, op: Pad) -> np.ndarray:
    h, w = img.shape[:2]
    side = max(h, w)
    return np.pad(img, ((0, side - h), (0, side - w), (0, 0)), constant_values=op.value)


def _crop(img: np.ndarray, op: Crop) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = op.size
    y = (h - ch) // 2 if op.y is None else op.y
    x = (w - cw) // 2 if op.x is None else op.x
    if y < 0 or x < 0 or y + ch > h or x + cw > w:
        raise DeployError(f"crop {ch}x{cw} at y={y}, x={x} does not fit a {h}x{w} image")
    return img[y:y + ch, x:x + cw]


def _normalize(img: np.ndarray, op: Normalize) -> np.ndarray:
    x = img.astype(np.float32)
    mean, std = np.float32(op.mean), np.float32(op.std)
    if op.norma_type == "EQUAL":
        return x
    if op.norma_type == "DIV255":
        return x / np.float32(255)
    if op.norma_type == "DIV1275_MINUSONE":
        return x / np.float32(127.5) - np.float32(1)
    if op.norma_type == "DIV255_MINUSMEAN_DIVSTD":
        return (x / np.float32(255) - mean) / std
    return (x - mean) / std  # MINUSMEAN_DIVSTD


def _to_tensor(img: np.ndarray, op: ToTensor) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


STEPS: dict[type, Callable[[np.ndarray, Op], np.ndarray]] = {
    CvtColor: _cvt, Resize: _resize, Pad: _pad, Crop: _crop, Normalize: _normalize, ToTensor: _to_tensor,
}


class Preprocessor:
    """Turns one decoded image (HWC uint8, channels in `input_order`) into a CHW float32 tensor."""

    def __init__(self, ops: Sequence[Op], input_order: str = "RGB"):
        ops = [op for op in ops if not isinstance(op, DecodeImage)]
        if not ops or not isinstance(ops[-1], ToTensor):
            ops.append(ToTensor())  # the model always takes CHW float32
        self.ops, self.input_order = tuple(ops), input_order
        for op in self.ops:
            if isinstance(op, (Resize, Crop)):
                h, w = op.size  # the float32 tensor and two working copies of it, per image
                check_memory(3 * h * w * 4 * 3, f"preprocessing to {h}x{w} ({type(op).__name__})",
                             "check the Resize/Crop size (vdsp OimageHeight/OimageWidth, ResizeHeight/ResizeWidth)")

    @classmethod
    def from_process_ops(cls, ops: Sequence[Op]) -> "Preprocessor":
        """Build YAML ops: DecodeImage gives RGB, so the input order is RGB."""
        if any(isinstance(op, DecodeImage) for op in ops[1:]):
            raise ConfigError("process_ops: DecodeImage must be the first op")
        return cls(ops)

    @classmethod
    def from_vdsp(cls, cfg: VdspConfig) -> "Preprocessor":
        """The fused device op in its fixed order: resize (then crop) → colour swap → normalize → CHW."""
        ops: list[Op] = []
        if cfg.op_type == OP_CROP:
            ops += [Resize(cfg.resize_size, cfg.resize_type), Crop(cfg.out_size, y=cfg.crop_xy[1], x=cfg.crop_xy[0])]
        else:
            ops.append(Resize(cfg.out_size, cfg.resize_type))
        if cfg.color_cvt != "NO_CHANGE":
            ops.append(CvtColor(cfg.color_cvt))
        ops += [Normalize(cfg.norma_type, cfg.mean, cfg.std), ToTensor()]
        return cls(ops, input_order="BGR" if cfg.image_format == "BGR888" else "RGB")

    @classmethod
    def for_model(cls, name: str, size: int | None = None) -> "Preprocessor":
        """A seed model's own preprocessing (its deploy.catalogue recipe) at `size` (default: its input
        size): what the zoo trains it with, and what its build YAML and vdsp JSON must reproduce."""
        m = catalogue.get(name)
        size = m.size if size is None else size
        swap = [CvtColor("COLOR_RGB2BGR")] if m.channels == "BGR" else []
        return cls([Resize((size, size), "BILINEAR_CV"), *swap, Normalize(*m.normalize), ToTensor()])

    @property
    def out_size(self) -> tuple[int, int] | None:
        """(H, W) of the produced tensor when the ops fix it (last Resize/Crop), else None."""
        sized = [op for op in self.ops if isinstance(op, (Resize, Crop))]
        return sized[-1].size if sized else None

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if img.ndim != 3 or img.shape[2] != 3:
            raise DeployError(f"expected an HWC image with 3 channels, got shape {img.shape}")
        for op in self.ops:
            img = STEPS[type(op)](img, op)
        return img

    def from_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """Preprocess a decoded RGB image, first putting it in the channel order the spec expects."""
        return self(rgb[..., ::-1] if self.input_order == "BGR" else rgb)

    def load(self, path: str | Path) -> np.ndarray:
        """Decode a file (RGB) and preprocess it; the decode raises ImageReadError naming the path."""
        from deploy.data.image import read_image_rgb
        return self.from_rgb(read_image_rgb(path))


def planar_to_hwc(planar: np.ndarray) -> np.ndarray:
    """The vendor runtime's input is planar (3, H, W) uint8 at the image's own size."""
    return np.ascontiguousarray(planar.transpose(1, 2, 0))
