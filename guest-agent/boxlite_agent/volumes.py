"""`-v` volumes in the guest: virtio-9p shares mounted into the container root.

Each share arrives as a 9p mount tag. A directory volume is mounted on a hidden
directory under /run/boxlite/volumes/<tag> (outside the container root) and bind-
mounted on its target; a single-file volume's share is a directory holding that one
file, which is bind-mounted on the target. Targets are resolved inside the
container root (resolve.py), so a symlinked target stays inside it. `readonly`
mounts the share read-only (the host side also exports it read-only).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from boxlite_agent import syscalls
from boxlite_agent.errors import FailedPrecondition, InvalidArgument
from boxlite_agent.mounts import is_mountpoint
from boxlite_agent.resolve import ensure_file_in_root, mkdir_all_in_root

HIDDEN_DIR = "/run/boxlite/volumes"
MODULES = ("9pnet_virtio", "9p")
# msize: the largest 9p message; the 8 KiB default makes big files crawl.
NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=262144,cache=none,access=client"
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,31}\Z")

MountFn = Callable[[str | None, str, str | None, int, str | None], None]


@dataclass(frozen=True)
class VolumeSpec:
    tag: str
    target: str
    readonly: bool = False
    file_name: str = ""


def check(volumes: list[VolumeSpec]) -> None:
    for v in volumes:
        if not _TAG.match(v.tag):
            raise InvalidArgument(f"invalid volume tag {v.tag!r}")
        if not v.target.startswith("/") or v.target.rstrip("/") == "" or "\0" in v.target:
            raise InvalidArgument(f"invalid volume target {v.target!r}")
        if v.file_name and ("/" in v.file_name or v.file_name in (".", "..")):
            raise InvalidArgument(f"invalid volume file name {v.file_name!r}")


def load_modules() -> None:
    """modprobe the 9p transport (once; the agent root carries the modules)."""
    if os.path.isdir("/sys/module/9p") and os.path.isdir("/sys/module/9pnet_virtio"):
        return
    proc = subprocess.run(["modprobe", "-a", *MODULES], capture_output=True, check=False)
    if proc.returncode != 0:
        raise FailedPrecondition(f"cannot load 9p: {proc.stderr.decode(errors='replace').strip()}")


def mount_volumes(root: str, volumes: list[VolumeSpec], hidden: str = HIDDEN_DIR,
                  mount: MountFn = syscalls.mount,
                  is_mounted: Callable[[str], bool] = is_mountpoint) -> None:
    """Mount every volume (parents before children); a second call mounts nothing twice."""
    check(volumes)
    if not volumes:
        return
    load_modules()
    for v in sorted(volumes, key=lambda v: v.target.rstrip("/").count("/")):
        share = os.path.join(hidden, v.tag)
        os.makedirs(share, mode=0o700, exist_ok=True)
        ro = syscalls.MS_RDONLY if v.readonly else 0
        if not is_mounted(share):
            mount(v.tag, share, "9p", ro | syscalls.MS_NOSUID | syscalls.MS_NODEV, NINEP_OPTIONS)
        if v.file_name:
            source = os.path.join(share, v.file_name)
            if not os.path.isfile(source):
                raise FailedPrecondition(f"volume {v.target}: the shared file is missing")
            target = ensure_file_in_root(root, v.target)
        else:
            source = share
            target = mkdir_all_in_root(root, v.target)
        if is_mounted(target):
            continue
        mount(source, target, None, syscalls.MS_BIND, None)
        if v.readonly:
            mount(None, target, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY
                  | syscalls.MS_NOSUID | syscalls.MS_NODEV, None)
