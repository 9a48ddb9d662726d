"""`Model(prefix)`: load a compiled model suite (`<prefix>.so` + `<prefix>.json`) and run it.

The prefix is the vendor runtime's `--model_prefix_path` (e.g. `workspace/unetpp/mod`): the
library is `<prefix>.so`, its description `<prefix>.json` (see deploy.runtime.suite for the
layout and schema). The library holds the weights as constants and one Relax VM entry function per batch
plan: `main` for a symbolic batch (any N), or `main_b<N>` per size when the build listed
`backend.compile.batch_sizes`.

`Model.run(x)` takes NCHW float32 (one array, or {input name: array}) and returns the outputs as
float32 NCHW numpy arrays, in the model's output order, for any batch size:
- symbolic batch: one call with the whole batch;
- per-size builds: an exact size runs as is; otherwise the batch is cut into chunks of the largest
  size, and a last partial chunk is zero-padded to the smallest size that holds it (the padding's
  outputs are dropped).
Repeated runs reuse the staged input tensors (one per input and shape, a few shapes kept), the VM
and its entry functions; only the outputs handed back are fresh arrays. One Model runs one batch
at a time (a lock); use one Model per thread for concurrent inference.
"""
from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from deploy.errors import DeployError, UnsupportedError
from deploy.runtime.suite import ArtifactError, check_library, existing_paths, read_meta
from deploy.tvm_env import host_lacks, import_tvm, llvm_host_cpu, resolve_threads, set_num_threads, threads_in_force

_STAGED_SHAPES = 4          # input shapes whose device tensors are kept for reuse


