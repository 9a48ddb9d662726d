"""Preprocessing steps as typed values: the one vocabulary both the build YAML's `process_ops`
and the vdsp JSON are translated into, so one implementation (deploy.preprocess) runs both."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from deploy.config.reader import Node

NORMA_TYPES = ("EQUAL", "MINUSMEAN_DIVSTD", "DIV255_MINUSMEAN_DIVSTD", "DIV1275_MINUSONE", "DIV255")
MEAN_STD_TYPES = ("MINUSMEAN_DIVSTD", "DIV255_MINUSMEAN_DIVSTD")  # the ones that use mean and std
RESIZE_TYPES = ("BILINEAR_CV", "BILINEAR_PILLOW", "BILINEAR", "NEAREST_CV")
CVT_CODES = ("COLOR_RGB2BGR", "COLOR_BGR2RGB")


@dataclass(frozen=True)
class DecodeImage:
    """Read the file as 8-bit RGB (HWC)."""


@dataclass(frozen=True)
class CvtColor:
    code: str  # RGB2BGR and BGR2RGB are the same channel swap


@dataclass(frozen=True)
class Resize:
    size: tuple[int, int]  # (H, W)
    method: str = "BILINEAR_CV"


@dataclass(frozen=True)
class Pad:
    """Pad bottom/right with `value` so the image becomes square (keeps the top-left origin)."""
    value: int = 0


@dataclass(frozen=True)
class Crop:
    """Crop a (H, W) window at (y, x); `y`/`x` None means centred (CenterCrop)."""
    size: tuple[int, int]
    y: int | None = None
    x: int | None = None


@dataclass(frozen=True)
class Normalize:
    norma_type: str
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ToTensor:
    """HWC → CHW float32."""


Op = Union[DecodeImage, CvtColor, Resize, Pad, Crop, Normalize, ToTensor]


def _normalize(n: Node) -> Normalize:
    """Vendor semantics: mean/std on a 0–1 scale mean (x/255−m)/s; `div255: false` means
    (x−m)/s with 0–255 values; `norm_type: null` or no mean/std means x/255."""
    n.warn_unknown(("type", "mean", "std", "div255", "norm_type"))
    if n.has("norm_type"):
        raw = n.data["norm_type"]
        if raw is None or raw == "None":
            return Normalize("DIV255")
        norma = n.get("norm_type", str, choices=NORMA_TYPES)
        missing = [k for k in ("mean", "std") if norma in MEAN_STD_TYPES and n.data.get(k) is None]
        if missing:  # asked for by name: a missing mean or std is not silently 0 or 1
            raise n.error(f"required by norm_type {norma}", missing[0])
    elif n.data.get("mean") is None and n.data.get("std") is None:
        return Normalize("DIV255")
    else:
        norma = "DIV255_MINUSMEAN_DIVSTD" if n.get("div255", bool, True) else "MINUSMEAN_DIVSTD"
    mean = n.floats("mean", 3, (0.0, 0.0, 0.0))
    std = n.floats("std", 3, (1.0, 1.0, 1.0))
    if any(s == 0 for s in std):
        raise n.error(f"std must be non-zero, got {std}", "std")
    return Normalize(norma, mean, std)


def _size(n: Node, key: str) -> tuple[int, int]:
    size = n.ints(key)
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) <= 0:
        raise n.error(f"expected [H, W] with positive values, got {list(size)}", key)
    return size


def _resize(n: Node) -> Resize:
    n.warn_unknown(("type", "size", "interpolation"))
    return Resize(_size(n, "size"), n.get("interpolation", str, "BILINEAR_CV", RESIZE_TYPES))


def _pad(n: Node) -> Pad:
    n.warn_unknown(("type", "pad_to_square", "value"))
    if not n.get("pad_to_square", bool, True):
        raise n.error("only pad_to_square: true is supported", "pad_to_square")
    return Pad(n.get("value", int, 0))


def _plain(cls):
    def parse(n: Node):
        n.warn_unknown(("type",))
        return cls()
    return parse


def _cvt(n: Node) -> CvtColor:
    n.warn_unknown(("type", "code"))
    return CvtColor(n.get("code", str, choices=CVT_CODES))


def _center_crop(n: Node) -> Crop:
    n.warn_unknown(("type", "crop_size"))
    return Crop(_size(n, "crop_size"))


PARSERS = {
    "DecodeImage": _plain(DecodeImage),
    "CvtColor": _cvt,
    "Resize": _resize,
    "Pad": _pad,
    "CenterCrop": _center_crop,
    "Normalize": _normalize,
    "ToTensor": _plain(ToTensor),
}


def parse_process_ops(parent: Node, key: str) -> tuple[Op, ...]:
    """Parse a `process_ops`/`transform_ops` list; each entry is `{type: Name, ...params}`."""
    items = parent.get(key, list, [])
    ops = []
    for i, item in enumerate(items):
        n = Node(item, parent.file, f"{parent.key(key)}[{i}]")
        ops.append(PARSERS[n.get("type", str, choices=PARSERS)](n))
    return tuple(ops)
