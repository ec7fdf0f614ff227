"""Thin ctypes wrappers for the syscalls the stdlib lacks: mount, umount2, reboot,
unshare and setns (Python 3.12 has the last two; the guest's is 3.11).

Calling mount(2) directly costs one syscall; ``/bin/mount`` costs a fork, an exec and
libmount's parsing, which is slow under TCG.
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

MNT_DETACH = 0x2

CLONE_NEWPID = 0x20000000

RB_POWER_OFF = 0x4321FEDC
RB_AUTOBOOT = 0x01234567


@cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    libc.mount.restype = ctypes.c_int
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.umount2.restype = ctypes.c_int
    libc.reboot.argtypes = [ctypes.c_int]
    libc.reboot.restype = ctypes.c_int
    libc.unshare.argtypes = [ctypes.c_int]
    libc.unshare.restype = ctypes.c_int
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.setns.restype = ctypes.c_int
    return libc


def _enc(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _raise(what: str, path: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}", path)


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2); raises OSError naming the file system and the target."""
    rc = _libc().mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data))
    if rc != 0:
        _raise(f"mount {fstype or source} on {target}", target)


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    if _libc().umount2(_enc(target), flags) != 0:
        _raise(f"umount {target}", target)


def unshare(flags: int) -> None:
    """unshare(2), for the calling thread."""
    if _libc().unshare(flags) != 0:
        _raise("unshare", "")


def setns(fd: int, nstype: int) -> None:
    """setns(2), for the calling thread."""
    if _libc().setns(fd, nstype) != 0:
        _raise("setns", "")


def reboot(cmd: int) -> None:
    """reboot(2); returns only if it failed."""
    if _libc().reboot(cmd) != 0:
        _raise("reboot", "")


def power_off() -> None:
    """Flush and power the VM off (QEMU runs with -no-reboot, so a reboot ends it too)."""
    os.sync()
    for cmd in (RB_POWER_OFF, RB_AUTOBOOT):
        try:
            reboot(cmd)
        except OSError:
            continue
    os._exit(1)
