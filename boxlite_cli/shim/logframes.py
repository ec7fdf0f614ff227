"""The container log of a box: framed (stream, bytes) records, appended by the shim.

The log is bounded: once a file would pass its limit (50 MiB, BOXLITE_LOG_MAX_SIZE
when the box started, or its --log-opt max-size: runtime/logopts.py), it becomes
`container.log.1` (the one before becoming `.2`, and so on, the oldest dropped) and a
new file is started; a box keeps that many files (2 unless --log-opt max-file: docker's
`local` log driver keeps 100 MB). Readers take the rotated files first, oldest first; a
follower that finds its file rotated away reads it to its end, then those rotated
after it (if the log rotated again meanwhile), then goes on with the new one.

Each record is preceded by a time frame (stream TIME, 8 bytes: nanoseconds since the
epoch, when the shim received it), for `logs -t`, `--since` and `--until`. Logs of
boxes started by an older boxlite have none: their records have time 0.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

HEADER = struct.Struct(">BI")
TIME = 0x80  # a time frame's stream: the records after it were received then
TIME_VALUE = struct.Struct(">Q")
TIME_FRAME_SIZE = HEADER.size + TIME_VALUE.size
LOG_MAX_BYTES = 50 << 20
LOG_FILES = 2  # the current file and the one rotated before it
MIN_LOG_MAX_BYTES = 4096  # (smaller limits are raised to this)
FOLLOW_POLL_S = 0.2


def rotated(path: Path, n: int = 1) -> Path:
    """The log's file rotated `n` times ago (LOG.1 the last)."""
    return path.with_name(f"{path.name}.{n}")


def rotations(path: Path) -> list[Path]:
    """The log's rotated files there are, oldest first."""
    found = []
    n = 1
    while (candidate := rotated(path, n)).exists():
        found.append(candidate)
        n += 1
    return found[::-1]


def write_frame(f: BinaryIO, stream: int, data: bytes) -> None:
    f.write(HEADER.pack(stream, len(data)) + data)


def time_frame(ns: int) -> bytes:
    return HEADER.pack(TIME, TIME_VALUE.size) + TIME_VALUE.pack(ns)


class LogRecord(NamedTuple):
    """Output of the main process: its stream (0 stdout, 1 stderr), the bytes, and when
    the shim received them (ns since the epoch; 0: not known)."""

    stream: int
    data: bytes
    ns: int = 0


