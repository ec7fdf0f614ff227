"""Byte bridges between the host's channel and the gRPC server's unix socket.

grpcio cannot serve on an fd, so the server listens on a unix socket and:

* ``splice(a, b)`` copies two connected sockets into each other (vsock: one pair of
  threads per accepted connection);
* ``PortBridge`` serves the virtio-serial port, one byte stream that carries one
  HTTP/2 connection at a time. While no host is connected the port polls POLLHUP
  (level-triggered), so the bridge sleeps between polls instead of spinning. On HUP
  it closes its upstream connection (the server drops that HTTP/2 session) and
  opens a fresh one when the next host sends bytes. If the upstream closes, what it
  sent is still forwarded and the next bytes from the host open a new upstream.
  A host that reconnected so quickly that the HUP was never seen is recognised by
  the HTTP/2 client preface at the start of a read: that also starts a new upstream.
  While no host is connected, the bridge keeps a *spare* upstream connection: the
  server has accepted it and sent its greeting (HTTP/2 SETTINGS) before any host
  comes, and the next host's first bytes go over it, its greeting ahead of the
  server's answers. A VM restored from a warm-start template has its spare already:
  under emulation, accepting and greeting cost a restored guest ~50-90 ms (code
  translated afresh). A spare is renewed after SPARE_MAX_AGE_S (the server drops a
  connection that sends no preface for 120 s), and one the server closed is
  replaced by a fresh connection when the host comes.

The guest learns that a host connected from a control message that its kernel handles
in a work queue, while the host's first bytes arrive on the port's own queue: they can
be read while the port still polls POLLHUP, and writes to it fail with EAGAIN until the
message is handled. So bytes read under POLLHUP open a session that a POLLHUP does not
end for HOST_OPEN_GRACE_S; nothing is written to the port while it polls POLLHUP. (It
used to end there: the host's first bytes and the server's greeting were dropped, and
the host's gRPC client waited 60 s for a greeting, about one start in thirty under
load.)
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from boxlite_agent import console

READ_SIZE = 64 * 1024
BUFFER_LIMIT = 256 * 1024
HUP_SLEEP_S = 0.015
HOST_OPEN_GRACE_S = 10.0
SPARE_MAX_AGE_S = 60.0
POLL_MS = 500
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_HUP = select.POLLHUP | select.POLLERR | select.POLLNVAL


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(READ_SIZE):
            dst.sendall(data)
    except OSError:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        return
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy a→b and b→a until both directions ended, then close both sockets.

    EOF in one direction is passed on as a half-close (shutdown SHUT_WR); an error in
    either direction tears both sockets down.
    """
    other = threading.Thread(target=_pump, args=(b, a), name="splice", daemon=True)
    other.start()
    try:
        _pump(a, b)
        other.join()
    finally:
        a.close()
        b.close()


def connect_unix(path: str, attempts: int = 50, delay: float = 0.02) -> Callable[[], socket.socket]:
    """A callable that opens a new connection to the unix socket ``path`` (with retries)."""

    def connect() -> socket.socket:
        for attempt in range(attempts):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                s.connect(path)
                return s
            except OSError:
                s.close()
                if attempt == attempts - 1:
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")

    return connect


