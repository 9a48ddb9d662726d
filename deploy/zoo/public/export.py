"""Public networks → ONNX with the seed zoo's conventions (deploy.zoo.export.trace: legacy exporter,
opset 17, input `input`, output `output`, symbolic batch `N`, BatchNorm folded). The graph is kept
as the exporter writes it (Shape/Gather/Resize-size subgraphs, Identity, Dropout-free eval mode):
preparing it is the compiler's job, and these graphs are what a user brings."""
from __future__ import annotations

from pathlib import Path

import onnx
import torch

from deploy.catalogue import public
from deploy.io import atomic_write_bytes
from deploy.zoo.export import set_metadata, trace
from deploy.zoo.public.models import create


def to_onnx(name: str, size: int | None = None, batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """`name` at `size`² (default: its benchmark size) with random weights from `seed`, checked."""
    row = public(name)
    size = row.size if size is None else size
    row.check_size(size)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    proto = trace(create(name, seed), x, ["output"])
    set_metadata(proto, {"model": name, "library": row.library, "arch": row.arch, "encoder": row.encoder or "",
                         "input_size": str(size), "preprocess": row.preprocess, "main_output": "output",
                         "weights": f"random (seed {seed})"})
    onnx.checker.check_model(proto)
    return proto


def export_onnx(name: str, out_path: str | Path, size: int | None = None, batch: int = 1, seed: int = 0) -> Path:
    """Write `to_onnx(name, size, batch, seed)` to `out_path` atomically."""
    return atomic_write_bytes(Path(out_path), to_onnx(name, size, batch, seed).SerializeToString())
