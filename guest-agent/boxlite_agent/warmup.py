"""Warming a guest up: before a primed template is saved, read what the first process
of a box reads; in a spare VM, start one process as a box's first would be started.

A box restored from the template gets a copy of the template's disk, so what the
guest's page cache holds of it stays true. Reading here, once, spares every box
those disk reads (slow under emulation) on its first exec: the agent's exec helper,
then in the container /etc/passwd and /etc/group (the user lookup), sh and true (the
PATH lookups), the dynamic loader named by sh and the C library. Reads only, nothing
of the image is run. Best effort.
"""

from __future__ import annotations

import struct

from boxlite_agent.command import DEFAULT_PATH, find_executable
from boxlite_agent.errors import AgentError, ExecFailure
from boxlite_agent.process import Execution
from boxlite_agent.resolve import resolve_in_root
from boxlite_agent.spawn import HELPER, ExecSpec, spawn
from boxlite_agent.users import lookup_user

PT_INTERP = 3
LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
            "/lib", "/usr/lib")
LIBC_NAMES = ("libc.so.6", "libc.musl-x86_64.so.1")
READ_LIMIT = 64 << 20


def elf_interpreter(data: bytes) -> str | None:
    """The PT_INTERP path of a little-endian ELF64 executable (None: static or not ELF)."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(min(phnum, 64)):
        at = phoff + i * phentsize
        if at + 0x28 > len(data):
            return None
        p_type, = struct.unpack_from("<I", data, at)
        if p_type == PT_INTERP:
            offset, = struct.unpack_from("<Q", data, at + 0x08)
            size, = struct.unpack_from("<Q", data, at + 0x20)
            path = data[offset:offset + min(size, 4096)].split(b"\0")[0]
            return path.decode(errors="replace") or None
    return None


def warm_page_cache(root: str) -> list[str]:
    """Read those files of the container at ``root``; the container paths read."""
    read: list[str] = []
    try:  # the agent's own disk (it is not copied, but never changes)
        with open(HELPER, "rb") as f:
            f.read(READ_LIMIT)
    except OSError:
        pass

    def take(path: str) -> bytes | None:
        try:  # symlinks (sh -> dash) resolved inside the root
            with open(resolve_in_root(root, path), "rb") as f:
                data = f.read(READ_LIMIT)
        except OSError:
            return None
        read.append(path)
        return data

    try:
        user = lookup_user(root, "")  # reads /etc/passwd and /etc/group
    except (AgentError, OSError):
        return read
    programs = []
    for name in ("sh", "true"):
        try:
            programs.append(find_executable(root, name, DEFAULT_PATH, "/", user))
        except (ExecFailure, OSError):
            continue
    interpreter = None
    for program in programs:
        data = take(program)
        if data is not None and interpreter is None:
            interpreter = elf_interpreter(data)
    if interpreter:
        take(interpreter)
    take("/etc/ld.so.cache")
    for directory in LIB_DIRS:
        for name in LIBC_NAMES:
            take(f"{directory}/{name}")
    return read



WARM_UP_ARGV0 = "boxlite-warm-up"
WARM_UP_WAIT_S = 30.0


def warm_spawn(root: str, hostname: str) -> int | None:
    """Start one process the way a box's first one is started and wait for it as Wait
    does (the user lookup, the pipes, vfork and exec of the helper, chroot into
    ``root``, the drop to the user, the exec; the output readers, the exit watcher),
    so a spare VM has that code translated before its box needs it. The program is
    the helper itself, from the agent's disk (ExecSpec.warm_up): nothing of the image
    runs. Run without its arguments it prints its usage and exits. Its exit status
    (None: it could not run). Best effort."""
    try:
        spawned = spawn(root, ExecSpec(argv=[WARM_UP_ARGV0], warm_up=True), hostname)
    except (AgentError, ExecFailure, OSError):
        return None
    execution = Execution(WARM_UP_ARGV0, spawned)
    status = execution.wait(WARM_UP_WAIT_S)
    execution.discard()
    return None if status is None else status.exit_code
