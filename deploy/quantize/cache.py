"""`calibration.json`: thresholds kept beside the build so a rebuild skips calibration.

The file is reused only when its key matches: the ONNX model's SHA-256, the calibration set's
SHA-256 (over each image's path relative to dataset.path and the SHA-256 of its bytes, so moving
the folder keeps the cache and editing or swapping an image invalidates it) and the calibration
settings (mode and the knobs that mode uses, the preprocessing ops). Written atomically (a temp
file in the same folder, then os.replace); an unreadable or stale file is simply recalibrated.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import onnx

from deploy.quantize.calibrate import TensorRange

CACHE_FILE = "calibration.json"
FORMAT = 1


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_sha256(model: onnx.ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def image_entries(images: list[Path], root: Path | None) -> list[dict]:
    """[{path, sha256}] with paths relative to `root` where possible (posix)."""
    out = []
    for p in images:
        try:
            rel = Path(p).resolve().relative_to(Path(root).resolve()).as_posix() if root else str(p)
        except ValueError:
            rel = str(p)
        out.append({"path": rel, "sha256": file_sha256(p)})
    return out


def images_sha256(entries: list[dict]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def load(cache_dir: Path, key: dict, tensors: list[str]) -> dict[str, TensorRange] | None:
    """The cached ranges when the file exists, its key equals `key` and it covers `tensors`."""
    path = Path(cache_dir) / CACHE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return None
        ranges = {name: TensorRange(float(v["threshold"]), float(v["min"]), float(v["max"]))
                  for name, v in data["tensors"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        warnings.warn(f"{path}: unreadable calibration cache ({e}); recalibrating", stacklevel=2)
        return None
    return ranges if set(tensors) <= set(ranges) else None


def save(cache_dir: Path, key: dict, images: list[dict], ranges: dict[str, TensorRange]) -> Path:
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = {"key": key, "images": images,
            "tensors": {n: {"threshold": r.threshold, "min": r.min, "max": r.max} for n, r in ranges.items()}}
    path = cache_dir / CACHE_FILE
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".calibration.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
