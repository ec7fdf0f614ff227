"""docker's --tmpfs and --read-only in the box's root: tmpfs mounts at the box's paths,
then the root itself made read-only for the box's processes (a read-only bind remount of
its mount point: the superblock stays writable, the agent's own use of it too)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from boxlite_agent import syscalls
from boxlite_agent.errors import InvalidArgument
from boxlite_agent.mounts import is_mountpoint
from boxlite_agent.resolve import mkdir_all_in_root

MountFn = Callable[[str | None, str, str | None, int, str | None], None]

MAX_TMPFS = 16
MAX_ID = (1 << 32) - 2
KERNEL_DIRS = ("/proc", "/sys", "/dev")


@dataclass(frozen=True)
class TmpfsSpec:
    """One TmpfsMount of InitRequest."""

    target: str
    size_bytes: int = 0
    mode: int = 0o1777
    readonly: bool = False
    exec_: bool = False
    suid: bool = False
    dev: bool = False
    uid: int = 0
    gid: int = 0

    def flags(self) -> int:
        return ((syscalls.MS_RDONLY if self.readonly else 0)
                | (0 if self.exec_ else syscalls.MS_NOEXEC)
                | (0 if self.suid else syscalls.MS_NOSUID)
                | (0 if self.dev else syscalls.MS_NODEV))

    def data(self) -> str:
        size = f",size={self.size_bytes}" if self.size_bytes else ""
        return f"mode={self.mode:o},uid={self.uid},gid={self.gid}{size}"


SHM = "/dev/shm"  # a box's own tmpfs, which docker's --shm-size sizes (a remount)


def check(specs: list[TmpfsSpec]) -> None:
    """What the host sent, checked as untrusted: paths, numbers, no duplicates."""
    if len(specs) > MAX_TMPFS:
        raise InvalidArgument(f"at most {MAX_TMPFS} tmpfs mounts")
    seen: set[str] = set()
    for t in specs:
        target = posixpath.normpath(t.target) if t.target.startswith("/") else ""
        if (not target or target == "/" or "\0" in target or target in seen
                or (target != SHM
                    and any(target == k or target.startswith(k + "/") for k in KERNEL_DIRS))):
            raise InvalidArgument(f"invalid tmpfs target {t.target!r}")
        if t.mode > 0o7777 or t.uid > MAX_ID or t.gid > MAX_ID or t.size_bytes > 1 << 40:
            raise InvalidArgument(f"invalid tmpfs options for {t.target!r}")
        seen.add(target)


def mount_tmpfs(root: str, specs: list[TmpfsSpec], mount: MountFn = syscalls.mount,
                is_mounted: Callable[[str], bool] = is_mountpoint) -> list[str]:
    """Each tmpfs at its path in `root` (made if missing, resolved inside the root),
    parents before children; a second call mounts nothing twice. The box paths of the
    ones mounted now."""
    check(specs)
    made = []
    for t in sorted(specs, key=lambda s: posixpath.normpath(s.target).count("/")):
        try:
            target = mkdir_all_in_root(root, posixpath.normpath(t.target))
            if posixpath.normpath(t.target) == SHM:  # (the box's own, made larger or smaller)
                # (a new tmpfs's size when none is given: half the RAM; a remount keeps
                # its mode and owner, so they are set on it after)
                data = t.data() if t.size_bytes else f"{t.data()},size=50%"
                mount(None, target, None, syscalls.MS_REMOUNT | t.flags(), data)
                os.chown(target, t.uid, t.gid)
                os.chmod(target, t.mode)
            elif not is_mounted(target):
                mount("tmpfs", target, "tmpfs", t.flags(), t.data())
                made.append(posixpath.normpath(t.target))
        except OSError as e:  # (the box's own setting: the image has a file there...)
            raise InvalidArgument(f"--tmpfs {t.target}: cannot mount there: "
                                  f"{e.strerror or e}") from None
    return made


def make_read_only(root: str, mount: MountFn = syscalls.mount) -> None:
    """The box's root mount read-only (its other mounts keep their own modes)."""
    mount(None, root, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY, None)