class TensorInfo(NamedTuple):
    """An input or output: name, shape (None for the batch dim when it is not fixed), dtype."""
    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("N" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"


_LOADED: dict[str, tuple[int, int]] = {}  # library path -> (inode, mtime) first loaded from it


def _loadable(so_path: Path) -> Path:
    """The path to hand to the loader. dlopen returns the library already loaded from the same
    path, even after a recompile replaced the file: a model rebuilt in this process would run its
    old code. A replaced file is therefore loaded through a hard link (or copy) of its own name."""
    path = str(so_path.resolve())
    st = os.stat(path)
    ident = (st.st_ino, st.st_mtime_ns)
    first = _LOADED.setdefault(path, ident)
    if first == ident:
        return Path(path)
    alias = Path(tempfile.gettempdir()) / f"segdeploy-{os.getpid()}-{st.st_ino}-{st.st_mtime_ns}-{so_path.name}"
    if not alias.exists():
        try:
            os.link(path, alias)
        except OSError:  # another filesystem: a copy
            shutil.copyfile(path, alias)
        atexit.register(alias.unlink, missing_ok=True)
    return alias


def _infos(items: Sequence[Mapping[str, Any]]) -> list[TensorInfo]:
    return [TensorInfo(str(t["name"]), tuple(None if d is None or isinstance(d, str) else int(d)
                                             for d in t["shape"]), str(t["dtype"])) for t in items]


@dataclass(frozen=True)
class SuiteInfo:
    """A suite's description, read and checked without loading its library: what a tool needs to
    validate its options (shapes, memory) before it starts workers or long work."""
    prefix: Path
    so_path: Path
    meta: dict
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    functions: dict


def describe_suite(prefix: str | Path) -> SuiteInfo:
    """The suite at `prefix` (both files present, the description readable and well-formed), or an
    ArtifactError naming mod.json and the field at fault."""
    so_path, meta_path = existing_paths(prefix)
    meta = read_meta(prefix)
    try:
        inputs, outputs = _infos(meta["inputs"]), _infos(meta["outputs"])
        functions = {("*" if k == "*" else int(k)): _function_name(v) for k, v in meta["batch"]["functions"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{meta_path}: malformed model description ({e!r}); recompile") from e
    for kind, infos in (("inputs", inputs), ("outputs", outputs)):
        problem = next((p for p in map(_tensor_problem, infos) if p), None) if infos else "none listed"
        if problem:
            raise ArtifactError(f"{meta_path}: {kind}: {problem}: not as `deploy compile` writes it; recompile")
    if not functions:
        raise ArtifactError(f"{meta_path}: batch.functions: none listed; recompile")
    return SuiteInfo(Path(prefix), so_path, meta, inputs, outputs, functions)


def _function_name(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"batch.functions: expected a function name, got {value!r}")
    return value


_MAX_ELEMENTS = 2**40  # per image: no segmentation tensor comes near it; past it the description is damaged


def _tensor_problem(info: TensorInfo) -> str | None:
    """Why a described tensor cannot be real (a hand-edited or damaged mod.json), or None."""
    dims = [d for d in info.shape[1:] if d is not None]  # None: symbolic
    if not info.shape or any(d < 1 for d in dims) or (info.shape[0] is not None and info.shape[0] < 1):
        return f"{info.name!r} has shape {list(info.shape)}"
    if math.prod(dims) > _MAX_ELEMENTS:
        return f"{info.name!r} has shape {list(info.shape)}, {math.prod(dims)} values per image"
    try:
        np.dtype(info.dtype)
    except TypeError:
        return f"{info.name!r} has dtype {info.dtype!r}"
    return None


class Model:
    """A compiled model suite loaded for inference (see the module doc).

    `num_threads`: CPU threads for this model's runs (default: TVM_NUM_THREADS, else every CPU this
    process may use). TVM's pool is per calling thread; the count is applied before each run.
    `device_id`: which GPU for a CUDA build.
    """

    def __init__(self, prefix: str | Path, num_threads: int | None = None, device_id: int = 0):
        self.prefix = Path(prefix)
        suite = describe_suite(self.prefix)
        self.so_path, self.meta = suite.so_path, suite.meta
        so_path = self.so_path
        self.inputs: list[TensorInfo] = suite.inputs
        self.outputs: list[TensorInfo] = suite.outputs
        functions = suite.functions
        if num_threads is not None and int(num_threads) < 1:
            raise DeployError(f"num_threads must be at least 1, got {num_threads}")
        self.num_threads = None if num_threads is None else int(num_threads)
        self.threads = resolve_threads(self.num_threads)  # in force for every run (what reports should quote)
        self.device_kind = str(self.meta.get("device", "cpu"))

        check_library(so_path, self.meta)
        tvm = import_tvm()
        self.device = self._open_device(tvm, device_id)
        try:
            lib = tvm.runtime.load_module(str(_loadable(so_path)))
        except Exception as e:  # tvm raises RuntimeError/TVMError with the loader's message
            raise ArtifactError(f"{so_path}: cannot load the compiled library: {e}") from e
        from tvm.runtime.vm import VirtualMachine
        self.vm = VirtualMachine(lib, self.device)
        try:
            self._functions = {k: self.vm[name] for k, name in functions.items()}
        except Exception as e:
            raise ArtifactError(f"{so_path}: entry function missing ({e}); the .so and .json do not "
                                f"belong together: recompile") from e
        self._symbolic = "*" in self._functions
        self._sizes = sorted(k for k in self._functions if k != "*")
        self._tensor = tvm.runtime.tensor
        self._empty = tvm.runtime.empty
        self._staged: OrderedDict[tuple, list] = OrderedDict()
        self._lock = threading.Lock()

    # ---- loading helpers -------------------------------------------------------------------

    def _open_device(self, tvm, device_id: int):
        if self.device_kind == "cpu":
            self._check_cpu_features()
            return tvm.cpu(0)
        if self.device_kind == "cuda":
            dev = tvm.cuda(device_id)
            if not dev.exist:
                raise ArtifactError(f"{self.prefix}: built for CUDA ({self.meta.get('target')}), but no CUDA "
                                    f"device {device_id} is available here (driver libcuda.so.1 and a GPU needed)")
            _register_cuda_jit()
            return dev
        raise UnsupportedError(f"{self.prefix}: device {self.device_kind!r} is not supported by this runtime")

    def _check_cpu_features(self) -> None:
        """Refuse a library built for ISA extensions this CPU lacks (it would die on SIGILL)."""
        lacking = host_lacks(self.meta.get("target_features") or ())
        if lacking:
            cpu = llvm_host_cpu()
            raise ArtifactError(f"{self.prefix}: built for {self.meta.get('target')}, which needs CPU features "
                                f"this CPU ({cpu}) lacks: {', '.join(lacking)}; recompile for this host")

    # ---- inference -------------------------------------------------------------------------

    @property
    def batch_sizes(self) -> list[int] | None:
        """The compiled batch sizes, or None when any batch runs in one call."""
        return None if self._symbolic else list(self._sizes)

    def run(self, x: np.ndarray | Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Infer. `x`: an NCHW float32 array (single-input models), {input name: array}, or arrays
        in input order. Returns float32 arrays, one per output, batch dim first."""
        arrays = self._arrange(x)
        n = arrays[0].shape[0]
        with self._lock:
            if self.device_kind == "cpu" and threads_in_force() != self.threads:
                set_num_threads(self.threads)
            if self._symbolic:
                return self._call(self._functions["*"], arrays)
            if n in self._functions:
                return self._call(self._functions[n], arrays)
            parts = []
            for start, stop, size in self.plan(n):
                chunk = [a[start:stop] for a in arrays]
                if stop - start < size:
                    chunk = [np.concatenate([c, np.zeros((size - len(c),) + c.shape[1:], c.dtype)]) for c in chunk]
                parts.append([o[:stop - start] for o in self._call(self._functions[size], chunk)])
            return [np.concatenate(outs) for outs in zip(*parts)]

    __call__ = run

    def plan(self, n: int) -> list[tuple[int, int, int]]:
        """How a batch of `n` runs: [(start, stop, compiled size), ...] (see the module doc)."""
        if self._symbolic:
            return [(0, n, n)]
        if n in self._functions:
            return [(0, n, n)]
        big, out, start = self._sizes[-1], [], 0
        while n - start > big:
            out.append((start, start + big, big))
            start += big
        rest = n - start
        out.append((start, n, min(s for s in self._sizes if s >= rest)))
        return out

    def _arrange(self, x: Any) -> list[np.ndarray]:
        infos = self.inputs
        listing = "; ".join(i.describe() for i in infos)
        if isinstance(x, Mapping):
            unknown = [k for k in x if k not in {i.name for i in infos}]
            if unknown:
                raise DeployError(f"unknown input name(s) {', '.join(map(repr, unknown))}; the model's inputs: "
                                  f"{listing}")
            missing = [i.name for i in infos if i.name not in x]
            if missing:
                raise DeployError(f"missing input(s) {', '.join(map(repr, missing))}; the model's inputs: {listing}")
            values = [x[i.name] for i in infos]
        elif isinstance(x, (list, tuple)) and x and not np.isscalar(x[0]) and np.ndim(x[0]) > 0 and len(infos) > 1:
            if len(x) != len(infos):
                raise DeployError(f"got {len(x)} arrays for {len(infos)} inputs; the model's inputs: {listing}")
            values = list(x)
        else:
            if len(infos) != 1:
                raise DeployError(f"this model has {len(infos)} inputs: pass {{name: array}}; the model's inputs: "
                                  f"{listing}")
            values = [x]
        arrays = []
        for info, v in zip(infos, values):
            a = np.asarray(v)
            if a.dtype.kind not in "fc" and info.dtype.startswith("float"):
                raise DeployError(f"input {info.name!r}: expected preprocessed {info.dtype} data, got {a.dtype} "
                                  f"(run the preprocessing first)")
            if a.ndim != len(info.shape):
                raise DeployError(f"input {info.name!r}: expected {len(info.shape)} dims "
                                  f"[{', '.join('N' if d is None else str(d) for d in info.shape)}] (NCHW), "
                                  f"got shape {tuple(a.shape)}" + ("; add a batch dim (x[None])"
                                                                   if a.ndim == len(info.shape) - 1 else ""))
            want = info.shape[1:]
            got = tuple(a.shape[1:])
            if any(w is not None and w != g for w, g in zip(want, got)):
                names = "C, H, W" if len(want) == 3 else "dims after the batch"
                raise DeployError(f"input {info.name!r}: expected {names} = {', '.join(map(str, want))}, "
                                  f"got {', '.join(map(str, got))} (shape {tuple(a.shape)})")
            if info.shape[0] is not None and a.shape[0] != info.shape[0]:
                raise DeployError(f"input {info.name!r}: compiled for batch {info.shape[0]}, got {a.shape[0]}")
            arrays.append(np.ascontiguousarray(a, dtype=info.dtype))
        n = arrays[0].shape[0]
        if n < 1:
            raise DeployError("empty batch: the inputs have batch size 0")
        if any(a.shape[0] != n for a in arrays):
            raise DeployError(f"inputs disagree on the batch size: {[a.shape[0] for a in arrays]}")
        return arrays

    def _call(self, fn, arrays: list[np.ndarray]) -> list[np.ndarray]:
        key = tuple(a.shape for a in arrays)
        staged = self._staged.get(key)
        if staged is None:
            staged = [self._empty(a.shape, str(a.dtype), self.device) for a in arrays]
            self._staged[key] = staged
            if len(self._staged) > _STAGED_SHAPES:
                self._staged.popitem(last=False)
        else:
            self._staged.move_to_end(key)
        for t, a in zip(staged, arrays):
            t.copyfrom(a)
        result = fn(*staged)
        outs = list(result) if not hasattr(result, "numpy") else [result]
        if len(outs) != len(self.outputs):
            raise ArtifactError(f"{self.prefix}: the library returned {len(outs)} outputs, its description lists "
                                f"{len(self.outputs)}: recompile")
        return [np.asarray(o.numpy(), dtype=np.float32) for o in outs]

    def __repr__(self) -> str:
        ins = ", ".join(i.describe() for i in self.inputs)
        outs = ", ".join(o.describe() for o in self.outputs)
        return f"Model({str(self.prefix)!r}, {self.meta.get('dtype')}, inputs: {ins}; outputs: {outs})"


def _register_cuda_jit() -> None:
    """CUDA libraries carry kernel source, compiled when loaded: register TVM's compile callback
    and use nvcc when NVRTC (the cuda-bindings package) is not installed."""
    import importlib
    import importlib.util
    import os
    import shutil
    try:
        has_nvrtc = importlib.util.find_spec("cuda.bindings") is not None
    except ImportError:
        has_nvrtc = False
    if "TVM_CUDA_COMPILE_MODE" not in os.environ and not has_nvrtc:
        if shutil.which("nvcc") is None:
            raise ArtifactError("a CUDA model is compiled when loaded, with NVRTC (pip install cuda-bindings) "
                                "or nvcc (on PATH); neither is available here")
        os.environ["TVM_CUDA_COMPILE_MODE"] = "nvcc"
    importlib.import_module("tvm.support.nvcc")  # registers tvm_callback_cuda_compile
