"""What `ps`, `pkill` and `killall` in a box see of the agent's own processes.

PID 1 and the agent are `/usr/bin/python3 -m boxlite_agent.init`. A workload that
runs `pkill -f python` or `killall python3` (a common way to stop a dev server)
would end the agent, and with it the box. So both rename themselves: the name the
kernel keeps (comm, PR_SET_NAME: what `killall` and `pkill` match) and the command
line (/proc/PID/cmdline: what `pkill -f` and `ps` show), which is made to point at a
buffer of ours (PR_SET_MM_ARG_START/END; needs CAP_SYS_RESOURCE, as root in the VM
has). Best effort: a kernel that refuses leaves the old command line.
"""

from __future__ import annotations

import ctypes
import errno

PR_SET_NAME = 15
PR_SET_MM = 35
PR_SET_MM_ARG_START = 8
PR_SET_MM_ARG_END = 9

_buffers: list[ctypes.Array[ctypes.c_char]] = []  # (the command lines must stay alive)


def _prctl(libc: ctypes.CDLL, option: int, arg2: int, arg3: int = 0) -> int:
    return int(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                          ctypes.c_ulong(0), ctypes.c_ulong(0)))


def set_process_name(name: str) -> bool:
    """Make `name` this process's comm (first 15 bytes) and its whole command line;
    False when the command line could not be changed."""
    libc = ctypes.CDLL(None, use_errno=True)
    raw = name.encode()
    comm = ctypes.create_string_buffer(raw[:15])
    libc.prctl(ctypes.c_int(PR_SET_NAME), comm, ctypes.c_ulong(0), ctypes.c_ulong(0),
               ctypes.c_ulong(0))
    line = ctypes.create_string_buffer(raw)  # (NUL-terminated: one argument)
    start = ctypes.addressof(line)
    new = {PR_SET_MM_ARG_START: start, PR_SET_MM_ARG_END: start + len(raw) + 1}
    old = _command_line_span()
    # The kernel wants start < end after each step: the order depends on where the
    # new buffer lies against the old command line.
    for first, second in ((PR_SET_MM_ARG_START, PR_SET_MM_ARG_END),
                          (PR_SET_MM_ARG_END, PR_SET_MM_ARG_START)):
        if _prctl(libc, PR_SET_MM, first, new[first]) != 0:
            if ctypes.get_errno() == errno.EINVAL:
                continue
            return False
        if _prctl(libc, PR_SET_MM, second, new[second]) == 0:
            _buffers.append(line)
            return True
        if old is not None:  # (not expected) put the first one back
            _prctl(libc, PR_SET_MM, first, old[first])
        return False
    return False


def _command_line_span() -> dict[int, int] | None:
    """The current arg_start and arg_end (fields 48 and 49 of /proc/self/stat)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # (fields[0] is field 3, the state)
        return {PR_SET_MM_ARG_START: int(fields[45]), PR_SET_MM_ARG_END: int(fields[46])}
    except (OSError, IndexError, ValueError):
        return None
