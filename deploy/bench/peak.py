"""The host's measured peak arithmetic throughput per precision, the yardstick for "conv layers at
N % of peak". A FLOP/cycle table per vendor guesses wrong (Zen 4 splits a 512-bit FMA over two
256-bit pipes, Zen 5 does not) and a BLAS sgemm measures the BLAS (OpenBLAS's Haswell kernel
under OPENBLAS_CORETYPE=Haswell), so each precision's dot-product instruction is timed instead:
a tiny C kernel, compiled at run time with the system C compiler, keeps independent accumulators
in registers (no memory traffic) and runs on every usable core at once (one Python thread each;
ctypes releases the GIL during the call).

Inputs are zeros: x86 vector units take the same time for any operand, and zeros never produce
denormals (whose microcode assists would slow the loop)."""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.host import has_flags, usable_cores


@dataclass(frozen=True)
class Kernel:
    precision: str       # the build precision it is the peak of: fp32, fp16, bf16, int8
    instruction: str     # what one step of one accumulator executes
    flags: tuple         # /proc/cpuinfo flags the instruction needs
    target: str          # the C compiler's target attribute for them
    vector: str          # accumulator type
    zero: str            # its zero
    operand: str         # multiplicand type
    load: str            # loads an operand vector from the pointer p
    step: str            # one multiply-accumulate into {acc} from the operands a and b
    ops: int             # arithmetic operations per step (a multiply-add counts 2)
    accumulators: int    # independent chains: enough to cover latency × pipes, few enough for the registers


_ZMM_F = "_mm512_loadu_ps((const float *)p)"
_ZMM_I = "_mm512_loadu_si512(p)"
# Widest first: the first kernel per precision whose flags the host has is its peak.
KERNELS = (
    Kernel("fp32", "vfmadd231ps zmm", ("avx512f",), "avx512f", "__m512", "_mm512_setzero_ps()", "__m512", _ZMM_F,
           "_mm512_fmadd_ps(a, b, {acc})", 32, 16),
    Kernel("fp32", "vfmadd231ps ymm", ("avx2", "fma"), "avx2,fma", "__m256", "_mm256_setzero_ps()", "__m256",
           "_mm256_loadu_ps((const float *)p)", "_mm256_fmadd_ps(a, b, {acc})", 16, 12),
    Kernel("fp16", "vfmadd231ph zmm", ("avx512_fp16",), "avx512fp16,avx512f", "__m512h", "_mm512_setzero_ph()",
           "__m512h", "_mm512_loadu_ph(p)", "_mm512_fmadd_ph(a, b, {acc})", 64, 16),
    Kernel("bf16", "vdpbf16ps zmm", ("avx512_bf16",), "avx512bf16,avx512f", "__m512", "_mm512_setzero_ps()",
           "__m512bh", f"(__m512bh){_ZMM_I}", "_mm512_dpbf16_ps({acc}, a, b)", 64, 16),
    Kernel("int8", "vpdpbusd zmm", ("avx512_vnni",), "avx512vnni,avx512f", "__m512i", "_mm512_setzero_si512()",
           "__m512i", _ZMM_I, "_mm512_dpbusd_epi32({acc}, a, b)", 128, 16),
)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
_ZEROS = (ctypes.c_uint8 * 64)()


def source(k: Kernel) -> str:
    """C for one kernel, `void run(int64_t iters, const void *p, void *out)`. An empty asm makes each
    accumulator's start value opaque (else the compiler merges the identical chains into one), and
    every accumulator is stored to `out` at the end (else it drops the unused ones)."""
    accs = [f"acc{i}" for i in range(k.accumulators)]
    opaque = "".join(f"    __asm__(\"\" : \"+v\"({a}));\n" for a in accs)
    steps = "".join(f"        {a} = {k.step.format(acc=a)};\n" for a in accs)
    stores = "".join(f"    memcpy((char *)out + {i} * sizeof {a}, &{a}, sizeof {a});\n" for i, a in enumerate(accs))
    return ("#include <immintrin.h>\n#include <stdint.h>\n#include <string.h>\n"
            f"__attribute__((target(\"{k.target}\")))\n"
            "void run(int64_t iters, const void *p, void *out) {\n"
            f"    {k.operand} a = {k.load}, b = {k.load};\n"
            f"    {k.vector} {', '.join(f'{a} = {k.zero}' for a in accs)};\n{opaque}"
            f"    for (int64_t i = 0; i < iters; ++i) {{\n{steps}    }}\n{stores}}}\n")


