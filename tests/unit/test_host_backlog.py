"""widen_listen_backlogs: a child's listening socket with a backlog of 1 (as QEMU's
slirp hostfwd) takes a burst of connections once widened."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from boxlite_cli.shim.backlog import widen_listen_backlogs

LISTENER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
    "u = socket.socket(socket.AF_UNIX)\n"  # a socket that does not listen: left alone
    "print(s.getsockname()[1], flush=True)\n"
    "time.sleep(60)\n"  # never accepts: only the kernel's queue takes connections
)


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield proc, port
    proc.kill()
    proc.wait()


def connections_taken(port: int, tries: int) -> int:
    """How many of `tries` connections complete their handshake within 0.3 s each."""
    taken, held = 0, []
    for _ in range(tries):
        s = socket.socket()
        s.settimeout(0.3)
        try:
            s.connect(("127.0.0.1", port))
            taken += 1
        except OSError:
            pass
        held.append(s)
    for s in held:
        s.close()
    return taken


def test_a_backlog_of_one_takes_a_burst_once_widened(
        listener: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = listener
    assert connections_taken(port, 6) < 6  # backlog 1: the queue is full after 2
    assert widen_listen_backlogs(proc.pid, 64) == 1
    assert connections_taken(port, 20) == 20


def test_a_process_we_cannot_read_is_an_error() -> None:
    with pytest.raises(OSError):
        widen_listen_backlogs(2**22 + 12345)  # no such process
