"""How a compiled model suite is written: its folder swapped in atomically (what the suite holds and
the schema of its description: deploy.runtime.suite).

Atomicity: everything is written into a hidden temporary folder next to the artifact folder
(`.<name>.tmp-XXXX`), then swapped in with one rename (Linux renameat2 RENAME_EXCHANGE where
available, else two renames); an interrupted or failed compile leaves the previous suite intact
and removes its temporary folder. A lock file (`.<name>.lock`) serialises compiles of one name.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from deploy.errors import DeployError
from deploy.io import os_error


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


def preflight(final: Path, what: str) -> None:
    """Before any work: the suite's folder can be written (its nearest existing folder is writable: a
    test folder is made there and removed) and no other compile of this name holds its lock. `staging`
    takes the lock for real; this only refuses early what it would refuse after the whole build.
    `what` names the setting (the YAML's workspace)."""
    final = Path(final)
    folder = final.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise DeployError(f"{what}: {final.parent} cannot be created or written ({folder} is not a writable "
                          "folder); choose another workspace path")
    try:  # access() says yes to root everywhere: a read-only file system, /proc or /sys say no only to a write
        os.rmdir(tempfile.mkdtemp(prefix=".segdeploy-write-test-", dir=folder))
    except OSError as e:
        raise DeployError(f"{what}: {final.parent} cannot be created or written: {os_error(e, folder)}") from None
    lock_path = final.parent / f".{final.name}.lock"
    if lock_path.is_file():
        with _locked(lock_path):
            pass


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
