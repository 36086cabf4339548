"""The files of an ImageFolder tree or a zip of one: listed, checked and read with bounds.

Every way a folder or zip can be hostile ends in one ArchlangError naming the member: a damaged
(CRC), encrypted or deflate64 zip member, a member that declares gigabytes, a FIFO or dangling
link where an image should be, a symlink loop. Symlinked class folders (and a symlinked
train/) are followed, like torchvision's ImageFolder does; macOS resource forks are skipped.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from archlang.errors import ArchlangError, shorten

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")

# An image of an in-memory (small-image) dataset is a few KB; a bigger file is not one of them,
# and reading it whole would let one member of a 2 MB zip take gigabytes.
MAX_FILE_BYTES = 64 << 20

# What Python's zipfile decompresses (deflate64, method 9, it does not).
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}
_METHOD_NAMES = {9: "deflate64", 6: "implode", 93: "zstandard", 95: "xz", 98: "ppmd", 99: "AES"}


@dataclass(frozen=True)
class Entry:
    split: str
    label: str
    name: str  # path inside the zip or the folder


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _skipped(parts: list[str]) -> bool:
    """macOS resource forks (__MACOSX/, ._name) and hidden files are not images of the dataset."""
    return any(p == "__MACOSX" or p.startswith(".") for p in parts)


def _too_big(where: str, size: int) -> ArchlangError:
    return ArchlangError(f"{size_text(size)} is too big for an image of an in-memory dataset "
                         f"(at most {size_text(MAX_FILE_BYTES)})", path=where,
                         hint="remove the file, or use dataset imagenet (read image by image) for large images")


class Files(Protocol):
    where: str

    def names(self) -> list[str]: ...  # every file and folder, "/"-separated, folders ending in "/"

    def place(self, name: str) -> str: ...  # how messages name a file

    def read(self, name: str) -> bytes: ...


class ZipFiles:
    """Members of a zip, each checked from its header before a byte of it is decompressed."""

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        try:
            self.archive = zipfile.ZipFile(path)
            self.infos = {info.filename: info for info in self.archive.infolist()}
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise ArchlangError(f"not a readable zip file ({shorten(str(exc), 200)})", path=str(path),
                                hint="the file may be truncated; copy or download it again") from None

    def close(self) -> None:
        self.archive.close()

    def place(self, name: str) -> str:
        return f"{self.where}:{name}"

    def names(self) -> list[str]:
        return list(self.infos)

    def _check(self, info: zipfile.ZipInfo, where: str) -> None:
        if info.flag_bits & 0x1:
            raise ArchlangError("the zip member is encrypted", path=where,
                                hint="archlang reads zips without a password; re-create the zip unencrypted")
        if info.compress_type not in _ZIP_METHODS:
            method = _METHOD_NAMES.get(info.compress_type, "unknown")
            raise ArchlangError(f"the zip member uses compression method {info.compress_type} ({method}), "
                                "which Python's zipfile cannot read", path=where,
                                hint="re-create the zip with stored or deflate compression (e.g. `zip -r`)")
        if info.file_size > MAX_FILE_BYTES:
            raise _too_big(where, info.file_size)

    def read(self, name: str) -> bytes:
        info, where = self.infos[name], self.place(name)
        self._check(info, where)
        try:
            with self.archive.open(info) as member:
                data = member.read(MAX_FILE_BYTES + 1)  # a size the header understated stops here
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            raise ArchlangError(f"the zip member is damaged ({shorten(str(exc), 200)})", path=where,
                                hint="the zip may be corrupted; copy or download it again") from None
        if len(data) > MAX_FILE_BYTES:
            raise _too_big(where, len(data))
        return data


class TreeFiles:
    """Files of a folder tree, following symlinked folders (a loop is refused)."""

    def __init__(self, root: Path) -> None:
        self.root, self.where = root, str(root)

    def names(self) -> list[str]:
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root, followlinks=True, onerror=self._walk_error):
            real, parent = os.path.realpath(folder), os.path.realpath(os.path.dirname(folder))
            if folder != str(self.root) and (parent + "/").startswith(real.rstrip("/") + "/"):
                raise ArchlangError("a symlink loop in the ImageFolder tree", path=folder,
                                    hint="a folder links back to one of its parents; remove that link")
            rel = Path(folder).relative_to(self.root).as_posix()
            prefix = "" if rel == "." else rel + "/"
            found.extend(f"{prefix}{d}/" for d in dirs)
            found.extend(f"{prefix}{f}" for f in files)
        return found

    def place(self, name: str) -> str:
        return str(self.root / name)

    @staticmethod
    def _walk_error(exc: OSError) -> None:
        raise ArchlangError(f"cannot list a folder of the ImageFolder tree ({exc.strerror})",
                            path=str(exc.filename)) from None

    def read(self, name: str) -> bytes:
        path = self.root / name
        try:
            st = os.stat(path)  # follows links: a dangling one fails here
            if not stat.S_ISREG(st.st_mode):
                raise ArchlangError("not a regular file (a FIFO, socket or device named like an image)",
                                    path=str(path), hint="remove it from the dataset folder")
            if st.st_size > MAX_FILE_BYTES:
                raise _too_big(str(path), st.st_size)
            with open(path, "rb") as f:
                return f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ArchlangError(f"cannot read the image file ({exc.strerror})", path=str(path)) from None


def open_files(path: Path) -> Files:
    return ZipFiles(path) if path.is_file() else TreeFiles(path)


def split_entries(names: list[str], where: str) -> list[Entry]:
    """Image files under `[prefix/]train|test/<class>/file`, in ImageFolder order.

    A class folder without a single image is an error: dropping it would renumber the classes.
    """
    entries, classes = [], set()
    for name in names:
        parts = name.strip("/").split("/")
        if len(parts) < 2 or _skipped(parts):
            continue
        split_at = len(parts) - (2 if name.endswith("/") else 3)
        if split_at < 0 or parts[split_at] not in SPLITS:
            continue
        split, label = parts[split_at], parts[split_at + 1]
        classes.add((split, label))
        if not name.endswith("/") and name.lower().endswith(IMAGE_SUFFIXES):
            entries.append(Entry(split, label, name))
    empty = sorted(classes - {(e.split, e.label) for e in entries})
    if empty and entries:
        split, label = empty[0]
        raise ArchlangError(f"class folder {split}/{shorten(label)}/ has no images", path=where,
                            hint=f"image files end in {', '.join(IMAGE_SUFFIXES)}; remove the folder or add images")
    # ImageFolder sorts classes, then files within a class.
    entries.sort(key=lambda e: (e.split, e.label, e.name))
    return entries
