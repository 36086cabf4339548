"""Hostile files made in a few milliseconds: zips written byte by byte, PNGs that decode to gigabytes.

A deflate stream of zeros flushed with Z_FULL_FLUSH repeats byte for byte, so a member of 1 GiB
of zeros (or a PNG of 8000x8000 black pixels) is one ~1 KB block repeated, never compressed whole.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np


@dataclass
class Member:
    name: str
    data: bytes  # as stored (already compressed for method 8)
    crc: int
    size: int  # uncompressed size
    method: int = 0
    flags: int = 0


def stored(name: str, data: bytes) -> Member:
    return Member(name, data, zlib.crc32(data), len(data))


def zeros_deflated(total: int, chunk: int) -> bytes:
    """Raw deflate of `total` zero bytes (a multiple of `chunk`), built from one repeated block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (total // chunk) + b"\x03\x00"  # an empty final block ends the stream


def crc_of_zeros(total: int, chunk: int = 1 << 20) -> int:
    crc, piece = 0, bytes(chunk)
    for _ in range(total // chunk):
        crc = zlib.crc32(piece, crc)
    return crc


def write_zip(path, members: list[Member]) -> None:
    """A zip written field by field, so that methods and flags zipfile would refuse to write can be set."""
    out, central = io.BytesIO(), io.BytesIO()
    for m in members:
        offset, name = out.tell(), m.name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, m.flags, m.method, 0, 0x21, m.crc, len(m.data),
                              m.size, len(name), 0) + name + m.data)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m.flags, m.method, 0, 0x21, m.crc,
                                  len(m.data), m.size, len(name), 0, 0, 0, 0, 0, offset) + name)
    directory = central.getvalue()
    out.write(directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory),
                                      out.tell(), 0))
    path.write_bytes(out.getvalue())


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(width: int, height: int, channels: int = 3) -> bytes:
    """A valid PNG of black pixels whose pixel data is never held: a bomb of a few hundred KB."""
    row = 1 + width * channels  # filter byte + pixels
    rows_per_chunk = max(1, (1 << 20) // row)
    while height % rows_per_chunk:
        rows_per_chunk -= 1
    total = row * height
    adler = ((total % 65521) << 16) | 1  # adler32 of `total` zero bytes
    idat = b"\x78\xda" + zeros_deflated(total, row * rows_per_chunk) + struct.pack(">I", adler)
    color = {1: 0, 3: 2}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def image(seed: int, size: int = 32, channels: int = 3) -> np.ndarray:
    shape = (size, size, channels) if channels == 3 else (size, size)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
