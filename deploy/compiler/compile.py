"""`compile_build(cfg)`: build YAML → compiled model suite (see deploy.runtime.suite).

Stages (a tqdm bar on stderr follows them; compile.log records each with its time):
load (the ONNX; a PyTorch file converted to ONNX, deploy.frontend) → prepare (inputs vs YAML, then
deploy.compiler.prepare) → check (operators) → target → calibrate (int8 only: calibration plan and
QDQ model, deploy.compiler.quantized) → import (Relax, symbolic batch or one entry per size; int8
imports the QDQ model) → optimize (int8: QDQ → integer convs, deploy.compiler.qdq_to_integer; then
the target's backend, deploy.compiler.backend: cpu for llvm, cuda) → build (tvm.compile) → export
(mod.so) → verify (by the backend: cpu loads the new library with the runtime and runs a zero batch
when the target can run here; cuda test-compiles the kernels with nvcc) → write mod.json +
compile.log (int8: + mod.qdq.onnx, calibration.json; pytorch: + mod.source.onnx, the converted
graph) and swap the folder in atomically.
Nothing is written to the workspace before the build succeeds (a bad YAML, ONNX or target
creates no folder); from the export on, files go to a temporary folder swapped in at the end.
"""
from __future__ import annotations

import datetime as _dt
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import onnx

from deploy.compiler import artifact, fp16_range, onnx_import, ops_scan, prepare
from deploy.compiler import target as targets
from deploy.compiler.backend import backend_for
from deploy.config.build import BuildConfig
from deploy.errors import DeployError
from deploy.frontend.source import Source, load_source
from deploy.io import atomic_write_bytes, sha256_file
from deploy.runtime import suite
from deploy.tvm_env import import_tvm

STAGES = ("load", "prepare", "check", "target", "calibrate", "import", "optimize", "build", "export", "verify", "write")


