"""Files written whole or not at all, and the digests that tell files apart: the one home of both.

Atomic writes: the data goes to a temporary file with a unique name (`.<name>.<random>.tmp`) in
the target's own folder, then `os.replace` puts it under its final name in one step, so a reader
or an interrupted run never sees a half-written file, and two writers (threads, processes) of the
same path never share a temporary. The temporary is created with mode 0666 minus the umask (like
`open()`), and removed only on failure: unlinking a file that is gone still takes the folder's
lock, which the writer threads of a run all contend for. A full disk (ENOSPC, EDQUOT) is a
DeployError naming the file. No fsync: this guards against a killed process, not against power
loss, and a run writes thousands of small files. Text read by `read_text` is UTF-8 or a DeployError.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from deploy.errors import DeployError

CHUNK = 1 << 20
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: str | os.PathLike, e: OSError) -> DeployError:
    """The user error for a write that failed for want of space (`e.errno` in DISK_FULL: ENOSPC, or
    EDQUOT: over quota), naming the file."""
    return DeployError(f"{path}: cannot write it: {os.strerror(e.errno)}; free space on that file system "
                       "(or choose a folder on another one) and run again")


def read_text(path: str | os.PathLike, what: str = "file", error: type[DeployError] = DeployError) -> str:
    """A text file as UTF-8, or `error` naming it and the first bad byte (not a traceback)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                          f"save the {what} as UTF-8") from None


def _create_temp(path: Path) -> tuple[int, Path]:
    """An open, new, uniquely named file beside `path` (its folder is created when missing)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(tmp, _FLAGS, 0o666), tmp


def _commit(tmp: Path, path: Path, fill: Callable[[], None]) -> Path:
    try:
        fill()
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            raise disk_full(path, e) from e
        raise
    return path


def atomic_save(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` (a writer that takes a path: torch.save, onnx.save, ...), then move the
    file it wrote onto `path`."""
    path = Path(path)
    fd, tmp = _create_temp(path)
    os.close(fd)
    return _commit(tmp, path, lambda: write(tmp))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    fd, tmp = _create_temp(path)

    def fill() -> None:
        with open(fd, "wb") as f:
            f.write(data)
    return _commit(tmp, path, fill)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int | None = 2, **dumps_kwargs: Any) -> Path:
    """`data` as JSON (indented, newline-terminated)."""
    return atomic_write_text(path, json.dumps(data, indent=indent, **dumps_kwargs) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_files(files: Iterable[str | os.PathLike]) -> str | None:
    """One digest for a list of files (a calibration set): over `<file name>\\t<sha256 of its
    bytes>` lines in list order, so moving the folder keeps it while editing, swapping, adding or
    reordering files changes it. None for an empty list."""
    files = list(files)
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f"{Path(f).name}\t{sha256_file(f)}\n".encode())
    return h.hexdigest()
