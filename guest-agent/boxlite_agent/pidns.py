"""The box's own PID namespace: its processes see only each other, and PID 1 there is
the box's init (the exec helper run as boxlite-init, guest-agent/spawn/), not the guest's.

Without it, root in a box could signal the guest agent (`kill -9 -1` ended the box),
reach the agent's root through /proc/1/root, and `ps` showed the guest's processes.

How: once the container's file systems are mounted (VmGuest.init), the agent unshares
a PID namespace in the calling thread only (it changes that thread's namespace for
children), starts the helper there (the namespace's first process: its PID 1), and
goes back. The helper mounts the namespace's proc over the container's /proc. Every
later start of a box process does the same with setns around its vfork, one thread at
a time under a lock: the process is in the box's namespace while its parent is still
the agent, which waits for it and signals it as before. Orphans go to the box's init,
which reaps them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator

from boxlite_agent import syscalls

INIT_NAME = "boxlite-init"  # the box's PID 1, as `ps` in the box shows it


class BoxPids:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ns: int | None = None  # the box's namespace (an fd of its init's ns/pid)
        self._own: int | None = None  # the agent's namespace, to go back to
        self.init: subprocess.Popen[bytes] | None = None

    def start(self, root: str, helper: str) -> None:
        """Make the namespace and its init, once; raises OSError when that failed (the
        box's processes then stay in the guest's namespace)."""
        with self._lock:
            if self._ns is not None:
                return
            own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            err_r, err_w = os.pipe()
            try:
                init = self._start_init(root, helper, own, err_w)
                os.close(err_w)
                err_w = -1
                said = b""
                while chunk := os.read(err_r, 4096):  # end of file: ready
                    said += chunk
            except BaseException:
                os.close(own)
                raise
            finally:
                os.close(err_r)
                if err_w >= 0:
                    os.close(err_w)
            if said or init.poll() is not None:
                init.wait()
                os.close(own)
                raise OSError(f"the box's init failed: {said.decode(errors='replace')}")
            self._ns = os.open(f"/proc/{init.pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            self._own = own
            self.init = init

    @staticmethod
    def _start_init(root: str, helper: str, own: int, err_w: int) -> subprocess.Popen[bytes]:
        syscalls.unshare(syscalls.CLONE_NEWPID)
        try:
            return subprocess.Popen([INIT_NAME], executable=helper,
                                    env={"BOXLITE_INIT": f"{err_w}:{root}"},
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True,
                                    close_fds=True, pass_fds=(err_w,))
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWPID)

    def namespace_id(self) -> int | None:
        """The inode of the box's PID namespace (None: the box has none of its own)."""
        return None if self._ns is None else os.fstat(self._ns).st_ino

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """What this thread starts meanwhile is the box's (as is: without a namespace)."""
        if self._ns is None or self._own is None:
            yield
            return
        with self._lock:
            syscalls.setns(self._ns, syscalls.CLONE_NEWPID)
            try:
                yield
            finally:
                syscalls.setns(self._own, syscalls.CLONE_NEWPID)


BOX_PIDS = BoxPids()
