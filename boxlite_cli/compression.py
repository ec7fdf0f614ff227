"""Telling gzip, zstd and plain tar streams apart by their first bytes, and reading them.

Media types and file names are hints at best (and lies at worst, from an untrusted
source): the bytes decide.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from typing import IO, Any, Literal

import zstandard

Compression = Literal["gzip", "zstd", "xz", "bzip2", "none"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
SNIFF_BYTES = 6

# What a corrupt compressed stream raises, besides OSError/EOFError.
DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    zlib.error, lzma.LZMAError, zstandard.ZstdError, EOFError,
)


def sniff(head: bytes) -> Compression:
    """The compression of a stream that starts with `head`."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC) and len(head) >= 4 and head[3:4].isdigit():
        return "bzip2"
    return "none"


class _Prefixed:
    """A read-only stream: `head`, then the rest of `stream`."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            if len(data) < size:
                data += self._stream.read(size - len(data))
            return data
        return self._stream.read(size)

    def readable(self) -> bool:
        return True


class _ZstdReader:
    """zstd frames, one after another, decoded as they are read.

    zstandard's own stream reader ends quietly where its input is cut off; this one
    raises when the input ends inside a frame, and feeds the decoder small pieces so
    that one `read` cannot blow up into gigabytes (a zstd block of 4 bytes can decode
    to 128 KiB).
    """

    FEED = 4096

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._frame: Any = None
        self._pending = b""
        self._pos = 0
        self._out = bytearray()
        self._done = False

    def _step(self) -> None:
        if self._pos >= len(self._pending):
            self._pending, self._pos = self._raw.read(1 << 16), 0
            if not self._pending:
                if self._frame is not None:
                    raise zstandard.ZstdError("zstd stream is truncated")
                self._done = True
                return
        if self._frame is None:
            self._frame = self._dctx.decompressobj()
        piece = self._pending[self._pos:self._pos + self.FEED]
        self._pos += len(piece)
        self._out += self._frame.decompress(piece)
        if self._frame.eof:
            rest = self._frame.unused_data
            self._frame = None
            if rest:
                self._pending, self._pos = rest + self._pending[self._pos:], 0

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size is None or size < 0 or len(self._out) < size):
            self._step()
        n = len(self._out) if size is None or size < 0 else min(size, len(self._out))
        data = bytes(self._out[:n])
        del self._out[:n]
        return data

    def readable(self) -> bool:
        return True


def _read_head(stream: IO[bytes]) -> bytes:
    head = b""
    while len(head) < SNIFF_BYTES:
        chunk = stream.read(SNIFF_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return head


def open_decompressed(stream: IO[bytes]) -> tuple[IO[bytes], Compression]:
    """`stream` decompressed (as a forward-only reader), and what it was compressed with."""
    head = _read_head(stream)
    kind = sniff(head)
    raw: Any = _Prefixed(head, stream)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), kind  # type: ignore[return-value]
    if kind == "zstd":
        return _ZstdReader(raw), kind  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw), kind
    if kind == "bzip2":
        return bz2.BZ2File(raw), kind
    return raw, kind
