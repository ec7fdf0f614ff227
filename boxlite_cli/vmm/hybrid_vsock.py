"""Host side of cloud-hypervisor's (and Firecracker's) hybrid vsock.

The VMM serves the guest's vsock device on a unix socket. A host process connects,
sends `CONNECT <port>\\n`, and the VMM answers `OK <host port>\\n` once the guest
accepted the connection on that vsock port; from then on the unix connection is the
byte stream. A port nobody listens on is refused by closing the connection.

Every failure is a typed `VsockError`: the socket cannot be reached
(`VsockUnreachable`), the port was refused (`VsockRefused`), the reply is not the
protocol's (`VsockProtocolError`), no reply in time (`VsockTimeout`), or the peer
closed while a caller needed more bytes (`VsockClosed`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from boxlite_cli.errors import VmError

# Long enough for any "OK <u32>\n"; a reply that does not end by then is garbage.
MAX_REPLY = 32
HANDSHAKE_TIMEOUT_S = 5.0


class VsockError(VmError):
    """The hybrid-vsock connection to the guest failed."""


class VsockUnreachable(VsockError):
    """The VMM's vsock socket does not exist or does not accept connections."""


class VsockRefused(VsockError):
    """The VMM closed the connection instead of answering OK: no listener on the port."""


class VsockProtocolError(VsockError):
    """The VMM answered something that is not `OK <n>\\n`."""


class VsockTimeout(VsockError):
    """No answer within the handshake timeout."""


class VsockClosed(VsockError):
    """The peer closed the stream while more bytes were expected."""


def parse_reply(line: bytes) -> int:
    """The host port in an `OK <n>` reply line (without its newline)."""
    text = line.decode("ascii", errors="replace")
    parts = text.split(" ")
    if len(parts) != 2 or parts[0] != "OK" or not parts[1].isdigit():
        raise VsockProtocolError(f"unexpected hybrid-vsock reply {text[:MAX_REPLY]!r}")
    return int(parts[1])


def _read_reply(sock: socket.socket, path: Path, port: int) -> bytes:
    """Read one reply line, byte by byte: what follows the newline is stream data."""
    line = bytearray()
    while True:
        try:
            b = sock.recv(1)
        except TimeoutError:
            raise VsockTimeout(f"no answer to CONNECT {port} on {path} within the "
                               "handshake timeout") from None
        except OSError as e:
            raise VsockRefused(f"vsock port {port} refused on {path}: {e}") from e
        if not b:
            if line:
                raise VsockProtocolError(f"hybrid-vsock reply cut short: {bytes(line)!r}")
            raise VsockRefused(f"vsock port {port} refused on {path} (the VMM closed the "
                               "connection: is the guest listening on it?)")
        if b == b"\n":
            return bytes(line)
        line += b
        if len(line) > MAX_REPLY:
            raise VsockProtocolError(f"unexpected hybrid-vsock reply {bytes(line)!r}...")


def connect(path: Path | str, port: int, timeout_s: float = HANDSHAKE_TIMEOUT_S
            ) -> tuple[socket.socket, int]:
    """A connected stream to guest vsock `port` through the VMM socket `path`, and
    the host port the VMM reported. The socket is blocking, with no timeout."""
    path = Path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except TimeoutError:
            raise VsockTimeout(f"connecting to {path} timed out") from None
        except OSError as e:
            raise VsockUnreachable(f"cannot connect to the VMM's vsock socket {path}: "
                                   f"{e.strerror or e}") from e
        try:
            sock.sendall(f"CONNECT {port}\n".encode())
        except OSError as e:
            raise VsockRefused(f"vsock port {port} refused on {path}: {e}") from e
        host_port = parse_reply(_read_reply(sock, path, port))
        sock.settimeout(None)
        return sock, host_port
    except BaseException:
        sock.close()
        raise


def connector(path: Path | str, port: int, timeout_s: float = HANDSHAKE_TIMEOUT_S,
              retry_s: float = 0.0) -> Callable[[], socket.socket]:
    """A function that opens a fresh stream to guest `port` at every call (after a
    restore the VMM is a new process: each call starts a new handshake). With
    `retry_s`, a refused or unreachable port is retried for that long."""

    def open_stream() -> socket.socket:
        deadline = time.monotonic() + retry_s
        while True:
            try:
                return connect(path, port, timeout_s)[0]
            except (VsockRefused, VsockUnreachable):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    return open_stream


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly `n` bytes of the stream; VsockClosed when the peer ends it sooner."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except TimeoutError:
            raise VsockTimeout(f"vsock stream stalled after {len(buf)} of {n} bytes") from None
        except OSError as e:
            raise VsockClosed(f"vsock stream broke after {len(buf)} of {n} bytes: {e}") from e
        if not chunk:
            raise VsockClosed(f"the guest closed the vsock stream after {len(buf)} of "
                              f"{n} bytes")
        buf += chunk
    return bytes(buf)