class PortBridge:
    """Serves one stream-like fd (the virtio port) over fresh upstream connections."""

    def __init__(
        self,
        open_port: Callable[[], int],
        connect: Callable[[], socket.socket],
        hup_sleep: float = HUP_SLEEP_S,
        spare_max_age: float = SPARE_MAX_AGE_S,
        host_open_grace: float = HOST_OPEN_GRACE_S,
    ) -> None:
        self._open_port = open_port
        self._connect = connect
        self._hup_sleep = hup_sleep
        self._spare_max_age = spare_max_age
        self._host_open_grace = host_open_grace
        # when bytes were read while the port polled POLLHUP, until it polls without
        self._unconfirmed_since: float | None = None
        self._up: socket.socket | None = None
        self._spare: socket.socket | None = None
        self._spare_since = -math.inf  # when it was opened (or the last attempt failed)
        self._to_up = bytearray()
        self._to_port = bytearray()
        self.upstreams_opened = 0

    # -- upstream ----------------------------------------------------------------

    def _close_up(self) -> None:
        if self._up is not None:
            self._up.close()
            self._up = None
        self._to_up.clear()

    def _host_gone(self) -> None:
        self._close_up()
        self._to_port.clear()
        self._unconfirmed_since = None

    def _hung_up(self) -> None:
        """The port polls POLLHUP: the host went away, unless its bytes came ahead of the
        news that it connected (then wait for that, a while)."""
        since = self._unconfirmed_since
        if since is not None and time.monotonic() - since < self._host_open_grace:
            time.sleep(self._hup_sleep)
            return
        self._host_gone()
        self._idle()

    def _idle(self) -> None:
        """No host is connected: keep a spare upstream, then sleep a little."""
        now = time.monotonic()
        if now - self._spare_since >= self._spare_max_age:
            self._close_spare()
            self._spare_since = now  # (a failed attempt is retried as late)
            try:
                spare = self._connect()
            except OSError:
                pass
            else:
                spare.setblocking(False)
                self._spare = spare
        time.sleep(self._hup_sleep)

    def _close_spare(self) -> None:
        if self._spare is not None:
            self._spare.close()
            self._spare = None

    def _take_spare(self) -> bool:
        """Make the spare the upstream, what the server sent on it already first for
        the host; False when there is none, or the server closed it."""
        spare, self._spare = self._spare, None
        self._spare_since = -math.inf  # the next idle time opens a new one at once
        if spare is None:
            return False
        greeting = bytearray()
        try:
            while data := spare.recv(READ_SIZE):
                greeting += data
        except BlockingIOError:
            self._up = spare
            self._to_port += greeting
            self.upstreams_opened += 1
            return True
        except OSError:
            pass
        spare.close()
        return False

    def _ensure_up(self) -> bool:
        if self._up is not None:
            return True
        if self._take_spare():
            return True
        try:
            up = self._connect()
        except OSError as e:
            console.log(f"boxlite-agent: bridge: cannot reach the server: {e}")
            return False
        up.setblocking(False)
        self._up = up
        self.upstreams_opened += 1
        return True

    # -- one step of the loop ----------------------------------------------------

    def _port_readable(self, port: int, hup: bool) -> None:
        try:
            data = os.read(port, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""
        if not data:  # no host peer
            self._hung_up()
            return
        if data.startswith(H2_PREFACE) and self._up is not None:
            self._host_gone()  # a new host connection we did not see a HUP for
        if hup and self._unconfirmed_since is None:
            self._unconfirmed_since = time.monotonic()
        if self._ensure_up():
            self._to_up += data

    def _up_readable(self) -> None:
        assert self._up is not None
        try:
            data = self._up.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._to_port += data
        else:
            self._close_up()  # forward what it sent; the next host bytes open a new one

    def _flush_port(self, port: int) -> None:
        try:
            n = os.write(port, self._to_port)
        except BlockingIOError:
            return
        except OSError:  # the host went away mid-write
            self._host_gone()
            return
        del self._to_port[:n]

    def _flush_up(self) -> None:
        assert self._up is not None
        try:
            n = self._up.send(self._to_up)
        except BlockingIOError:
            return
        except OSError:
            self._close_up()
            return
        del self._to_up[:n]

    def step(self, port: int, poll_ms: int = POLL_MS) -> None:
        poller = select.poll()
        port_events = 0
        if len(self._to_up) < BUFFER_LIMIT:
            port_events |= select.POLLIN
        if self._to_port:
            port_events |= select.POLLOUT
        poller.register(port, port_events)
        up = self._up
        if up is not None:
            up_events = select.POLLIN if len(self._to_port) < BUFFER_LIMIT else 0
            if self._to_up:
                up_events |= select.POLLOUT
            poller.register(up, up_events)
        events = dict(poller.poll(poll_ms))
        pev = events.get(port, 0)
        if pev & select.POLLNVAL:
            raise OSError(errno.EBADF, "the port fd is not open")
        hup = bool(pev & _HUP)
        if not hup:
            self._unconfirmed_since = None  # the guest knows the host is there
        if up is not None and up is self._up:
            uev = events.get(up.fileno(), 0)
            if uev & (select.POLLIN | _HUP):
                self._up_readable()
        if pev & select.POLLIN:
            self._port_readable(port, hup)
        elif hup:
            self._hung_up()
            return
        if self._to_port and not hup:
            self._flush_port(port)
        if self._up is not None and self._to_up:
            self._flush_up()

    def run(self, stop: threading.Event | None = None) -> None:
        """Serve until ``stop`` is set; reopens the port after errors."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                port = self._open_port()
            except OSError as e:
                console.log(f"boxlite-agent: bridge: cannot open the port: {e}")
                stop.wait(1.0)
                continue
            try:
                os.set_blocking(port, False)
                while not stop.is_set():
                    self.step(port)
            except OSError as e:
                console.log(f"boxlite-agent: bridge: {e}; reopening the port")
                stop.wait(0.1)
            finally:
                self._host_gone()
                self._close_spare()
                os.close(port)
