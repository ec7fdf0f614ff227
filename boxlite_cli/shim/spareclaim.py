"""Taking a spare VM (shim/spare.py): its files, and the claim a CLI makes on it.

Kept apart from the spare itself, so that the CLI loads nothing more than this."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from boxlite_cli.shim.prestart import send_box
from boxlite_cli.state.boxfiles import BoxFiles

SPARE_FLAG = "--spare"
SPARE_META = "spare.json"
ADOPT_SOCKET = "adopt.sock"
CLAIMED = b"ok"
# For the spare's "ok" (it answers at once, from accept): a stopped or stuck spare
# costs a start no more than this.
CLAIM_TIMEOUT_S = 0.5


def adopt_socket(spare_dir: Path) -> Path:
    return BoxFiles(spare_dir).sockets / ADOPT_SOCKET


def lock_path(spares_root: Path, key: str) -> Path:
    return spares_root / f"{key}.lock"


@dataclass
class ClaimedSpare:
    """A spare this process has taken: hand it the box. Closed without one (this
    process failed or exited first), the spare powers off and removes itself."""

    pid: int
    directory: Path
    sock: socket.socket

    def hand_over(self, box_dir: Path, log_fd: int, ready_fd: int,
                  output_fds: tuple[int, ...]) -> None:
        send_box(self.sock, box_dir, log_fd, ready_fd, output_fds)


def claim_spare(spare_dir: Path, pid: int) -> ClaimedSpare | None:
    """Take the spare in `spare_dir` (None: not ready, taken by another, or gone)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(CLAIM_TIMEOUT_S)
        sock.connect(str(adopt_socket(spare_dir)))
        if sock.recv(16) != CLAIMED:
            raise OSError("not claimed")
        sock.settimeout(None)
    except OSError:
        sock.close()
        return None
    return ClaimedSpare(pid, spare_dir, sock)