class LogWriter:
    """Appends frames to the log at `path`, rotating it past `max_bytes` (whole frames
    only: a file holds at least one frame, however large) and keeping `files` files;
    none at all with `files` 0 (--log-driver none). A rotation waits for a frame that
    begins a line on every stream (so the oldest file kept does not begin with the end
    of a line whose start went), up to twice `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int, files: int = LOG_FILES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.files = files
        self.file: BinaryIO | None = None
        self.size = 0
        self.mid_line: set[int] = set()  # the streams whose last record did not end a line

    def rotate(self) -> None:
        """The current file becomes LOG.1, LOG.1 LOG.2..., those past `files` gone."""
        n = max(self.files - 1, 1)
        while True:  # (past the count: one file, its oldest; and those of a larger count)
            try:
                rotated(self.path, n).unlink()
            except FileNotFoundError:
                break
            n += 1
        for n in range(self.files - 2, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(rotated(self.path, n), rotated(self.path, n + 1))
        if self.files > 1:
            os.replace(self.path, rotated(self.path))
        else:
            self.path.unlink()

    def write(self, stream: int, data: bytes, ns: int | None = None) -> None:
        """Append a record received at `ns` (default: now), after its time frame. A
        record past the limit is cut after a line's end (the last that fits, else the
        first: an unfinished line ends in its file): the file is rotated there, and the
        rest begins the new one."""
        if not self.files:
            return
        if self.file is None:
            self.file = open(self.path, "ab")  # noqa: SIM115 (kept open: closed by close())
            self.size = self.file.tell()
        ns = time.time_ns() if ns is None else ns
        overhead = TIME_FRAME_SIZE + HEADER.size
        if (self.size and self.size + overhead + len(data) > self.max_bytes
                and self.mid_line <= {stream} and b"\n" in data):
            room = self.max_bytes - self.size - overhead
            cut = data.rfind(b"\n", 0, room) if room > 0 else -1
            if cut < 0 and self.mid_line:
                cut = data.find(b"\n")
            if 0 <= cut < len(data) - 1:
                self._append(stream, data[:cut + 1], ns)
                data = data[cut + 1:]
        frame_size = overhead + len(data)
        if self.size and (self.size + frame_size > 2 * self.max_bytes or (
                self.size + frame_size > self.max_bytes and not self.mid_line)):
            self.file.close()
            self.rotate()
            self.file = open(self.path, "ab")  # noqa: SIM115
            self.size = 0
        self._append(stream, data, ns)

    def _append(self, stream: int, data: bytes, ns: int) -> None:
        assert self.file is not None
        frame_size = TIME_FRAME_SIZE + HEADER.size + len(data)
        stamp = time_frame(ns)
        self.file.write(stamp + HEADER.pack(stream, len(data)) + data)
        self.file.flush()
        self.size += frame_size
        if data.endswith(b"\n"):
            self.mid_line.discard(stream)
        elif data:
            self.mid_line.add(stream)

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


class Timed:
    """Data frames as LogRecords, each with the time of the time frame before it (the
    last one seen, across calls: a follower reads one file in many calls)."""

    def __init__(self) -> None:
        self.ns = 0

    def records(self, frames: Iterator[tuple[int, bytes]]) -> Iterator[LogRecord]:
        for stream, data in frames:
            if stream == TIME:
                if len(data) == TIME_VALUE.size:
                    self.ns, = TIME_VALUE.unpack(data)
                continue
            yield LogRecord(stream, data, self.ns)


def _pieces(data: bytes) -> list[bytes]:
    """`data` cut after each newline (only `\\n`, as docker's log lines)."""
    pieces = [line + b"\n" for line in data.split(b"\n")]
    pieces[-1] = pieces[-1][:-1]
    return pieces if pieces[-1] else pieces[:-1]


class LastLines:
    """The last `count` lines of a run of records, each as a record of its own (with the
    time its first piece was received): a line is what ends with a newline, whole even
    when its record was cut in pieces (records are chunks of output of up to 64 KiB, not
    lines); an unfinished last line counts too."""

    def __init__(self, count: int) -> None:
        self.lines: deque[LogRecord] = deque(maxlen=count)
        # a line not ended yet: its stream, the time of its first piece, its pieces
        # (joined once it ends: a line of many records is not copied at each one)
        self.open: tuple[int, int, list[bytes]] | None = None

    def add(self, record: LogRecord) -> None:
        stream = record.stream
        for piece in _pieces(record.data):
            if self.open is not None and self.open[0] != stream:
                self._end_open()  # (the other stream came between)
            if self.open is None:
                self.open = (stream, record.ns, [])
            self.open[2].append(piece)
            if piece.endswith(b"\n"):
                self._end_open()

    def _end_open(self) -> None:
        if self.open is not None:
            stream, ns, pieces = self.open
            self.lines.append(LogRecord(stream, b"".join(pieces), ns))
            self.open = None

    def result(self) -> list[LogRecord]:
        self._end_open()
        return list(self.lines)


def last_records(records: Iterable[LogRecord], lines: int) -> list[LogRecord]:
    """The fewest last records that hold the last `lines` lines, found by counting
    newlines (in C), so that LastLines splits only those: a tail of a big log read the
    whole of it line by line (seconds for 100 MB). A line ends at a newline or sooner
    (where the other stream comes between): with `lines` + 1 newlines kept, every one of
    the last `lines` lines starts inside what is kept."""
    kept: deque[tuple[LogRecord, int]] = deque()
    newlines = 0
    for record in records:
        count = record.data.count(b"\n")
        kept.append((record, count))
        newlines += count
        while len(kept) > 1 and newlines - kept[0][1] >= lines + 1:
            newlines -= kept.popleft()[1]
    return [record for record, _ in kept]


def _rotated_away(path: Path, f: BinaryIO) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def _open_log(path: Path) -> BinaryIO:
    """The current log file, made if missing; one rotated away between the making and
    the opening (renamed, its successor not yet written) is made again."""
    for _ in range(100):
        path.touch(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            return open(path, "rb")
    return open(path, "rb")


def _rotated_records(files: list[Path], skip: set[int]) -> Iterator[LogRecord]:
    """The records of rotated `files` in order, but those (by inode) in `skip`."""
    for file in files:
        with contextlib.suppress(FileNotFoundError), open(file, "rb") as old:
            if os.fstat(old.fileno()).st_ino not in skip:
                yield from Timed().records(read_frames(old))


def _written(path: Path, f: BinaryIO, timed: Timed) -> Iterator[LogRecord]:
    """The records so far: the rotated files', then those of `f` (the current one). A
    rotated file that is `f` itself (rotated after `f` was opened) is read once, as `f`."""
    yield from _rotated_records(rotations(path), {os.fstat(f.fileno()).st_ino})
    yield from timed.records(read_frames(f))


def _rotated_between(path: Path, done: int, f: BinaryIO) -> Iterator[LogRecord]:
    """The records of the files rotated away after the one a follower read to its end
    (inode `done`) and before `f`, the current one: the log rotated more than once
    between two of its looks (all the rotated files, if `done`'s is gone too)."""
    files = rotations(path)
    inodes = [_inode(file) for file in files]
    after = files[inodes.index(done) + 1:] if done in inodes else files
    yield from _rotated_records(after, {done, os.fstat(f.fileno()).st_ino})


def _inode(path: Path) -> int:
    """`path`'s inode number; -1 if it is gone."""
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return -1


class TimeWindow(NamedTuple):
    """Records received from `since` to `until` (ns since the epoch; None: no bound)."""

    since: int | None = None
    until: int | None = None

    def holds(self, record: LogRecord) -> bool:
        return ((self.since is None or record.ns >= self.since)
                and (self.until is None or record.ns <= self.until))

    def over(self) -> bool:
        """Nothing received from now on can be in the window."""
        return self.until is not None and time.time_ns() > self.until


ALL_TIME = TimeWindow()


def read_log(path: Path, follow: bool = False, tail: int | None = None,
             live: Callable[[], bool] = lambda: False,
             window: TimeWindow = ALL_TIME) -> Iterator[LogRecord]:
    """The records of the log at `path` (its rotated part first) received in `window`;
    `tail`: only the last `tail` lines of those written so far (LastLines); `follow`:
    then wait for more while `live()` (and the window is not over)."""
    f = _open_log(path)
    timed = Timed()
    try:
        written = (r for r in _written(path, f, timed) if window.holds(r))
        if tail is None:  # (streamed; with `tail`, only the last `tail` lines are held)
            yield from written
        else:
            last = LastLines(max(tail, 0))
            for record in last_records(written, max(tail, 0)):
                last.add(record)
            yield from last.result()
        while follow:
            more = [r for r in timed.records(read_frames(f)) if window.holds(r)]
            yield from more
            if more:
                continue
            if _rotated_away(path, f):
                done = os.fstat(f.fileno()).st_ino
                f.close()
                f = _open_log(path)
                yield from (r for r in _rotated_between(path, done, f) if window.holds(r))
                continue
            if not live() or window.over():
                yield from (r for r in timed.records(read_frames(f)) if window.holds(r))
                return
            time.sleep(FOLLOW_POLL_S)
    finally:
        f.close()
