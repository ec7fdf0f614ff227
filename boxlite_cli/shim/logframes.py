"""The container log of a box: framed (stream, bytes) records, appended by the shim."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

HEADER = struct.Struct(">BI")


def write_frame(f: BinaryIO, stream: int, data: bytes) -> None:
    f.write(HEADER.pack(stream, len(data)) + data)


def read_frames(f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Frames until EOF; a torn last frame (shim killed mid-write) is ignored."""
    while True:
        header = f.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        stream, size = HEADER.unpack(header)
        data = f.read(size)
        if len(data) < size:
            return
        yield stream, data
