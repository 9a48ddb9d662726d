"""The compiled model suite on disk, and how it is written.

Layout (`cfg.artifact_dir`, `<workspace>/<name>/` for the current YAML schema):

    <name>/
      mod.so        TVM library: Relax VM bytecode + kernels, weights bound inside as constants
      mod.json      description (below); the runtime needs both files, found by the prefix .../mod
      compile.log   what the compile did: target, stages and timings, warnings, kernel schedules
      int8 only:
      mod.qdq.onnx      the "ideal" int8 model with the chosen scales (QDQ), runnable in onnxruntime
      calibration.json  thresholds + hashes; reused by a rebuild with the same ONNX and images

`mod.json` (schema_version 1):
    schema_version, name, library ("mod.so"),
    inputs / outputs: [{name, shape, dtype}] — shape NCHW with null for the batch when it is not
        fixed; dtype is what Model.run takes/returns (float32);
    main_output: the prediction head (ONNX metadata `main_output`, else the first output);
    batch: {symbolic, sizes, functions} — functions maps "*" (any N) or each size to its VM entry;
    batch_sizes: null or the compiled sizes;
    dtype: backend dtype (fp32 | fp16 | int8);
    target (TVM JSON target), device (cpu | cuda), target_features (CPU features the code may use),
    device_code (cuda only: how kernels are carried and what checked them);
    tvm: {version, ffi_version}; pipeline: which optimisation path ran;
    sources: {onnx, build_yaml: {path, sha256}, calibration: {files, sha256}} (calibration empty
        — 0 files, sha256 null — unless int8);
    preprocess: cfg.dataset.process_ops as [{type, **fields}];
    quantization (int8 only): the plan's summary (mode, quantized and skipped convs with reasons);
    compile: {seconds, finished_at (UTC ISO), stages {name: seconds}, host}.

Atomicity: everything is written into a hidden temporary folder next to the artifact folder
(`.<name>.tmp-XXXX`), then swapped in with one rename (Linux renameat2 RENAME_EXCHANGE where
available, else two renames); an interrupted or failed compile leaves the previous suite intact
and removes its temporary folder. A lock file (`.<name>.lock`) serialises compiles of one name.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from deploy.config import ops as ops_mod
from deploy.errors import DeployError
from deploy.io import sha256_file  # noqa: F401  (the sources' digests; compile.py calls artifact.sha256_file)


# ---- preprocessing spec ---------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def process_ops_to_json(ops: Iterable[Any]) -> list[dict]:
    """Typed process ops → [{"type": <class name>, **fields}] (tuples as lists)."""
    return [{"type": type(op).__name__, **{f.name: _plain(getattr(op, f.name)) for f in dataclasses.fields(op)}}
            for op in ops]


def process_ops_from_json(items: Iterable[dict]) -> tuple:
    """Inverse of process_ops_to_json."""
    out = []
    for item in items:
        item = dict(item)
        cls = getattr(ops_mod, item.pop("type"))
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}
        out.append(cls(**kwargs))
    return tuple(out)


# ---- atomic write ---------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False when unsupported here."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(staged: Path, final: Path) -> None:
    """Make `staged` the folder at `final`, replacing what was there in one step."""
    if not final.exists():
        os.rename(staged, final)
        return
    if _exchange(staged, final):
        shutil.rmtree(staged, ignore_errors=True)  # now holds the previous suite
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.rename(final, old)
    try:
        os.rename(staged, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    import fcntl
    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise DeployError(f"{lock_path}: another compile of this model is running") from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; on normal exit swap it in, on any exception
    (KeyboardInterrupt included) delete it and leave `final` as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f".{final.name}.lock"):
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by a killed compile
            shutil.rmtree(stale, ignore_errors=True)
        for stale in final.parent.glob(f".{final.name}.old-*"):
            if final.exists():
                shutil.rmtree(stale, ignore_errors=True)
            else:  # killed between the two renames of the fallback swap: restore
                os.rename(stale, final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the suite is an ordinary folder
        try:
            yield tmp
            swap_in(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def dumps(data: Any) -> str:
    """Indented JSON with lists of scalars (shapes, features, mean/std) kept on one line."""
    text = json.dumps(data, indent=2)

    def inline(m: re.Match) -> str:
        items = [line.strip().rstrip(",") for line in m.group(1).strip().splitlines()]
        return "[" + ", ".join(items) + "]"
    return re.sub(r"\[((?:\s*(?:-?[\d.eE+-]+|null|true|false|\"[^\"\n]*\"),?)+\s*)\]", inline, text)


def write_json(path: Path, data: dict) -> None:
    path.write_text(dumps(data) + "\n")
