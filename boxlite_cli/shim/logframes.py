"""The container log of a box: framed (stream, bytes) records, appended by the shim.

The log is bounded: once a file would pass its limit (50 MiB, or BOXLITE_LOG_MAX_SIZE
when the box started: runtime.log_max_bytes), it becomes `container.log.1` (replacing
the one before) and a new file is started, so a box keeps at most about twice that
(docker's `local` log driver keeps 100 MB). Readers take the rotated file first; a
follower that finds its file rotated away reads it to its end, then goes on with the
new one.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

HEADER = struct.Struct(">BI")
LOG_MAX_BYTES = 50 << 20
MIN_LOG_MAX_BYTES = 4096  # (smaller limits are raised to this)
FOLLOW_POLL_S = 0.2


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def write_frame(f: BinaryIO, stream: int, data: bytes) -> None:
    f.write(HEADER.pack(stream, len(data)) + data)


class LogWriter:
    """Appends frames to the log at `path`, rotating it past `max_bytes` (whole frames
    only: a file holds at least one frame, however large)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.file: BinaryIO | None = None
        self.size = 0

    def write(self, stream: int, data: bytes) -> None:
        if self.file is None:
            self.file = open(self.path, "ab")  # noqa: SIM115 (kept open: closed by close())
            self.size = self.file.tell()
        frame_size = HEADER.size + len(data)
        if self.size and self.size + frame_size > self.max_bytes:
            self.file.close()
            os.replace(self.path, rotated(self.path))
            self.file = open(self.path, "ab")  # noqa: SIM115
            self.size = 0
        write_frame(self.file, stream, data)
        self.file.flush()
        self.size += frame_size

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


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


def _pieces(data: bytes) -> list[bytes]:
    """`data` cut after each newline (only `\\n`, as docker's log lines)."""
    pieces = [line + b"\n" for line in data.split(b"\n")]
    pieces[-1] = pieces[-1][:-1]
    return pieces if pieces[-1] else pieces[:-1]


class LastLines:
    """The last `count` lines of a run of records, each as (stream, line): a line is
    what ends with a newline, whole even when its record was cut in pieces (records are
    chunks of output of up to 64 KiB, not lines); an unfinished last line counts too."""

    def __init__(self, count: int) -> None:
        self.lines: deque[tuple[int, bytes]] = deque(maxlen=count)
        self.open: tuple[int, bytes] | None = None  # a line not ended yet

    def add(self, stream: int, data: bytes) -> None:
        for piece in _pieces(data):
            if self.open is not None:
                if self.open[0] == stream:
                    piece = self.open[1] + piece
                else:
                    self.lines.append(self.open)  # (the other stream came between)
                self.open = None
            if piece.endswith(b"\n"):
                self.lines.append((stream, piece))
            else:
                self.open = (stream, piece)

    def result(self) -> list[tuple[int, bytes]]:
        if self.open is not None:
            self.lines.append(self.open)
            self.open = None
        return list(self.lines)


def _rotated_away(path: Path, f: BinaryIO) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def _written(path: Path, f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """The records so far: the rotated file's, then those of `f` (the current one)."""
    with contextlib.suppress(FileNotFoundError), open(rotated(path), "rb") as old:
        yield from read_frames(old)
    yield from read_frames(f)


def read_log(path: Path, follow: bool = False, tail: int | None = None,
             live: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, bytes]]:
    """The records of the log at `path` (its rotated part first); `tail`: only the
    last `tail` lines written so far (LastLines); `follow`: then wait for more while
    `live()`."""
    path.touch(exist_ok=True)
    f = open(path, "rb")  # noqa: SIM115 (reopened when rotated: closed below)
    try:
        if tail is None:  # (streamed; with `tail`, only the last `tail` lines are held)
            yield from _written(path, f)
        else:
            last = LastLines(max(tail, 0))
            for record in _written(path, f):
                last.add(*record)
            yield from last.result()
        while follow:
            more = list(read_frames(f))
            yield from more
            if more:
                continue
            if _rotated_away(path, f):
                f.close()
                f = open(path, "rb")  # noqa: SIM115
                continue
            if not live():
                yield from read_frames(f)
                return
            time.sleep(FOLLOW_POLL_S)
    finally:
        f.close()
