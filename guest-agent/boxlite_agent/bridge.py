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
"""

from __future__ import annotations

import contextlib
import errno
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
    ) -> None:
        self._open_port = open_port
        self._connect = connect
        self._hup_sleep = hup_sleep
        self._up: socket.socket | None = None
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

    def _ensure_up(self) -> bool:
        if self._up is not None:
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

    def _port_readable(self, port: int) -> None:
        try:
            data = os.read(port, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""
        if not data:  # no host peer
            self._host_gone()
            time.sleep(self._hup_sleep)
            return
        if data.startswith(H2_PREFACE) and self._up is not None:
            self._host_gone()  # a new host connection we did not see a HUP for
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
        if up is not None and up is self._up:
            uev = events.get(up.fileno(), 0)
            if uev & (select.POLLIN | _HUP):
                self._up_readable()
        if pev & select.POLLIN:
            self._port_readable(port)
        elif pev & _HUP:
            self._host_gone()
            time.sleep(self._hup_sleep)
            return
        if self._to_port:
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
                os.close(port)
