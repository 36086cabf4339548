"""One writer per run folder: an exclusive flock on a lock file, held for the life of the run.

The kernel drops a flock when its process dies, however it dies, so a lock file left by a killed
run is simply taken over by the next one: there is no stale state to clean up. The file holds the
holder's process id, which the refusal names.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from archlang.errors import ArchlangError


class RunLock:
    def __init__(self, path: Path, folder: Path) -> None:
        self.path, self.folder = path, folder
        self._fd: int | None = None

    def _holder(self, fd: int) -> str:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            text = ""
        return text if text.isdigit() else "unknown"

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ArchlangError(f"run folder is not writable ({err.strerror or err})", path=str(self.folder),
                                hint="choose another folder with --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise ArchlangError(f"run folder {self.folder} is in use by process {holder}", path=str(self.folder),
                                hint="wait for that run to end (or stop it), or train into another --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
