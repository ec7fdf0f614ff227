"""Starting a box's shim so that its VMM starts first (or handing the box to the shim
prestarted for it: see shim/prestart.py).

`launch_shim` forks this process (the CLI, its modules already imported). The child
starts the VMM at once (vmmproc.start_early: a restore begins loading its memory),
then executes itself into `python -m boxlite_cli.shim`, which adopts that VMM: it is
the same process, so the VMM stays its child and dies with it. Compared with a shim
that starts the VMM itself, the VMM starts before the shim's Python start-up and
imports instead of after them.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

from boxlite_cli.shim import prestart
from boxlite_cli.shim.child import ChildProcess
from boxlite_cli.shim.vmmproc import VmmProcess, start_early

EARLY_VMM_ENV = "BOXLITE_SHIM_VMM"  # the adopted VMM (or why none), for the shim


def shim_command(box_dir: Path, ready_fd: int) -> list[str]:
    return [sys.executable, "-m", "boxlite_cli.shim", str(box_dir), str(ready_fd)]


def describe_early(early: VmmProcess | BaseException) -> str:
    """EARLY_VMM_ENV's value."""
    if isinstance(early, BaseException):
        return json.dumps({"error": str(early) or type(early).__name__,
                           "hint": getattr(early, "hint", None)})
    return json.dumps({"pid": early.process.pid, "command": early.command,
                       "restore_begun": early.restore_begun, "ram_fd": early.ram_fd})


def launch_shim(box_dir: Path, log: Path, ready_fd: int,
                output_fds: tuple[int, ...] = ()) -> ChildProcess:
    """The box's shim, in a session of its own, its stdout and stderr appended to `log`;
    it inherits `ready_fd` and `output_fds` and no other descriptor of ours. The shim
    this process prestarted (shim/prestart.py) when there is one, else a new one."""
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        waiting = prestart.take()
        if waiting is not None:
            try:
                waiting.hand_over(box_dir, log_fd, ready_fd, output_fds)
                return ChildProcess(waiting.pid, waiting.command)
            except OSError:
                pass  # it is gone: start one the usual way
        pid = os.fork()
        if pid == 0:
            _become_shim(box_dir, log_fd, ready_fd, output_fds)
    finally:
        os.close(log_fd)
    return ChildProcess(pid, shim_command(box_dir, ready_fd))


def _keep_only(keep: set[int]) -> None:
    """Close every descriptor not in `keep` (what our own parent let us inherit must not
    reach the long-lived shim: a `$(boxlite run -d ...)` would wait for it)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):  # the listing's own descriptor
                os.close(fd)


def _become_shim(box_dir: Path, log_fd: int, ready_fd: int,
                 output_fds: tuple[int, ...]) -> NoReturn:
    """In the forked child: never returns into the caller's code."""
    try:
        # No collection of the caller's garbage here: a file object it finalised
        # would close a descriptor number that may be reused by then.
        gc.disable()
        prestart.ignore_stop_signals()
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        early = start_early(box_dir)
        os.environ[EARLY_VMM_ENV] = describe_early(early)
        keep = {0, 1, 2, ready_fd, *output_fds}
        if isinstance(early, VmmProcess) and early.ram_fd is not None:
            keep.add(early.ram_fd)  # the shim's template save reads the RAM from it
        _keep_only(keep)  # (the VMM, a Popen with close_fds, got none of them)
        for fd in keep:
            os.set_inheritable(fd, True)
        command = shim_command(box_dir, ready_fd)
        os.execv(command[0], command)
    except BaseException as e:  # the child must end here, whatever happened
        try:
            os.write(2, f"boxlite: could not start the shim: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(125)
