"""One npz input's work in `deploy perf --datalist` (the vendor's vamp accuracy mode), shared by the local
route and the Ray route (deploy.tools.ray_run) so that both write byte-identical `output_NNNNNN.npz`:
`NpzJob.load` reads an input npz (and preprocesses its uint8 CHW image with the vdsp op), `NpzJob.render`
encodes the outputs as npz bytes, and `NpzJob.write` puts them under the line's output name. Rendering
returns bytes instead of writing them so that a cluster worker can render and the driver write.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import DeployError
from deploy.io import atomic_write_bytes
from deploy.tools import files


@dataclass(frozen=True)
class NpzInput:
    """Line `index` of the datalist: the input npz at `path`."""
    index: int
    path: Path


@dataclass(frozen=True)
class NpzResult:
    """An input's outputs as npz bytes (None when it was skipped), or why it was skipped."""
    index: int
    data: bytes | None = None
    error: str | None = None


def output_path(out_dir: Path, index: int) -> Path:
    """Line i of the datalist → output_{i:06d}.npz, the vendor's name."""
    return Path(out_dir) / f"output_{index:06d}.npz"


@dataclass(frozen=True)
class NpzJob:
    """What is done to every input npz (plain data, so it can be shipped to cluster workers)."""
    inputs: tuple[tuple[int, str], ...]  # (rank, dtype) of each model input
    pre: Any = None                      # deploy.preprocess.Preprocessor: input_0 is then a uint8 CHW image

    @classmethod
    def of(cls, model: Any, pre: Any = None) -> "NpzJob":
        return cls(tuple((len(i.shape), str(np.dtype(i.dtype))) for i in model.inputs), pre)

    def load(self, item: NpzInput) -> tuple[tuple[np.ndarray, ...], None]:
        from deploy.preprocess import planar_to_hwc
        arrays = files.read_npz(item.path, (f"input_{k}" for k in range(len(self.inputs))), "input npz")
        xs = []
        for k, (a, (rank, dtype)) in enumerate(zip(arrays, self.inputs)):
            if k == 0 and self.pre is not None:
                if a.ndim != 3 or a.shape[0] != 3 or a.dtype != np.uint8:
                    raise DeployError(f"{item.path}: input_0 must be uint8 CHW RGB (image2npz), "
                                      f"got {a.dtype} {list(a.shape)}")
                xs.append(self.pre.from_rgb(planar_to_hwc(a)))
            else:
                if a.ndim == rank and a.shape[0] == 1:
                    a = a[0]  # stored with its batch dim
                xs.append(np.asarray(a, dtype=np.dtype(dtype)))
        return tuple(xs), None

    def render(self, item: NpzInput, _ctx: None, outs: list[np.ndarray]) -> NpzResult:
        return NpzResult(item.index, files.npz_bytes({f"output_{k}": o for k, o in enumerate(outs)}))

    def write(self, out_dir: Path, item: NpzInput, result: NpzResult) -> NpzResult:
        """The rendered outputs under the line's name (atomically); returns the result without its bytes."""
        if result.data is not None:
            atomic_write_bytes(output_path(out_dir, item.index), result.data)
        return NpzResult(result.index, error=result.error)

    def label(self, item: NpzInput) -> str:
        return str(item.path)

    def run_images(self, infer: Callable[[Sequence[np.ndarray]], list[np.ndarray]], items: Iterable[NpzInput], *,
                   batch: int, workers: int, save_dir: Path | None = None) -> Iterator[NpzResult]:
        """Each input's NpzResult, in order, through the runstream (batched inference, `workers` reader and
        finisher threads); with `save_dir` the finisher threads write the files there. An unreadable input
        comes back with its error, never inferred."""
        from deploy.runtime.stream import Stream

        def finish(item: NpzInput, ctx: None, outs: list[np.ndarray]) -> NpzResult:
            result = self.render(item, ctx, outs)
            return result if save_dir is None else self.write(save_dir, item, result)

        stream = Stream(infer, self.load, finish, batch=batch, workers=workers, skip=(DeployError,))
        for done in stream.run(items):
            yield done.value if done.error is None else NpzResult(done.item.index, error=str(done.error))
