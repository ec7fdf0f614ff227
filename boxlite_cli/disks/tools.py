"""Running the disk tools (qemu-img, mkfs.ext4) with errors that say what failed."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from boxlite_cli.childdeath import die_with_parent
from boxlite_cli.errors import BoxliteError, DiskError

# QEMU's words for a disk another process holds (the one or the other comes last)
QEMU_DISK_LOCKED = ('Failed to get "write" lock', "Is another process using the image")


def disk_locked(error: BoxliteError) -> bool:
    """The error is QEMU's (or qemu-img's) finding the disk held by another process."""
    return any(words in error.message for words in QEMU_DISK_LOCKED)


def run_tool(cmd: list[str], what: str) -> str:
    """Run a disk tool; DiskError with its last stderr line on failure."""
    exe = shutil.which(cmd[0]) or shutil.which(cmd[0], path="/usr/sbin:/sbin")
    if exe is None:
        raise DiskError(f"{what}: {cmd[0]} is not installed", hint="run: boxlite doctor")
    # (killed with us: a merge left running by a killed CLI went on outside the box's
    # lock, and the steps after it never came)
    proc = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, check=False,
                          preexec_fn=functools.partial(die_with_parent, os.getpid()))
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise DiskError(f"{what}: {detail}")
    return proc.stdout
