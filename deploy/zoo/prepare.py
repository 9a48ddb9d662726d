"""The "embedded default" model per zoo name: `<out_dir>/<name>-<size>.onnx`, trained here on the
synthetic set when it is not cached yet. Idempotent: an existing ONNX (+ its JSON sidecar) is reused;
an interrupted training resumes from its checkpoint in `<out_dir>/train/`.

Budgets (`PREPARE`) are sized for at most 10 minutes each on 2 idle CPU cores at full width in
fp32 (UNet++: ≈1.8 s per batch-8 step at 96×96 channels-last, so 300 steps; the other networks
scaled by their measured/MAC cost); with bf16 autocast (CPUs with AVX512-BF16/AMX) they take about
half that. On the synthetic sets that gives a usable UNet++ (held-out IoU ≈75) and UNet, but
R2U-Net and UNet 3+ (held-out IoU ≈63; ≈89 after 200 batch-8 steps) are under-trained in that
time (`make accuracy` trains longer). To train one longer, raise the budget: the training
continues from the cached checkpoint (only `steps` differs) and the ONNX is re-exported:
`deploy zoo prepare unet3p --steps 600 --force`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from deploy import catalogue
from deploy.io import atomic_write_json


@dataclass(frozen=True)
class Budget:
    steps: int
    batch: int = 8
    width: float = 1.0
    lr: float = 2e-3


PREPARE = {
    "unetpp": Budget(steps=300),                # ≈ 9.5 min idle (measured 15.7 min at load ≈4)
    "unetpp_nods": Budget(steps=300),
    "unet": Budget(steps=300),                  # ≈ 1.2–1.9 s/step
    "r2u_net": Budget(steps=75),                # ≈ 4.4× UNet++ per step (MACs; measured 16–19 s/step loaded)
    # 128×128, ≈ 5× a UNet++ batch-8 step; lr 3e-4: held-out IoU 62.9 vs 56.0 at 2e-3 (60 steps, bf16)
    "unet3p": Budget(steps=60, batch=4, lr=3e-4),
    "unet3p_ds": Budget(steps=60, batch=4, lr=3e-4),
    "unet3p_liver": Budget(steps=60, batch=4, lr=3e-4),  # the seed's lr 3e-4 (LiTS: Adam, batch 2)
    "unet_lits": Budget(steps=170),             # UNet at 128×128: ≈ 1.8× a 96×96 step
}


def onnx_path(out_dir: str | os.PathLike, name: str, size: int | None = None) -> Path:
    return Path(out_dir) / f"{name}-{size or catalogue.MODELS[name].size}.onnx"


def dataset_dir(name: str, data_root: str | os.PathLike, n: int = 200, seed: int = 0, log=print) -> Path:
    """The synthetic set `name` trains on under `data_root`, generated if missing."""
    from deploy.data.sets import synthetic_set
    return synthetic_set(catalogue.MODELS[name].dataset, data_root, n, seed, log).root


def prepare(name: str, out_dir: str | os.PathLike = "workspace/zoo", data_root: str | os.PathLike | None = None,
            *, steps: int | None = None, width: float | None = None, batch: int | None = None,
            lr: float | None = None, seed: int = 0, force: bool = False, progress: bool = True,
            precision: str = "auto", num_threads: int | None = 2, log=print) -> Path:
    """Return `<out_dir>/<name>-<size>.onnx`, generating data, training and exporting if missing."""
    from deploy.zoo.export import export_onnx
    from deploy.zoo.train import train

    size = catalogue.get(name).size
    out_dir = Path(out_dir)
    onnx_file = onnx_path(out_dir, name, size)
    meta_file = onnx_file.with_suffix(".json")
    if onnx_file.is_file() and not force:
        info = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        iou = info.get("metrics", {}).get("iou")
        log(f"{onnx_file}: cached" + (f" (held-out IoU {iou * 100:.2f})" if iou is not None else ""))
        return onnx_file
    budget = PREPARE[name]
    steps = budget.steps if steps is None else steps
    width = budget.width if width is None else width
    batch = budget.batch if batch is None else batch
    lr = budget.lr if lr is None else lr
    data = dataset_dir(name, Path(data_root) if data_root is not None else out_dir.parent / "data", log=log)
    data = data.resolve()
    t0 = time.perf_counter()
    ckpt_path = train(name, data, out_dir / "train", steps=steps, batch=batch, seed=seed, width=width,
                      lr=lr, size=size, progress=progress, precision=precision, num_threads=num_threads,
                      log=log)
    export_onnx(name, onnx_file, weights=ckpt_path, width=width, seed=seed)
    import torch
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    info = {"model": name, "onnx": onnx_file.name, "checkpoint": os.path.relpath(ckpt_path, out_dir),
            "data": str(data), "config": ckpt["config"], "metrics": ckpt["metrics"],
            "prepare_seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(meta_file, info)
    m = ckpt["metrics"]
    log(f"{onnx_file}: held-out IoU {m['iou'] * 100:.2f}, Dice {m['dice'] * 100:.2f} ({m['images']} images)")
    return onnx_file

