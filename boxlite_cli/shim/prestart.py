"""A shim started before the CLI knows its box, so that its Python start-up overlaps
the CLI's own.

A shim spends ~0.2 s importing gRPC and protobuf before it can talk to a guest, and
the CLI spends about as long on its own start-up and on creating the box. On a warm
start both sat on the critical path, one after the other. For the commands that start
a box (`run`, `start`, `restart`) the console script (boxlite_cli/entry.py) calls
`begin` first thing: it forks and the child executes itself into `python -m
boxlite_cli.shim --prestarted FD`, in a session of its own, with /dev/null as its
stdio and no descriptor of ours but one end of a socket pair. It imports the shim in
a thread and waits. `launch_shim` (shim/launcher.py) hands it the box: one message
with the box directory and, as SCM_RIGHTS, the log, the ready pipe and the output
fds. Then it starts the VMM at once, and a warm start's restore is loaded and the VM
resumed over QMP (stdlib only) while the import may still be going on: when the CLI
was quick, the import used to hold the VMM's start back by up to ~0.15 s. Then it
runs as that box's shim. A CLI that never hands it a box (an error, `--help`, a box
already running) closes its end by exiting, and the prestarted shim exits as soon as
its import is done, having touched nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

PRESTARTED_FLAG = "--prestarted"
_MAX_FDS = 8  # the log, the ready pipe, the output fds
_MESSAGE_MAX = 64 * 1024


@dataclass
class Prestarted:
    """Our side of a prestarted shim: its pid (our child) and our end of its socket."""

    pid: int
    sock: socket.socket
    command: list[str]

    def hand_over(self, box_dir: Path, log_fd: int, ready_fd: int,
                  output_fds: tuple[int, ...]) -> None:
        """Make it the shim of `box_dir` (OSError when it is gone: start another)."""
        send_box(self.sock, box_dir, log_fd, ready_fd, output_fds)


@dataclass
class HandedBox:
    """What a waiting shim is handed: the box, its shim log, the ready pipe, the output."""

    box_dir: Path
    log_fd: int
    ready_fd: int
    output_fds: tuple[int, ...]


def send_box(sock: socket.socket, box_dir: Path, log_fd: int, ready_fd: int,
             output_fds: tuple[int, ...]) -> None:
    """Hand `box_dir` to the shim waiting at the other end of `sock` (closed after)."""
    message = json.dumps({"box_dir": str(box_dir)}).encode()
    try:
        socket.send_fds(sock, [message], [log_fd, ready_fd, *output_fds])
    finally:
        sock.close()


def receive_box(sock: socket.socket) -> HandedBox | None:
    """The box handed over on `sock` (closed after), or None when none came."""
    try:
        message, fds, _, _ = socket.recv_fds(sock, _MESSAGE_MAX, _MAX_FDS)
    finally:
        sock.close()
    try:
        if not message or len(fds) < 2:
            raise ValueError("no box")
        box_dir = Path(str(json.loads(message)["box_dir"]))
    except (ValueError, KeyError, TypeError):
        for fd in fds:
            os.close(fd)
        return None
    log_fd, ready_fd, *output_fds = fds
    return HandedBox(box_dir, log_fd, ready_fd, tuple(output_fds))


_waiting: Prestarted | None = None


def shim_command(sock_fd: int) -> list[str]:
    # The home in the command line too, as every other shim and VMM of that home has.
    home = os.environ.get("BOXLITE_HOME", "")
    return [sys.executable, "-m", "boxlite_cli.shim", PRESTARTED_FLAG, str(sock_fd), home]


def ignore_stop_signals() -> None:
    """In a forked child that becomes a shim: the signals that stop a box are ignored
    (kept so across the exec) until the shim installs its own handlers. Not the CLI's
    handlers (they would run the CLI's clean-up in this child), and not the default
    (a stop now would kill this process, and the box's record with it, while the VMM
    starts): a stop meanwhile leaves its mark, which the shim reads (shim/main.py)."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def begin() -> None:
    """Start a shim for the box this process is about to start (see the module doc)."""
    global _waiting
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # (Never 0-2, even when we were started with those closed: they become /dev/null.)
    sock_fd = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
    theirs.close()
    command = shim_command(sock_fd)
    pid = os.fork()
    if pid == 0:
        ours.close()
        _become_waiting_shim(sock_fd, command)
    os.close(sock_fd)
    _waiting = Prestarted(pid, ours, command)


def take() -> Prestarted | None:
    """The prestarted shim, once (None when there is none, or it was taken)."""
    global _waiting
    waiting, _waiting = _waiting, None
    return waiting


def _become_waiting_shim(sock_fd: int, command: list[str]) -> NoReturn:
    """In the forked child: never returns into the caller's code."""
    try:
        ignore_stop_signals()  # (until it is a box's shim)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        for name in os.listdir("/proc/self/fd"):
            if int(name) not in (0, 1, 2, sock_fd):
                with contextlib.suppress(OSError):  # (the listing's own descriptor)
                    os.close(int(name))
        os.set_inheritable(sock_fd, True)
        os.execv(command[0], command)
    finally:
        os._exit(125)


def _import_shim() -> None:
    with contextlib.suppress(Exception):  # (then the import fails again, and is reported)
        import boxlite_cli.shim.main  # noqa: F401


def serve(sock_fd: int) -> int:
    """`python -m boxlite_cli.shim --prestarted FD`: import the shim (in a thread),
    wait for the box, start its VMM at once (a restore is loaded and resumed while the
    import goes on), then be its shim. 0 when the CLI went away without handing one over."""
    from boxlite_cli.shim.vmmproc import start_early  # light: no gRPC

    importing = threading.Thread(target=_import_shim, name="import", daemon=True)
    importing.start()  # the slow part (gRPC, protobuf), while the CLI works
    handed = receive_box(socket.socket(fileno=sock_fd))
    if handed is None:
        importing.join()
        return 0
    log_to(handed.log_fd)
    early = start_early(handed.box_dir, restore=True)
    importing.join()
    from boxlite_cli.shim.main import main

    return main(["shim", str(handed.box_dir), str(handed.ready_fd)], early,
                output_fds=handed.output_fds)


def log_to(log_fd: int) -> None:
    """Our stdout and stderr go to the box's shim log from now on (`log_fd` is closed)."""
    for fd in (1, 2):
        os.dup2(log_fd, fd)
    os.close(log_fd)
