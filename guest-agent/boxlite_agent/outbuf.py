"""The ordered output buffer of one process: readers put chunks, one attacher takes them.

Bounds:
* ``hold=True`` (foreground runs): nothing is ever dropped; once ``hold_limit`` bytes
  are buffered, ``put`` blocks (so the process blocks on write) until the attacher
  drains the buffer.
* ``release_on_detach``: held until an attacher detaches, then as ``hold=False``.
* ``hold=False``: while an attacher is attached the buffer is bounded the same way
  (with ``keep_limit``) so a live reader receives everything; with nobody attached
  only the newest ``keep_limit`` bytes are kept (oldest chunks dropped) and ``put``
  never blocks.

The attacher *peeks* at the head chunk and *commits* it when it hands it on; what
it has not taken stays for the next attacher. Sequence numbers make a commit of a
chunk that was dropped meanwhile a no-op, and a detached attacher cannot commit.

A stream whose host reader went away is *dropped*: its chunks go, later ones are
not kept, and a ``put`` of it never blocks.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

HOLD_LIMIT = 4 << 20
KEEP_LIMIT = 1 << 20


class Status(enum.Enum):
    TIMEOUT = "timeout"  # nothing arrived in time
    END = "end"  # every stream reached EOF and the buffer is drained
    DETACHED = "detached"  # this attacher was detached (replaced or gone)


@dataclass(frozen=True)
class Chunk:
    seq: int
    stream: int
    data: bytes


class BufferBusy(Exception):
    """Another attacher is attached."""


class Attachment:
    """The token of one attacher; ``alive`` tells whether its client is still there."""

    def __init__(self, alive: Callable[[], bool]) -> None:
        self.alive = alive


class OutputBuffer:
    def __init__(
        self,
        hold: bool,
        streams: Iterable[int] = (0, 1),
        hold_limit: int = HOLD_LIMIT,
        keep_limit: int = KEEP_LIMIT,
        release_on_detach: bool = False,
    ) -> None:
        self._hold = hold
        self._release_on_detach = release_on_detach  # a detach ends the hold
        self._hold_limit = hold_limit
        self._keep_limit = keep_limit
        self._cond = threading.Condition()
        self._chunks: deque[Chunk] = deque()
        self._size = 0
        self._seq = 0
        self._open = set(streams)
        self._dropped: set[int] = set()
        self._attacher: Attachment | None = None
        self._released = False
        self.dropped_bytes = 0

    # -- producer side -----------------------------------------------------------

    def _blocking(self) -> bool:
        return not self._released and (self._hold or self._attacher is not None)

    def _limit(self) -> int:
        return self._hold_limit if self._hold else self._keep_limit

    def put(self, stream: int, data: bytes) -> None:
        """Append a chunk; blocks while the buffer is full and must not drop."""
        if not data:
            return
        with self._cond:
            while stream not in self._dropped and self._blocking() and self._size >= self._limit():
                self._cond.wait()
            if stream in self._dropped:
                return
            self._seq += 1
            self._chunks.append(Chunk(self._seq, stream, data))
            self._size += len(data)
            if not self._blocking():
                self._trim()
            self._cond.notify_all()

    def _trim(self) -> None:
        while self._size > self._keep_limit and len(self._chunks) > 1:
            old = self._chunks.popleft()
            self._size -= len(old.data)
            self.dropped_bytes += len(old.data)

    def close(self, stream: int) -> None:
        """Mark ``stream`` as finished (EOF)."""
        with self._cond:
            self._open.discard(stream)
            self._cond.notify_all()

    def drop(self, stream: int) -> None:
        """Nobody wants ``stream`` any more: drop what is buffered of it and what comes."""
        with self._cond:
            self._dropped.add(stream)
            self._chunks = deque(c for c in self._chunks if c.stream != stream)
            self._size = sum(len(c.data) for c in self._chunks)
            self._cond.notify_all()

    def release(self) -> None:
        """Never block producers again (the process is being discarded)."""
        with self._cond:
            self._released = True
            self._trim()
            self._cond.notify_all()

    # -- consumer side -----------------------------------------------------------

    def attach(self, alive: Callable[[], bool] = lambda: True) -> Attachment:
        """Become the attacher; raises BufferBusy if a live one is attached."""
        with self._cond:
            if self._attacher is not None and self._attacher.alive():
                raise BufferBusy()
            token = Attachment(alive)
            self._attacher = token
            self._cond.notify_all()
            return token

    def detach(self, token: Attachment) -> None:
        with self._cond:
            if self._attacher is token:
                self._attacher = None
                if self._release_on_detach:
                    self._hold = False
                if not self._blocking():
                    self._trim()
                self._cond.notify_all()

    def peek(self, token: Attachment, timeout: float) -> Chunk | Status:
        """The oldest undelivered chunk, without removing it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._attacher is not token:
                    return Status.DETACHED
                if self._chunks:
                    return self._chunks[0]
                if not self._open:
                    return Status.END
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return Status.TIMEOUT
                self._cond.wait(remaining)

    def commit(self, token: Attachment, chunk: Chunk) -> None:
        """Remove ``chunk`` (delivered) if it is still the head."""
        with self._cond:
            if self._attacher is token and self._chunks and self._chunks[0].seq == chunk.seq:
                self._chunks.popleft()
                self._size -= len(chunk.data)
                self._cond.notify_all()

    # -- state -------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        with self._cond:
            return self._size

    @property
    def eof(self) -> bool:
        """Every stream reached EOF (there may still be buffered chunks)."""
        with self._cond:
            return not self._open
