"""This machine as the operating system reports it: the CPUs this process may use and what the
processor is (/proc/cpuinfo). The one place that asks, so the compiler's default target, the
thread pools, training's bf16 choice and the benchmark reports all see the same machine.

Nothing here assumes a processor: the development machines have been AMD (Zen 4, Zen 5) and Intel
(with AMX and AVX512-FP16) by turns, so `describe()` says what was detected — vendor, family and
model numbers, the instruction-set extensions that matter for the kernels — and names an AMD Zen
generation only from the family number and the features. LLVM's view of the host (its CPU name
and feature set, which TVM compiles for) is in deploy.tvm_env.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import DeployError

CPUINFO = Path("/proc/cpuinfo")
# Extensions the kernels and the training precision depend on, in the order describe() lists them.
KEY_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_int8", "amx_bf16", "amx_fp16")


@dataclass(frozen=True)
class Cpu:
    name: str                  # "model name", e.g. "AMD EPYC 9R45", "Intel(R) Xeon(R) Platinum 8488C"
    vendor: str                # "AuthenticAMD", "GenuineIntel", ...
    family: int | None
    model: int | None
    flags: frozenset[str]      # the kernel's names (avx512_vnni, amx_bf16, ...)
    mhz: float | None

    @property
    def generation(self) -> str | None:
        """The AMD Zen generation when the family number (and, for family 25, AVX-512) tells it."""
        if self.vendor != "AuthenticAMD":
            return None
        if self.family == 25:
            return "Zen 4" if "avx512f" in self.flags else "Zen 3"
        return {23: "Zen/Zen 2", 26: "Zen 5"}.get(self.family)


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@functools.cache
def cpu() -> Cpu:
    """The first processor's entry of /proc/cpuinfo (platform.processor() where there is none)."""
    try:
        fields = _first_entry(CPUINFO.read_text())
    except OSError:
        fields = {}
    return Cpu(name=fields.get("model name", platform.processor() or "unknown"),
               vendor=fields.get("vendor_id", ""), family=_int(fields.get("cpu family")),
               model=_int(fields.get("model")), flags=frozenset(fields.get("flags", "").split()),
               mhz=_float(fields.get("cpu MHz")))


def has_flags(*flags: str) -> bool:
    """True when the CPU reports every one of `flags` (kernel names, e.g. "avx512_bf16")."""
    return set(flags) <= cpu().flags


def describe() -> str:
    """One line for reports: name, vendor/family/model (and Zen generation), cores, key extensions."""
    c = cpu()
    ids = " ".join(x for x in (c.vendor, f"family {c.family}" if c.family is not None else "",
                              f"model {c.model}" if c.model is not None else "") if x)
    ids += f", {c.generation}" if c.generation else ""
    flags = " ".join(f for f in KEY_FLAGS if f in c.flags) or "none of " + " ".join(KEY_FLAGS)
    return f"{c.name} ({ids}), {usable_cores()} usable cores; {flags}"


def _first_entry(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process (SIGKILL) when its parent dies, however it dies: a worker
    process left behind by a `kill -9`ed parent would spin on its benchmark loop forever. Linux only
    (prctl PR_SET_PDEATHSIG); elsewhere a no-op. If the parent is already gone (it died before this
    call), exit at once."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)


MEMINFO = Path("/proc/meminfo")


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or None when unknown."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_memory(nbytes: float, what: str, hint: str) -> None:
    """Refuse work whose estimated memory (`nbytes`) exceeds what this machine has free, before it
    starts: otherwise numpy, OpenCV or TVM fail deep inside (or the kernel's OOM killer ends the
    process without a word). `what` names the setting, `hint` says what to do."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise DeployError(f"{what} needs about {_gib(nbytes)} of memory, this machine has {_gib(free)} "
                          f"available; {hint}")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.0f} MiB"