class CompileLog:
    """Timestamped lines for compile.log, plus per-stage timings."""

    def __init__(self):
        self.start = time.perf_counter()
        self.lines: list[str] = []
        self.stages: dict[str, float] = {}

    def __call__(self, msg: str) -> None:
        self.lines.append(f"[{time.perf_counter() - self.start:8.2f}s] {msg}")

    @contextmanager
    def stage(self, name: str, bar=None):
        if bar is not None:
            bar.set_postfix_str(name)
        self(f"stage {name}: start")
        t0 = time.perf_counter()
        try:
            yield
        except BaseException as e:
            self(f"stage {name}: FAILED after {time.perf_counter() - t0:.2f}s: {type(e).__name__}: {e}")
            raise
        self.stages[name] = round(time.perf_counter() - t0, 3)
        self(f"stage {name}: done in {self.stages[name]:.2f}s")
        if bar is not None:
            bar.update(1)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def compile_build(cfg: BuildConfig, *, dtype: str | None = None, target: str | dict | None = None,
                  recalibrate: bool = False, progress: bool | None = None) -> Path:
    """Compile `cfg` into `cfg.artifact_dir` and return the runtime prefix (`.../mod`).

    dtype: override the YAML's backend dtype (fp32 | fp16 | int8; the folder name follows, see
    BuildConfig.with_dtype). target: a TVM JSON target (string or dict) overriding the YAML's
    backend.compile.target; default: this host. recalibrate: int8 only, ignore cached calibration.
    progress: show the stage bar (None: only when stderr is a terminal).
    On any error the previous suite in the folder is left untouched."""
    from tqdm import tqdm

    if dtype is not None:
        cfg = cfg.with_dtype(dtype)
    log = CompileLog()
    log(f"compile {cfg.name} ({cfg.backend.dtype}) from {cfg.source}")
    started = time.perf_counter()
    tvm = import_tvm()
    log(f"tvm {tvm.__version__} imported")
    show = (sys.stderr.isatty() if progress is None else progress)
    int8 = cfg.backend.dtype == "int8"
    bar = tqdm(total=len(STAGES) - (not int8), desc=f"compile {cfg.name}", unit="stage", disable=not show, leave=False,
               file=sys.stderr)
    try:
        artifact.preflight(cfg.artifact_dir, f"{cfg.source}: workspace")  # writable, not being compiled
        # everything up to the build happens in memory: a failure there touches no file
        loaded = load_checked(cfg, log, bar)
        src, model, chw, overflow = loaded.source, loaded.model, loaded.chw, loaded.fp16_overflow
        with log.stage("target", bar):
            spec = target if target is not None else cfg.backend.target
            source = "--target" if target is not None else f"{cfg.source}: backend.compile.target"
            tgt = targets.resolve_target(spec, source, log)
            backend = backend_for(tgt)
        q8 = None
        if int8:
            with log.stage("calibrate", bar):
                q8 = _lower_int8(cfg, model, tgt, recalibrate, log, show)
        with log.stage("import", bar):
            mod, entry = onnx_import.import_model(model if q8 is None else q8.qdq, cfg, chw, log)
            first = mod[next(iter(entry["functions"].values()))]
            n_var = first.params[0].ty.shape.values[0] if entry["symbolic"] else None
            params, outs = onnx_import.relax_signature(first, n_var)
            if not entry["symbolic"]:  # one entry per size: the batch dim varies like a symbolic one
                b = entry["sizes"][0]
                params, outs = [[([None, *s[1:]] if s and s[0] == b else s, dt) for s, dt in sig]
                                for sig in (params, outs)]
        with log.stage("optimize", bar):
            mod = _optimize(mod, backend, tgt, cfg, log)
        with log.stage("build", bar):
            with tvm.transform.PassContext(opt_level=3):
                ex = tvm.compile(mod, tgt, relax_pipeline=backend.relax_pipeline())
        # files: a temporary folder next to the suite, swapped in only when complete
        with artifact.staging(cfg.artifact_dir) as tmp:
            prefix_name = cfg.prefix.name
            so_path = tmp / f"{prefix_name}.so"
            with log.stage("export", bar):
                ex.export_library(str(so_path))
                log(f"library: {so_path.name} {so_path.stat().st_size / 1e6:.1f} MB")
            calibration = {"files": 0, "sha256": None} if q8 is None else q8.record()
            meta = _meta(cfg, model, tgt, entry, params, outs, src.records, calibration, backend,
                         sha256_file(so_path))
            if overflow is not None:
                meta["fp16_overflow"] = overflow
            if src.kept is not None:
                atomic_write_bytes(tmp / src.kept[0], src.kept[1])
            if q8 is not None:
                q8.write(tmp, prefix_name)
                meta["quantization"] = q8.summary(prefix_name)
            suite.write_meta(tmp / prefix_name, meta)
            with log.stage("verify", bar):
                device_code = _verify(backend, tmp / prefix_name, tgt, ex, log)
                if device_code is not None:
                    meta["device_code"] = device_code
            with log.stage("write", bar):
                meta["compile"] = {"seconds": round(time.perf_counter() - started, 3),
                                   "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                   "stages": dict(log.stages), "host": _host_cpu()}
                suite.write_meta(tmp / prefix_name, meta)
                log(f"compiled in {meta['compile']['seconds']:.2f}s → {cfg.artifact_dir / prefix_name}")
                (tmp / "compile.log").write_text(log.text())
    finally:
        bar.close()
    return cfg.prefix


@dataclass(frozen=True)
class Loaded:
    """The build's model as the compiler sees it (load_checked)."""
    source: Source
    model: onnx.ModelProto                    # prepared: what the int8 plan and the import take
    chw: dict[str, tuple[int, int, int]]      # input name → (C, H, W) from frontend.shape
    fp16_overflow: list[dict] | None = None   # fp16 builds: layers beyond the fp16 range


def load_checked(cfg: BuildConfig, log: CompileLog | None = None, bar=None) -> Loaded:
    """The stages load, prepare and check: the model read (or converted, deploy.frontend), its inputs
    checked against frontend.shape, the graph prepared (deploy.compiler.prepare), every operator
    checked (and, for fp16, the layers leaving fp16's range found). `deploy analyze` takes its graph
    from here too, so the int8 plan it measures is the one a compile of the same YAML builds, and a
    bad ONNX fails there with the compiler's message."""
    log = CompileLog() if log is None else log
    with log.stage("load", bar):
        src = load_source(cfg)
        model = src.model
        log(src.describe())
    with log.stage("prepare", bar):
        chw = onnx_import.check_inputs(cfg, model)
        model = prepare.prepare(model, chw, log, simplify=cfg.backend.simplify)
    with log.stage("check", bar):
        ops_scan.check_supported(model, cfg.frontend.checkpoint)
        overflow = None
        if cfg.backend.dtype == "fp16":
            overflow = fp16_range.overflow_layers(cfg, model, log)
            fp16_range.warn(overflow or [], log)
        hist = ops_scan.op_histogram(model)
        log("ops: " + ", ".join(f"{k}×{v}" for k, v in sorted(hist.items())))
        for name, shape in cfg.frontend.shape.items():
            if shape[0] != 1 and not cfg.backend.batch_sizes:
                log(f"frontend.shape.{name}: batch {shape[0]} ignored: the module takes any batch")
    return Loaded(src, model, chw, overflow)


def _lower_int8(cfg: BuildConfig, model, tgt, recalibrate: bool, log, progress: bool):
    """Check the target can run int8, then calibrate (or reuse the suite's calibration.json) and
    make the QDQ model that is imported instead of the float one."""
    from deploy.compiler import quantized
    quantized.check_target(cfg, tgt)
    q8 = quantized.prepare(cfg, model, recalibrate, progress)
    p = q8.plan
    log(p.summary())
    log(f"calibration: {p.num_images} images from {cfg.dataset.path}, "
        f"{'reused ' + str(cfg.artifact_dir / 'calibration.json') if p.from_cache else 'computed'}")
    return q8


def _optimize(mod, backend, tgt, cfg: BuildConfig, log):
    """int8: the skipped convs to fp16 when skip_dtype asks, then the QDQ → integer conv rewrite
    (target-independent); then the target's backend."""
    dtype = cfg.backend.dtype
    if dtype == "int8":  # _lower_int8 admitted only llvm targets with VNNI
        from deploy.compiler import qdq_to_integer
        if cfg.backend.quantize.skip_dtype == "fp16":
            mod = _skipped_to_fp16(mod, backend, tgt, log)
        mod = qdq_to_integer.to_integer()(mod)
        log(f"optimize: int8: {qdq_to_integer.count_integer_convs(mod)} integer convs "
            f"(deploy.compiler.qdq_to_integer)")
    return backend.optimize(mod, tgt, dtype, log=log)


def _skipped_to_fp16(mod, backend, tgt, log):
    """skip_dtype fp16: the convs the int8 plan keeps in float compute in fp16 (deploy.compiler.skipped_fp16),
    accumulating as the backend's fp16 builds do."""
    from deploy.compiler import skipped_fp16
    mod = skipped_fp16.to_fp16(backend.fp16_accumulate(tgt))(mod)
    log(f"optimize: int8: {skipped_fp16.count_fp16_convs(mod)} skipped convs in fp16 "
        f"(accumulating in {backend.fp16_accumulate(tgt)}; deploy.compiler.skipped_fp16)")
    return mod


def _meta(cfg: BuildConfig, model, tgt, entry, params, outs, model_sources, calibration, backend,
          library_sha256: str) -> dict:
    """The `<prefix>.json` content (schema: deploy.runtime.suite); later stages add fields."""
    tvm = import_tvm()
    import tvm_ffi
    ins = onnx_import.graph_inputs(model)
    onames = [o.name for o in onnx_import.graph_outputs(model)]
    meta_props = {p.key: p.value for p in model.metadata_props}
    main_output = meta_props.get("main_output") if meta_props.get("main_output") in onames else onames[0]
    return suite.description(
        cfg.prefix, name=cfg.name, library_sha256=library_sha256,
        inputs=[(t.name, shape) for t, (shape, _) in zip(ins, params)],
        outputs=[(name, shape) for name, (shape, _) in zip(onames, outs)],
        main_output=main_output, batch=entry, dtype=cfg.backend.dtype, target=targets.target_json(tgt),
        device=backend.DEVICE, target_features=targets.required_features(tgt),
        tvm={"version": tvm.__version__, "ffi_version": tvm_ffi.__version__}, pipeline=backend.PIPELINE,
        sources={**model_sources, "build_yaml": {"path": str(cfg.source), "sha256": sha256_file(cfg.source)},
                 "calibration": calibration},
        preprocess=suite.process_ops_to_json(cfg.dataset.process_ops))


def _verify(backend, prefix: Path, tgt, ex, log) -> dict | None:
    """The backend checks the exported library (runs it here when this machine can); returns
    mod.json's device_code, or None."""
    return backend.verify(prefix, tgt, ex, log, targets.runs_here(tgt))


def _host_cpu() -> str | None:
    try:
        return targets.host_cpu()
    except DeployError:
        return None
