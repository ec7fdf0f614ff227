"""The plain exec socket between a CLI and a box's shim (`exec.sock`, mode 0600).

A non-interactive `boxlite exec` needs no gRPC of its own: it connects, sends one
request line (JSON) with its stdout and stderr attached (SCM_RIGHTS), and reads reply
lines. The shim starts the process through its agent connection, writes the output
straight into those fds, and answers:

    {"exec_id": ID}                    the process runs (or: {"exit_code", "error"})
    {"exit_code": N}                   it ended, all its output written

While it runs, the CLI may send {"signal": N} lines; closing the connection means
the CLI is gone (the process runs on, its output is no longer written).
This module is light (no gRPC): both sides import it.
"""

from __future__ import annotations

import array
import json
import socket
from typing import Any

MAX_LINE = 16 << 20  # one request: argv and environment (execve takes 2 MiB; JSON escapes)
FD_COUNT = 2  # stdout, stderr


class WireError(Exception):
    """The other side broke the protocol or went away."""


def send_request(sock: socket.socket, request: dict[str, Any], fds: tuple[int, int]) -> None:
    data = json.dumps(request).encode() + b"\n"
    if len(data) > MAX_LINE:
        raise WireError(f"the request is too large ({len(data)} bytes)")
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    # Anything past the first chunk goes without the fds.


def recv_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request line and the fds that came with it (all of them the caller's to
    close, whatever happens)."""
    fds: list[int] = []
    buf = b""
    while b"\n" not in buf:
        data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(4 * FD_COUNT))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                fds += list(got)
        if not data:
            raise WireError("the connection closed before a whole request came")
        buf += data
        if len(buf) > MAX_LINE:
            raise WireError("the request is too large")
    return _message(buf.partition(b"\n")[0], "the request"), fds


def _message(line: bytes, what: str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError as e:
        raise WireError(f"{what} is not JSON: {e}") from None
    if not isinstance(message, dict):
        raise WireError(f"{what} is not an object")
    return message


def send_line(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


class LineReader:
    """JSON lines from a socket, bounded in length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self) -> dict[str, Any] | None:
        """The next message, or None at the end of the stream."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
            if len(self.buf) > MAX_LINE:
                raise WireError("a line is too long")
        line, _, self.buf = self.buf.partition(b"\n")
        return _message(line, "a line")
