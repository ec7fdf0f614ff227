"""The container log of a box: framed (stream, bytes) records, appended by the shim."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

HEADER = struct.Struct(">BI")


def write_frame(f: BinaryIO, stream: int, data: bytes) -> None:
    f.write(HEADER.pack(stream, len(data)) + data)


def read_frames(f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Frames until EOF. An incomplete last frame (still being written, or torn by a
    killed shim) is not returned, and the file is left positioned before it, so a
    follower reading again later gets it whole."""
    while True:
        start = f.tell()
        header = f.read(HEADER.size)
        stream, size = HEADER.unpack(header) if len(header) == HEADER.size else (0, -1)
        data = f.read(size) if size >= 0 else b""
        if size < 0 or len(data) < size:
            f.seek(start)
            return
        yield stream, data
