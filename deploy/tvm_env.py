"""Importing TVM for the compile and run paths (without torch, with a usable thread pool), and
TVM's view of this host: the one home of both, below the compiler and the runtime that use them.

- `import tvm` pulls in torch whenever it is installed (tvm_ffi tries `import torch` eagerly for
  DLPack interop), which doubles the import time (~2 s → ~4 s) although nothing here exchanges
  torch tensors with TVM. `import_tvm()` imports TVM with torch masked when torch is not already
  loaded, then unmasks it: a later `import torch` in the same process works as usual; only
  tvm_ffi's automatic torch-tensor conversion stays off in that process (set
  SEGDEPLOY_TVM_WITH_TORCH=1 to import TVM the stock way).
- TVM's CPU thread pool sizes itself, when first used in a thread, from TVM_NUM_THREADS or else
  half the logical CPUs (it assumes hyper-threading: a 2-vCPU machine gets 1 thread). The pool
  can shrink later (`runtime.config_threadpool`) but never grow past its initial size, so
  `import_tvm()` sets TVM_NUM_THREADS to the CPUs this process may use when it is unset.
  The pool is per calling thread: `set_num_threads` applies to the thread that calls it.
- TVM pins each pool's worker threads to cores (TVM_BIND_THREADS, default on). That assumes the
  model has the cores to itself; `deploy run` decodes and writes on the same cores, and a pinned
  worker preempted by a decode cannot move to the other core, so the pool's other threads wait at
  the next barrier until the decode ends. `import_tvm()` turns pinning off when TVM_BIND_THREADS is
  unset (set it to 1 to pin). Measured on 2 cores, UNet++ fp32 batch 8: runstream/model-only rose
  in each of 5 paired process runs (by 2-8 points); model-only throughput alone did not change
  (batch 8 and 1, within the ±4 % noise).
- An idle pool worker spins before it sleeps: TVM_THREAD_POOL_SPIN_COUNT `sched_yield` calls,
  300000 by default, measured as 0.15-0.18 s of CPU burnt after every inference, taken from
  whatever else runs (the stream's decoding while the model waits for a batch; the first stream
  batch after a `deploy perf` run in the same process). `import_tvm()` sets 10000 when unset
  (~3 ms of spinning; 0.00-0.01 s measured): still far longer than the gaps between the operators
  of one inference or between back-to-back batches, and model-only throughput did not change
  (UNet++ batch 8, UNet batch 1).
- LLVM names this CPU and its features itself (`llvm_host_cpu`, `host_lacks`); those are what the
  compiled code is checked against, next to the OS's view in deploy.host.
"""
from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Iterable
from types import ModuleType

from deploy.host import usable_cores

_lock = threading.Lock()
_local = threading.local()


def import_tvm() -> ModuleType:
    """`import tvm`, keeping torch out unless it is already imported (see the module doc)."""
    # before any TVM thread pool exists (pools are created lazily, so also after `import tvm`)
    os.environ.setdefault("TVM_NUM_THREADS", str(usable_cores()))
    os.environ.setdefault("TVM_BIND_THREADS", "0")
    os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "10000")
    return import_without_torch("tvm")


def import_without_torch(name: str) -> ModuleType:
    """Import `name` with torch masked (unless torch is already loaded): tvm_ffi and onnxsim both
    import torch opportunistically, ~2-3 s each on the compile and run paths that never use it."""
    if name in sys.modules:
        return sys.modules[name]
    with _lock:
        mask = "torch" not in sys.modules and os.environ.get("SEGDEPLOY_TVM_WITH_TORCH", "0") != "1"
        if mask:
            sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` → ImportError
        try:
            return importlib.import_module(name)
        finally:
            if mask and "torch" in sys.modules and sys.modules["torch"] is None:
                del sys.modules["torch"]


def max_threads() -> int:
    """The most threads a TVM pool can use in this process (TVM_NUM_THREADS, capped by the CPUs)."""
    try:
        wanted = int(os.environ.get("TVM_NUM_THREADS", "0"))
    except ValueError:
        wanted = 0
    return max(1, min(wanted, usable_cores())) if wanted > 0 else usable_cores()


def resolve_threads(n: int | None) -> int:
    """The thread count a request means here: None → the maximum; capped to [1, max_threads()]."""
    return max_threads() if n is None else max(1, min(int(n), max_threads()))


def set_num_threads(n: int | None) -> int:
    """Use `n` threads (None: the maximum) for TVM work issued from the calling thread; returns
    the count in force. Cheap when unchanged (remembered per thread)."""
    n = resolve_threads(n)
    if getattr(_local, "threads", None) != n:
        tvm = import_tvm()
        tvm.get_global_func("runtime.config_threadpool")(1, n)
        _local.threads = n
        _local.actual = int(tvm.get_global_func("runtime.NumThreads")())
    return _local.actual


def threads_in_force() -> int | None:
    """What set_num_threads last set in the calling thread (None: never called here)."""
    return getattr(_local, "threads", None)


def llvm_host_cpu() -> str:
    """LLVM's name for this CPU ("znver5", "sapphirerapids", ...; "generic" when it does not know it)."""
    return str(import_tvm().get_global_func("tvm.codegen.llvm.GetHostCPUName")())


def host_lacks(features: Iterable[str]) -> list[str]:
    """Of the LLVM `features` this host's LLVM knows, those the host does not have (sorted): code
    needing any of them would die on SIGILL here."""
    features = set(features)
    if not features:
        return []
    host = import_tvm().get_global_func("tvm.codegen.llvm.GetHostCPUFeatures")()
    known = {str(k) for k in host.keys()}
    have = {str(k) for k, v in host.items() if bool(v)}
    return sorted((features & known) - have)