def compiler() -> str | None:
    """$CC, else cc, else gcc on PATH."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def build(k: Kernel, folder: Path) -> ctypes.CDLL:
    """Compile the kernel into a shared library in `folder`; RuntimeError with the compiler's
    message when it fails (an old compiler without the intrinsic)."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler ($CC, cc or gcc) to build the peak kernels")
    stem = folder / k.instruction.replace(" ", "_")
    stem.with_suffix(".c").write_text(source(k))
    done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(stem.with_suffix(".so")),
                           str(stem.with_suffix(".c"))], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{cc} failed on the {k.instruction} kernel: {done.stderr.strip()[-300:]}")
    lib = ctypes.CDLL(str(stem.with_suffix(".so")))
    lib.run.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.run.restype = None
    return lib


def time_all_cores(lib: ctypes.CDLL, iters: int, threads: int) -> float:
    """Wall seconds for `threads` concurrent calls of `iters` iterations each."""
    outs = [(ctypes.c_uint8 * (64 * 32))() for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def work(out) -> None:
        start.wait()
        lib.run(iters, _ZEROS, out)
    pool = [threading.Thread(target=work, args=(o,)) for o in outs]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - t0


def measure_kernel(k: Kernel, folder: Path, seconds: float = 0.25, repeats: int = 3) -> dict:
    """Best of `repeats` all-core runs of about `seconds` each: GOP/s over all cores and per core."""
    lib = build(k, folder)
    threads = usable_cores()
    probe = 100_000
    per_iter = time_all_cores(lib, probe, 1) / probe
    iters = max(probe, int(seconds / max(per_iter, 1e-12)))
    best = min(time_all_cores(lib, iters, threads) for _ in range(repeats))
    gops = threads * iters * k.accumulators * k.ops / best / 1e9
    return {"gops": gops, "gops_per_core": gops / threads, "threads": threads, "instruction": k.instruction}


@functools.cache
def measure(seconds: float = 0.25) -> dict[str, dict]:
    """precision -> measure_kernel's dict, or {"skipped": why} where the host lacks the instruction
    or the compiler fails. Cached: every bench part in a process shares one measurement."""
    result: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="peak-") as tmp:
        for p in PRECISIONS:
            kernels = [k for k in KERNELS if k.precision == p]
            k = next((k for k in kernels if has_flags(*k.flags)), None)
            if k is None:
                result[p] = {"skipped": "the CPU has none of " + ", ".join(" ".join(x.flags) for x in kernels)}
                continue
            try:
                result[p] = measure_kernel(k, Path(tmp), seconds)
            except RuntimeError as e:
                result[p] = {"skipped": str(e)}
    return result


def summary(peaks: dict[str, dict]) -> str:
    """One sentence for reports: each precision's measured peak, or why it was not measured."""
    parts = [f"{p} {v['gops']:.0f} GOP/s ({v['instruction']}, {v['threads']} cores)" if "gops" in v
             else f"{p} not measured ({v['skipped']})" for p, v in peaks.items()]
    return "Measured peak (register-resident dot-product kernels on every usable core): " + "; ".join(parts) + "."


def peak_of(precision: str, peaks: dict[str, dict]) -> tuple[str, float | None]:
    """The peak an engine of `precision` is held to, as (precision, GOP/s or None when not measured).
    fp16 without AVX512-FP16 converts to fp32 in registers, so its arithmetic peak is fp32's."""
    if precision == "fp16" and "gops" not in peaks.get("fp16", {}):
        precision = "fp32"
    return precision, peaks.get(precision, {}).get("gops")
