"""The run folders a report is built from (`deploy run --save_dir`, `deploy eval --draw_dir`) and
the per-image comparison of several runs of the same images (fp32 against int8, say).

A run folder holds results.csv (per-image scores), summary.json (means, throughput, where the
images and masks were read) and, from `deploy run`, run.json (model, preprocessing); the model's
mod.json (target, precision) is read from the prefix the summary names while it still exists."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deploy.errors import DeployError
from deploy.tools.report import RESULTS, Row, read_rows

DROP_STEPS = (0.01, 0.05, 0.10)  # IoU drops the summary counts


@dataclass
class Run:
    """One run folder, read."""
    path: Path
    label: str
    rows: dict[str, Row]
    summary: dict
    settings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    image_dir: Path | None = None
    mask_dir: Path | None = None

    @property
    def dtype(self) -> str:
        return self.meta.get("dtype") or (self.settings.get("model") or {}).get("dtype") or "?"

    def mask_file(self, image: str) -> Path | None:
        """The predicted mask of `image` (0/255 or class ids) as the run wrote it, if it did."""
        p = self.path / f"{Path(image).stem}.png"
        return p if p.is_file() else None

    def metadata(self) -> dict[str, str]:
        """What the report shows about the run, as text."""
        s, model = self.summary, self.settings.get("model") or {}
        target = self.meta.get("target")
        vdsp = (self.settings.get("vdsp_params") or {}).get("OpConfig") or {}
        pre = ", ".join(f"{k} {vdsp[k]}" for k in ("OimageWidth", "OimageHeight", "NormaType", "ColorCvtCode",
                                                    "ResizeType", "Mean", "Std") if k in vdsp)
        tput = s.get("throughput_ips")
        return {
            "folder": str(self.path), "suite": str(model.get("name") or self.meta.get("name") or s.get("model", "?")),
            "precision": self.dtype, "target": _target(target),
            "preprocessing": pre or str(s.get("vdsp_params", "unknown")),
            "throughput": f"{tput:.2f} images/s (batch {s.get('batch', '?')})" if tput else "not measured",
            "mean IoU": _num(s.get("mean_iou")), "mean Dice": _num(s.get("mean_dice")),
            "images": f"{s.get('scored', 0)} scored of {s.get('images', len(self.rows))}",
            "threshold": str(s.get("threshold", "?")),
        }


def _target(target) -> str:
    if not isinstance(target, dict):
        return "unknown (the model's mod.json is not where summary.json says)"
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in target.items()
                    if v not in ("", [], None))


def _num(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _model_meta(prefix) -> dict:
    """The model's mod.json (target, precision); {} once the model is gone: the report still shows the run."""
    from deploy.runtime import read_meta
    if not prefix:
        return {}
    try:
        return read_meta(prefix)
    except (DeployError, OSError):
        return {}


def load_run(path, image_dir=None, mask_dir=None) -> Run:
    """Read a run folder; `image_dir`/`mask_dir` override the folders its summary names."""
    path = Path(path)
    if not (path / RESULTS).is_file():
        raise DeployError(f"{path}: no {RESULTS}; pass a folder written by `deploy run --save_dir` "
                          "or `deploy eval --draw_dir`")
    summary = _read_json(path / "summary.json")
    settings = _read_json(path / "run.json")
    images = image_dir or summary.get("image_dir")
    masks = mask_dir or summary.get("mask_dir")
    return Run(path, path.name, read_rows(path / RESULTS), summary, settings, _model_meta(summary.get("model")),
               Path(images) if images else None, Path(masks) if masks else None)


def label_runs(runs: list[Run]) -> None:
    """Each run's label: its precision where those differ, else its folder name (made unique)."""
    dtypes = [r.dtype for r in runs]
    for r in runs:
        r.label = r.dtype if dtypes.count(r.dtype) == 1 and r.dtype != "?" else r.path.name
    seen: dict[str, int] = {}
    for r in runs:
        n = seen[r.label] = seen.get(r.label, 0) + 1
        if n > 1:
            r.label = f"{r.label} #{n}"


def read_plane(path: Path | None) -> np.ndarray | None:
    """A mask image's first plane as stored; None when absent or unreadable (the report shows a gap)."""
    if path is None:
        return None
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        return None
    return m[..., 0] if m.ndim == 3 else m


def read_labels(path: Path | None) -> np.ndarray | None:
    """A mask PNG as class labels: 0/255 → 0/1, class ids as they are; None when absent or unreadable."""
    m = read_plane(path)
    if m is None:
        return None
    return (m > 0).astype(np.uint8) if set(np.unique(m).tolist()) <= {0, 255} else m.astype(np.uint8)


def disagreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool (H, W) of `a`'s size: pixels whose label differs (b resized nearest when sizes differ)."""
    if b.shape != a.shape:
        b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_NEAREST)
    return a != b


@dataclass
class Comparison:
    """Every other run against the base (the first) over the images all of them scored."""
    base: Run
    others: list[Run]
    images: list[str]
    delta: dict[str, dict[str, float]]     # run label → image → IoU(run) - IoU(base)
    differ: dict[str, dict[str, float]]    # run label → image → fraction of mask pixels that differ

    def worst(self, n: int) -> list[str]:
        """The `n` images whose IoU dropped most in any run, worst first."""
        key = {i: min(self.delta[r.label][i] for r in self.others) for i in self.images}
        return sorted(self.images, key=lambda i: (key[i], i))[:n]

    def drops(self) -> list[dict]:
        """Per other run: mean IoU of both, the mean/median/worst change, how many images dropped."""
        out = []
        for r in self.others:
            d = self.delta[r.label]
            vals = np.array([d[i] for i in self.images])
            worst = min(self.images, key=lambda i: (d[i], i))
            diff = [self.differ[r.label][i] for i in self.images if i in self.differ[r.label]]
            out.append({
                "run": r.label, "images": len(vals),
                "base_mean_iou": math.fsum(self.base.rows[i].iou for i in self.images) / len(vals),
                "mean_iou": math.fsum(r.rows[i].iou for i in self.images) / len(vals),
                "mean_delta": float(vals.mean()), "median_delta": float(np.median(vals)),
                "worst_image": worst, "worst_delta": d[worst],
                **{f"dropped_{s:g}": int((vals < -s).sum()) for s in DROP_STEPS},
                "improved_0.01": int((vals > 0.01).sum()),
                "mean_pixels_differ": float(np.mean(diff)) if diff else None,
                "images_differ": sum(1 for v in diff if v > 0),
            })
        return out


def compare(runs: list[Run]) -> Comparison | None:
    """The comparison of runs[1:] with runs[0]; None for one run or when they share no scored image."""
    if len(runs) < 2:
        return None
    base, others = runs[0], runs[1:]
    images = sorted(i for i, row in base.rows.items()
                    if row.iou is not None and all(i in r.rows and r.rows[i].iou is not None for r in others))
    if not images:
        return None
    delta = {r.label: {i: r.rows[i].iou - base.rows[i].iou for i in images} for r in others}
    differ: dict[str, dict[str, float]] = {r.label: {} for r in others}
    for i in images:
        a = read_labels(base.mask_file(i))
        if a is None:
            continue
        for r in others:
            b = read_labels(r.mask_file(i))
            if b is not None:
                differ[r.label][i] = float(disagreement(a, b).mean())
    return Comparison(base, others, images, delta, differ)
