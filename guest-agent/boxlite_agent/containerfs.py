"""The container's kernel file systems and /etc files, set up inside its rootfs.

Every target is resolved with resolve.py, so an image whose /etc/hosts is a symlink
cannot make the agent mount anything outside the rootfs (and symlinked /proc, /sys,
/dev are refused). Each step checks
the mount table first, so running it twice mounts nothing twice.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass

from boxlite_agent import console, syscalls
from boxlite_agent.errors import FailedPrecondition
from boxlite_agent.mounts import is_mountpoint
from boxlite_agent.netconf import NO_NETWORK, NetSetup, hosts_file, resolv_conf
from boxlite_agent.resolve import container_path, ensure_file_in_root, mkdir_all_in_root

MountFn = Callable[[str | None, str, str | None, int, str | None], None]


@dataclass(frozen=True)
class MountSpec:
    target: str
    fstype: str
    source: str
    flags: int
    data: str | None


_NOSUID, _NODEV, _NOEXEC = syscalls.MS_NOSUID, syscalls.MS_NODEV, syscalls.MS_NOEXEC

CONTAINER_MOUNTS = (
    MountSpec("/proc", "proc", "proc", _NOSUID | _NODEV | _NOEXEC, None),
    MountSpec("/sys", "sysfs", "sysfs", syscalls.MS_RDONLY | _NOSUID | _NODEV | _NOEXEC, None),
    MountSpec("/dev", "tmpfs", "tmpfs", _NOSUID | syscalls.MS_STRICTATIME, "mode=755,size=65536k"),
    MountSpec("/dev/pts", "devpts", "devpts", _NOSUID | _NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5"),
    MountSpec("/dev/shm", "tmpfs", "shm", _NOSUID | _NODEV | _NOEXEC, "mode=1777,size=65536k"),
)

# The cgroup file system, read-only, as docker gives it: a program of the box reads its
# limits there (cpu.max, pids.max, memory.events; /proc/self/cgroup names the group), as
# the JVM, Go and .NET runtimes do to size themselves. (In the sysfs just mounted.) It is
# mounted, then made read-only: a read-only mount would make the one hierarchy's
# superblock read-only, the agent's mount of it too (cgroups.py could make no group).
CGROUP_MOUNT = MountSpec("/sys/fs/cgroup", "cgroup2", "cgroup2", _NOSUID | _NODEV | _NOEXEC, None)

DEV_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)


def populate_dev(dev: str) -> None:
    """The standard device nodes and links in a fresh /dev (host path ``dev``)."""
    for name, major, minor in DEV_NODES:
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(path, 0o666)
    for name, target in DEV_LINKS:
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.symlink(target, path)


def mount_kernel_filesystems(
    root: str, mount: MountFn = syscalls.mount, is_mounted: Callable[[str], bool] = is_mountpoint,
    cgroup: str | None = None,
) -> None:
    """proc, read-only sysfs, a tmpfs /dev with its nodes, devpts, /dev/shm and the
    cgroup file system (`cgroup`: the box's group, which the box sees as its root).

    An image whose /proc, /sys or /dev is a symlink is refused: mounting at the
    link's target would stay inside the rootfs but could cover anything (even ``/``).
    """
    for spec in CONTAINER_MOUNTS:
        target = mkdir_all_in_root(root, spec.target)
        if target != os.path.join(os.path.abspath(root), spec.target.lstrip("/")):
            raise FailedPrecondition(
                f"the image's {spec.target} is a symlink (to {container_path(root, target)}):"
                f" refusing to mount {spec.fstype} there"
            )
        if not is_mounted(target):
            mount(spec.source, target, spec.fstype, spec.flags, spec.data)
        if spec.target == "/dev":
            populate_dev(target)
    _mount_cgroup(root, mount, is_mounted, cgroup)


# runc's read-only paths of a container's /proc: the guest kernel's knobs (/proc/sys:
# core_pattern would run a helper of the box's choosing outside the box, as the
# guest's root), its IRQ and bus settings, and sysrq-trigger (root in the box, even
# with every capability dropped, could reboot or crash its VM with one write)
READ_ONLY_PROC_PATHS = ("bus", "fs", "irq", "sys", "sysrq-trigger")


def read_only_proc_paths(root: str, mount: MountFn = syscalls.mount,
                         is_mounted: Callable[[str], bool] = is_mountpoint) -> None:
    """READ_ONLY_PROC_PATHS of the box's /proc read-only, as runc makes them (a box
    process without CAP_SYS_ADMIN cannot remount them). Once the box's PID namespace
    has its proc on the box's /proc (pidns.py). Best effort, each: one the kernel
    lacks is passed over."""
    proc = os.path.join(os.path.abspath(root), "proc")
    for name in READ_ONLY_PROC_PATHS:
        target = os.path.join(proc, name)
        if not os.path.exists(target) or is_mounted(target):
            continue
        try:
            mount(target, target, None, syscalls.MS_BIND, None)
            mount(None, target, None, syscalls.MS_REMOUNT | syscalls.MS_BIND
                  | syscalls.MS_RDONLY | _NOSUID | _NODEV | _NOEXEC, None)
        except OSError as e:
            console.log(f"boxlite-agent: /proc/{name} stays writable in the box: {e}")


def _mount_cgroup(root: str, mount: MountFn, is_mounted: Callable[[str], bool],
                  group: str | None) -> None:
    """CGROUP_MOUNT, where the box's sysfs has its place (a kernel without cgroups has
    none): the box's `group` bound there, as docker's container sees its own group at
    /sys/fs/cgroup (cpu.max, memory.events...; its processes' cgroup namespace is
    rooted there too: boxlite-spawn.c), else the whole file system. A failure is said
    on the console: the box runs on without it."""
    target = os.path.join(os.path.abspath(root), CGROUP_MOUNT.target.lstrip("/"))
    if not os.path.isdir(target) or is_mounted(target):
        return
    try:
        if group is not None:
            mount(group, target, None, syscalls.MS_BIND, None)
        else:
            mount(CGROUP_MOUNT.source, target, CGROUP_MOUNT.fstype, CGROUP_MOUNT.flags,
                  CGROUP_MOUNT.data)
        mount(None, target, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY
              | CGROUP_MOUNT.flags, None)
    except OSError as e:
        console.log(f"boxlite-agent: no /sys/fs/cgroup in the box: {e}")


def _write_in_place(path: str, content: str) -> None:
    """Rewrite keeping the inode, so bind mounts of ``path`` see the new content."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        data = content.encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def write_etc_files(hostname: str, etc_dir: str, net: NetSetup = NO_NETWORK) -> list[str]:
    """Write /etc/hostname, /etc/hosts and /etc/resolv.conf under ``etc_dir`` (the
    sources of the bind mounts); their names."""
    os.makedirs(etc_dir, mode=0o755, exist_ok=True)
    files = {"hostname": f"{hostname}\n", "hosts": hosts_file(hostname, net),
             "resolv.conf": resolv_conf(net)}
    for name, content in files.items():
        _write_in_place(os.path.join(etc_dir, name), content)
    return list(files)


def provide_etc_files(
    root: str,
    hostname: str,
    etc_dir: str,
    mount: MountFn = syscalls.mount,
    is_mounted: Callable[[str], bool] = is_mountpoint,
    net: NetSetup = NO_NETWORK,
    skip: Collection[str] = (),
) -> list[str]:
    """/etc/hostname, /etc/hosts and /etc/resolv.conf, written under ``etc_dir`` and
    bind-mounted over the image's files (an empty file is created first where the image
    has none), as docker does: the image's own files are left untouched underneath.
    One the image makes impossible to cover (its path loops, or is a directory) is left
    as the image has it, said on the console: the box still starts; one in `skip`
    (a volume's, by its path) is not covered. The paths covered."""
    covered = []
    for name in write_etc_files(hostname, etc_dir, net):
        if f"/etc/{name}" in skip:
            continue
        try:
            target = ensure_file_in_root(root, f"/etc/{name}")
            if not is_mounted(target):
                mount(os.path.join(etc_dir, name), target, None, syscalls.MS_BIND, None)
            covered.append(target)
        except OSError as e:
            console.log(f"boxlite-agent: the image's /etc/{name} is left as it is: "
                        f"{e.strerror or e}")
    return covered
