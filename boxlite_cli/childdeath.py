"""Helper children that die with the process that started them (prctl PDEATHSIG)."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
# Looked up here, not in the forked child (the pre-exec steps below): another thread
# may hold the dynamic loader's lock at the fork, and a dlopen in the child would then
# wait for it forever.
LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int) -> None:
    """In a helper child of `parent` (before its exec): get SIGKILL when the parent
    dies, so no helper outlives it. A parent that died before this (between the fork
    and here) left the child to init already, and the signal would never come: then
    it ends now."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
