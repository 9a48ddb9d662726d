"""`calibration.json`: thresholds kept beside the build so a rebuild skips calibration.

The file is reused only when its key matches: the ONNX model's SHA-256, the calibration set's
digest (deploy.io.sha256_files, the one mod.json records too: moving the folder keeps the cache,
editing or swapping an image invalidates it) and the calibration settings (mode and the knobs that
mode uses, the preprocessing ops). The file also lists each image (path relative to dataset.path,
SHA-256) for people. Written atomically (deploy.io); an unreadable or stale file is simply
recalibrated.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import onnx

from deploy.io import atomic_write_json, sha256_file
from deploy.quantize.calibrate import TensorRange

CACHE_FILE = "calibration.json"
FORMAT = 3  # 2: exact one-shot histograms (two passes); 3: kl_divergence = NVIDIA's published search


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
        out.append({"path": rel, "sha256": sha256_file(p)})
    return out


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
    data = {"key": key, "images": images,
            "tensors": {n: {"threshold": r.threshold, "min": r.min, "max": r.max} for n, r in ranges.items()}}
    return atomic_write_json(Path(cache_dir) / CACHE_FILE, data, indent=1)
