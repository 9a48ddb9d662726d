"""Compile targets: TVM JSON targets only, validated before TVM can silently degrade them.

Accepted (from `--target` or the YAML's `backend.compile.target`):
- a JSON object (string or dict): `{"kind": "llvm", "mcpu": "skylake-avx512"}`,
  `{"kind": "cuda", "arch": "sm_90"}`; any other key TVM's target accepts may be added;
- shorthand words, as in the YAML: `llvm`, `cuda` (needs an arch: use the JSON form) or a bare
  mcpu name (`znver4`).
Default (nothing given): this host, `{"kind": "llvm", "mcpu": <detected>, "num-cores": <usable CPUs>}`.

TVM accepts any mcpu string and only LLVM complains (on stderr) while it falls back to a generic
CPU; `"native"` silently means generic SSE2. So: `native` and a missing mcpu become the detected
host CPU, and an mcpu LLVM does not know for the target's triple raises ConfigError with examples.
Only the `llvm` (CPU) and `cuda` kinds are supported: the runtime runs those two.
"""
from __future__ import annotations

import json
import re
from typing import Any

from deploy.errors import ConfigError, UnsupportedError
from deploy.host import usable_cores
from deploy.tvm_env import host_lacks, import_tvm, llvm_host_cpu

KINDS = ("llvm", "cuda")
EXAMPLE_CPUS = ("x86-64-v3", "x86-64-v4", "haswell", "skylake-avx512", "cascadelake", "icelake-server",
                "sapphirerapids", "emeraldrapids", "graniterapids", "znver3", "znver4", "znver5",
                "neoverse-v1", "neoverse-n2", "apple-m1")


def parse_target_spec(spec: str | dict | None, source: str = "--target") -> dict | None:
    """A target spec (JSON text, dict or shorthand word) → a plain dict (None stays None)."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        return dict(spec)
    text = str(spec).strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{source}: not valid JSON: {e}: {text!r}") from e
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {text!r}")
        return value
    if re.fullmatch(r"[A-Za-z0-9_.\-]+", text):
        return {"kind": text} if text in KINDS else {"kind": "llvm", "mcpu": text}
    raise ConfigError(f"{source}: expected a JSON target such as "
                      f"'{{\"kind\": \"llvm\", \"mcpu\": \"skylake-avx512\"}}' "
                      f"or '{{\"kind\": \"cuda\", \"arch\": \"sm_90\"}}', got {text!r} (TVM 0.27 rejects "
                      f"'llvm -mcpu=...' strings)")


def host_cpu() -> str:
    """LLVM's name for this CPU, validated: one LLVM does not know would compile for a generic CPU."""
    import_tvm()
    from tvm.target import codegen
    name = llvm_host_cpu()
    if name in ("", "generic", "native") or not codegen.llvm_is_valid_cpu(name, codegen.llvm_get_system_triple()):
        raise UnsupportedError(f"LLVM does not know this host CPU ({name!r}); pass an explicit target "
                               f"(--target '{{\"kind\": \"llvm\", \"mcpu\": \"x86-64-v3\"}}')")
    return name


def host_target(num_cores: int | None = None):
    """`llvm` target for this host: detected mcpu, `num-cores` = num_cores or the usable cores."""
    tvm = import_tvm()
    return tvm.target.Target({"kind": "llvm", "mcpu": host_cpu(), "num-cores": int(num_cores or usable_cores())})


def _check_mcpu(spec: dict, source: str) -> None:
    from tvm.target import codegen
    tvm = import_tvm()
    triple = spec.get("mtriple") or codegen.llvm_get_system_triple()
    mcpu = str(spec["mcpu"])
    if codegen.llvm_is_valid_cpu(mcpu, triple):
        return
    known = list(codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm", "mtriple": triple})))
    examples = [c for c in EXAMPLE_CPUS if c in known] or known[:12]
    try:
        here = host_cpu() if not spec.get("mtriple") else None
    except UnsupportedError:
        here = None
    if here:
        examples = [f"{here} (this host)"] + [c for c in examples if c != here]
    raise ConfigError(f"{source}: unknown mcpu {mcpu!r} for LLVM triple {triple}; known CPUs include "
                      f"{', '.join(examples)} ({len(known)} in all)")


def resolve_target(spec: str | dict | None, source: str = "--target", log=lambda msg: None):
    """Spec → validated tvm.target.Target (None: this host)."""
    tvm = import_tvm()
    spec = parse_target_spec(spec, source)
    if spec is None:
        target = host_target()
        log(f"target: this host ({target})")
        return target
    kind = spec.get("kind")
    if kind not in KINDS:
        raise UnsupportedError(f"{source}: target kind {kind!r} is not supported; supported kinds: {', '.join(KINDS)}")
    if kind == "llvm":
        if spec.get("mcpu") in (None, "", "native"):
            if spec.get("mtriple"):
                raise ConfigError(f"{source}: a cross-compile target (mtriple {spec['mtriple']!r}) needs an mcpu")
            spec["mcpu"] = host_cpu()
            log(f"target: mcpu not given (or 'native'): using this host's {spec['mcpu']}")
        _check_mcpu(spec, source)
        if "num-cores" not in spec and not spec.get("mtriple"):
            spec["num-cores"] = usable_cores()
    else:
        arch = spec.get("arch")
        if arch is None:
            raise ConfigError(f"{source}: a cuda target needs an arch, "
                              f"e.g. {{\"kind\": \"cuda\", \"arch\": \"sm_90\"}}")
        if not re.fullmatch(r"sm_\d{2,3}[a-z]?", str(arch)):
            raise ConfigError(f"{source}: cuda arch must look like sm_80, sm_90 or sm_90a, got {arch!r}")
    try:
        target = tvm.target.Target(spec)
    except Exception as e:
        raise ConfigError(f"{source}: TVM rejects the target {json.dumps(spec)}: {e}") from e
    log(f"target: {target}")
    return target


def target_json(target) -> dict[str, Any]:
    """The target as a JSON-able dict (what `<prefix>.json` records)."""
    return json.loads(str(target))


# Instruction-set features generated compute code can use (LLVM names, x86 and Arm); system
# features (pku, mwaitx, rdpru …) are left out: VMs often hide them and kernels never use them.
_ISA = re.compile(r"^(avx|sse|ssse|fma|f16c|amx|bmi|popcnt|lzcnt|movbe|gfni|vaes|vpclmulqdq|pclmul|aes|sha|adx|"
                  r"xop|neon|sve|fp-armv8|fullfp16|fp16fml|dotprod|i8mm|bf16|crc|lse|rdm)")


def required_features(target) -> list[str]:
    """Instruction-set features the target's code may use (llvm targets); the runtime refuses to
    load a library on a CPU that lacks one (instead of dying on SIGILL)."""
    if target.kind.name != "llvm":
        return []
    from tvm.target import _ffi_api
    return sorted(k for k in map(str, _ffi_api.llvm_get_cpu_features(target).keys()) if _ISA.match(k))


def runs_here(target) -> bool:
    """True when code for `target` can run on this machine (CPU with every needed feature)."""
    if target.kind.name != "llvm" or target.attrs.get("mtriple"):
        return False
    return not host_lacks(required_features(target))
