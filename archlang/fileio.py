"""Atomic output files: every file archlang writes goes through here.

A file is written under a temporary name in its own folder, fsynced, renamed over the target and the
folder fsynced, so a reader (or a resumed run) sees the old file or the whole new one, never part of
one, and a kill or a full disk leaves the previous file in place. OS errors (ENOSPC, EACCES, EROFS,
a folder where a file should be) become one ArchlangError naming the path, never a traceback.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from archlang.errors import ArchlangError

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space and run the command again (nothing was overwritten)",
    errno.EDQUOT: "the disk quota is exhausted: free some space and run the command again",
    errno.EACCES: "check the folder's permissions",
    errno.EROFS: "the file system is read-only: choose another output path",
    errno.EISDIR: "the output path is a folder: give a file name",
    errno.ENOENT: "the output folder does not exist: create it first, or choose another path",
    errno.ENOTDIR: "a folder on the output path is a file",
}


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform/filesystem
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(err: OSError, path: Path, what: str = "file") -> ArchlangError:
    """The one message for an OS error while writing `path`."""
    reason = err.strerror or type(err).__name__
    return ArchlangError(f"cannot write {what}: {reason}", path=str(path), hint=_HINTS.get(err.errno or -1))


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(path: Path, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that wants a file name (safetensors'
    save_file, torch.onnx.export, TorchScript's save); it becomes `path` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise ArchlangError(f"cannot write {what}: the output path is a folder", path=str(path),
                            hint=_HINTS[errno.EISDIR])
    tmp = _temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(err, path, what) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, what: str = "file") -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    atomic_write_with(path, lambda f: f.write(data), what)


def atomic_write_with(path: Path, write: Callable[..., object], what: str = "file") -> None:
    """Open a temporary file beside `path` in binary mode, let `write(f)` fill it, then rename it over."""
    with atomic_path(path, what) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()


def atomic_write_text(path: Path, text: str, what: str = "file") -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what)
