"""A unix socket whose every connection is relayed to a fresh stream to the guest.

grpcio dials targets by name and cannot be handed a socket, so when the VMM's agent
channel is not itself a unix socket server (cloud-hypervisor's hybrid vsock needs a
`CONNECT` handshake per connection), the shim listens here and, for each connection
gRPC makes, calls the driver's `connect()` and copies bytes both ways. A refused or
failed handshake closes gRPC's connection, which gRPC retries with its backoff: so a
restored VM (a new VMM process) is reached again without anything else knowing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from boxlite_cli.errors import BoxliteError

log = logging.getLogger("boxlite.shim.relay")
READ_SIZE = 64 * 1024


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
    """Copy a→b and b→a until both ended (EOF passed on as a half-close), then close."""
    other = threading.Thread(target=_pump, args=(b, a), name="relay-pump", daemon=True)
    other.start()
    try:
        _pump(a, b)
        other.join()
    finally:
        a.close()
        b.close()


class StreamRelay:
    def __init__(self, path: Path, connect: Callable[[], socket.socket]) -> None:
        self.path = path
        self.connect = connect
        self.listener: socket.socket | None = None
        self.connections = 0
        self.failures = 0

    @property
    def target(self) -> str:
        return f"unix:{self.path}"

    def start(self) -> StreamRelay:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept_loop, name="relay", daemon=True).start()
        return self

    def close(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        self.path.unlink(missing_ok=True)

    def _accept_loop(self) -> None:
        listener = self.listener
        assert listener is not None
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), name="relay-conn",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = self.connect()
        except (BoxliteError, OSError) as e:
            self.failures += 1
            log.info("agent channel: %s", e)
            conn.close()
            return
        self.connections += 1
        splice(conn, upstream)
