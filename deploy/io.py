"""Files written whole or not at all, and the digests that tell files apart: the one home of both.

Atomic writes: the data goes to a temporary file with a unique name (`.<name>.<random>.tmp`) in
the target's own folder, then `os.replace` puts it under its final name in one step, so a reader
or an interrupted run never sees a half-written file, and two writers (threads, processes) of the
same path never share a temporary. The temporary is created with mode 0666 minus the umask (like
`open()`), and removed only on failure: unlinking a file that is gone still takes the folder's
lock, which the writer threads of a run all contend for. A failed write (disk full, permission
denied, read-only file system, a folder or a file in the way) is a DeployError naming the file and
what to do (`os_error`, which the CLI also applies to any OSError that reaches it). No fsync: this
guards against a killed process, not against power loss, and a run writes thousands of small files.
Text read by `read_text` is UTF-8 or a DeployError.
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
# errno → what the user can do about it (the message also names the file and the system's words)
_REMEDIES = {
    errno.ENOSPC: "free space on that file system (or choose a folder on another one) and run again",
    errno.EDQUOT: "you are over your disk quota there: free space or choose a folder on another file system",
    errno.EACCES: "permission denied: choose a folder you can write (or read), or fix its permissions",
    errno.EPERM: "not permitted there: choose another folder",
    errno.EROFS: "that file system is read-only: choose a folder on a writable one",
    errno.EISDIR: "a folder is in the way: give a file path, or move the folder away",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.ENOENT: "no such file or folder (or a parent folder that cannot be created there): check the path",
    errno.ENAMETOOLONG: "the name is too long for the file system: use a shorter path",
    errno.EMFILE: "too many open files: use fewer --workers, or raise the limit (ulimit -n)",
    errno.ENFILE: "the system is out of file handles: use fewer --workers, or close other programs",
    errno.EIO: "input/output error: the disk or network file system failed; check it and run again",
    errno.EEXIST: "something is already there: choose another path",
}


def os_error(e: OSError, path: str | os.PathLike | None = None) -> DeployError:
    """The user error for a failed file operation: the file (`path`, else the one the OSError names:
    the destination of a rename), the system's words and what to do. A traceback would only say
    which line of ours was running."""
    target = path if path is not None else (e.filename2 if e.filename2 is not None else e.filename)
    where = f"{os.fsdecode(target)}: " if target is not None else ""
    reason = os.strerror(e.errno) if e.errno else str(e)
    remedy = _REMEDIES.get(e.errno, "check the path and its file system, then run again")
    return DeployError(f"{where}cannot {_verb(e)} it: {reason}; {remedy}")


def _verb(e: OSError) -> str:
    return "write" if e.errno in DISK_FULL + (errno.EROFS, errno.EISDIR) else "use"


def disk_full(path: str | os.PathLike, e: OSError) -> DeployError:
    """The user error for a write that failed for want of space (`e.errno` in DISK_FULL), naming the file."""
    return os_error(e, path)


def non_utf8(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be handed to a tool that takes UTF-8 paths (TVM's compiler and loader), or None:
    a name that is not UTF-8 (Python keeps such bytes as surrogates, which TVM cannot encode)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError as e:
        raw = os.fsencode(path)
        return f"{raw.decode('utf-8', 'backslashreplace')}: the path is not valid UTF-8 (at character {e.start})"
    return None


def read_text(path: str | os.PathLike, what: str = "file", error: type[DeployError] = DeployError) -> str:
    """A text file as UTF-8, or `error` naming it and the first bad byte (not a traceback)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                          f"save the {what} as UTF-8") from None


def _create_temp(path: Path) -> tuple[int, Path]:
    """An open, new, uniquely named file beside `path` (its folder is created when missing); a folder
    that cannot be written is an error naming `path`, not the temporary."""
    try:
        return _new_temp(path)
    except OSError as e:
        raise os_error(e, path) from e


def _new_temp(path: Path) -> tuple[int, Path]:
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
        if isinstance(e, OSError) and e.errno is not None:
            raise os_error(e, path) from e
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
