"""`-v` volumes in the guest: virtio-9p shares mounted into the container root.

Each share arrives as a 9p mount tag. A directory volume is mounted on a hidden
directory under /run/boxlite/volumes/<tag> (outside the container root) and bind-
mounted on its target; a single-file volume's share is a directory holding that one
file, which is bind-mounted on the target. Targets are resolved inside the
container root (resolve.py), so a symlinked target stays inside it. `readonly`
mounts the share read-only (the host side also exports it read-only).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from boxlite_agent import syscalls
from boxlite_agent.errors import FailedPrecondition, InvalidArgument
from boxlite_agent.mounts import holds_share, is_mountpoint
from boxlite_agent.resolve import ensure_file_in_root, mkdir_all_in_root, resolve_in_root

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
    populate: bool = False  # still empty: first gets what the image has at target


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
                  is_mounted: Callable[[str], bool] = is_mountpoint,
                  has_share: Callable[[str], bool] = holds_share) -> None:
    """Mount every volume (parents before children); a second call mounts nothing twice.
    A volume goes over what is mounted on its target already (the box's /etc/hosts,
    hostname and resolv.conf: docker's -v replaces those too)."""
    check(volumes)
    if not volumes:
        return
    load_modules()
    ordered = sorted(volumes, key=lambda v: v.target.rstrip("/").count("/"))
    for v in ordered:  # the shares, filled where asked while the image is still in view
        share = os.path.join(hidden, v.tag)
        os.makedirs(share, mode=0o700, exist_ok=True)
        ro = syscalls.MS_RDONLY if v.readonly else 0
        if not is_mounted(share):
            mount(v.tag, share, "9p", ro | syscalls.MS_NOSUID | syscalls.MS_NODEV, NINEP_OPTIONS)
            if v.populate and not v.file_name and not v.readonly:
                fill_from_image(root, v.target, share)
    for v in ordered:  # then onto their targets, parents before children
        share = os.path.join(hidden, v.tag)
        try:  # (the box's own setting: the image may have a file, or a directory, there)
            if v.file_name:
                source = os.path.join(share, v.file_name)
                if not os.path.isfile(source):
                    raise FailedPrecondition(f"volume {v.target}: the shared file is missing")
                target = ensure_file_in_root(root, v.target)
            else:
                source = share
                target = mkdir_all_in_root(root, v.target)
        except OSError as e:
            raise InvalidArgument(f"volume {v.target}: cannot mount there: "
                                  f"{e.strerror or e}") from None
        if has_share(target):
            continue
        mount(source, target, None, syscalls.MS_BIND, None)
        if v.readonly:
            mount(None, target, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY
                  | syscalls.MS_NOSUID | syscalls.MS_NODEV, None)


def _linked(existing: str, new: str) -> bool:
    """`new` made a hard link to `existing`; False where the share cannot (then a copy)."""
    try:
        os.link(existing, new, follow_symlinks=False)
    except OSError:
        return False
    return True


def fill_from_image(root: str, target: str, share: str) -> None:
    """Copy what the image has at container path `target` (a directory) into the empty
    share: files, directories and symlinks with their modes, owners and times (device
    nodes, FIFOs and sockets are left out; the share is nodev). Nothing is followed:
    `target` resolves inside the root, and links in the tree are copied as links."""
    source = resolve_in_root(root, target)
    if not os.path.isdir(source) or os.path.islink(source) or os.listdir(share):
        return
    dir_times: list[tuple[str, os.stat_result]] = []  # (set last: filling one moves its time)
    copied: dict[tuple[int, int], str] = {}  # a hard-linked file's first copy, by its inode
    for dirpath, dirnames, filenames in os.walk(source):
        dest_dir = os.path.join(share, os.path.relpath(dirpath, source))
        for name in dirnames + filenames:
            src, dst = os.path.join(dirpath, name), os.path.join(dest_dir, name)
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISDIR(st.st_mode):
                os.mkdir(dst, 0o700)
            elif stat.S_ISREG(st.st_mode):
                first = copied.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
                if first is not None and _linked(first, dst):
                    continue  # (one file under two names, as in the image: docker's too)
                shutil.copyfile(src, dst, follow_symlinks=False)
                if st.st_nlink > 1:
                    copied[(st.st_dev, st.st_ino)] = dst
            else:
                continue
            os.lchown(dst, st.st_uid, st.st_gid)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(dst, stat.S_IMODE(st.st_mode))
            if stat.S_ISDIR(st.st_mode):
                dir_times.append((dst, st))
            else:
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    top = os.lstat(source)  # (the share itself takes the image directory's owner and mode)
    os.chown(share, top.st_uid, top.st_gid)
    os.chmod(share, stat.S_IMODE(top.st_mode))
    for path, st in [*reversed(dir_times), (share, top)]:  # (the deepest first)
        with contextlib.suppress(OSError):  # (a time is not worth a failed start)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
