"""The Guest inside the box VM: disks, kernel file systems, hostname, clock, power."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Collection

from boxlite_agent import console, syscalls
from boxlite_agent.blockdev import flush_buffers, list_disks, wait_for_disk
from boxlite_agent.boxprocs import BoxProcess, box_processes
from boxlite_agent.cgroups import BOX_CGROUP
from boxlite_agent.containerfs import (
    mount_kernel_filesystems,
    provide_etc_files,
    read_only_proc_paths,
    write_etc_files,
)
from boxlite_agent.entropy import add_entropy
from boxlite_agent.errors import FailedPrecondition
from boxlite_agent.growfs import grow_to_disk
from boxlite_agent.mounts import mount_at, mounted_now, mounts_under
from boxlite_agent.netconf import NetSetup, configure
from boxlite_agent.pidns import BOX_PIDS
from boxlite_agent.rootmounts import TmpfsSpec, make_read_only, mount_tmpfs
from boxlite_agent.spawn import HELPER

ROOTFS_DIR = "/run/boxlite/rootfs"
ETC_DIR = "/run/boxlite/etc"
ROOTFS_FSTYPE = "ext4"
ROOTFS_OPTIONS = "discard"


def set_clock(clock_ns: int, step_ns: int) -> None:
    """The wall clock set to `clock_ns` (a time the host sent), then stepped by
    `step_ns` (the host's measure of its offset): read and set within microseconds,
    so the step is what counts; 0: not that."""
    if clock_ns:
        time.clock_settime_ns(time.CLOCK_REALTIME, clock_ns)
    if step_ns:
        time.clock_settime_ns(time.CLOCK_REALTIME, time.time_ns() + step_ns)


class VmGuest:
    def __init__(self, rootfs_dir: str = ROOTFS_DIR, etc_dir: str = ETC_DIR) -> None:
        self._rootfs_dir = rootfs_dir
        self._etc_dir = etc_dir
        self._ready = False
        self._hostname = socket.gethostname()
        self._net = NetSetup()
        self._rootfs_serial = ""  # the disk mounted at rootfs_dir, with its kernel fs
        self._etc_bound = False  # the /etc files are bind-mounted into the rootfs
        self._etc_targets: list[str] = []  # ... at these paths

    def rootfs(self) -> str:
        if not self._ready:
            raise FailedPrecondition("no container rootfs yet: call Init with rootfs_serial first")
        return self._rootfs_dir

    def hostname(self) -> str:
        return self._hostname

    def init(self, hostname: str, clock_ns: int, entropy: bytes, rootfs_serial: str,
             net: NetSetup, pids_limit: int = 0, cpu_limit: float = 0.0,
             clock_step_ns: int = 0) -> None:
        set_clock(clock_ns, clock_step_ns)
        if entropy:
            add_entropy(entropy)
        if hostname:
            socket.sethostname(hostname)
            self._hostname = hostname
        configure(net, self._net)
        self._net = net
        is_mounted = None
        # A VM restored from a primed template had this very Init before its save:
        # the rootfs and its kernel file systems are up already (same disk, same serial).
        helper = os.access(HELPER, os.X_OK)  # (not on a development host)
        if rootfs_serial and not (self._ready and rootfs_serial == self._rootfs_serial):
            self._mount_rootfs(rootfs_serial)
            is_mounted = mounted_now()
            if helper:
                BOX_CGROUP.setup()  # (once; before the box's /sys/fs/cgroup, which shows it)
            mount_kernel_filesystems(self._rootfs_dir, is_mounted=is_mounted,
                                     cgroup=BOX_CGROUP.group)
            self._start_box_pids()
            read_only_proc_paths(self._rootfs_dir, is_mounted=mounted_now())
            self._ready = True
            self._rootfs_serial = rootfs_serial
        if self._ready and helper:
            BOX_CGROUP.setup()  # (once)
            BOX_CGROUP.set_pids_limit(pids_limit)
            BOX_CGROUP.set_cpu_limit(cpu_limit)
            BOX_CGROUP.set_memory_limit()
        if self._etc_bound:  # by this VM's earlier Init: new content only
            write_etc_files(self._hostname, self._etc_dir, self._net)
        elif self._ready:
            self._etc_targets = provide_etc_files(self._rootfs_dir, self._hostname,
                                                  self._etc_dir, net=self._net,
                                                  is_mounted=is_mounted or mounted_now())
            self._etc_bound = True

    def cover_etc_again(self, skip: Collection[str] = ()) -> None:
        """Bind the box's hostname, hosts and resolv.conf again, over what was mounted
        on /etc since (a tmpfs, a volume: docker's go on top of those), but those in
        `skip` (the paths volumes take)."""
        self._etc_targets = provide_etc_files(self._rootfs_dir, self._hostname, self._etc_dir,
                                              net=self._net, is_mounted=lambda _: False,
                                              skip=skip)

    def set_up_root(self, tmpfs: list[TmpfsSpec], read_only: bool) -> None:
        if not self._ready:
            raise FailedPrecondition("no container rootfs yet: call Init with rootfs_serial first")
        if "/etc" in mount_tmpfs(self._rootfs_dir, tmpfs):
            self.cover_etc_again()  # (the paths are bound under the tmpfs already)
        if read_only:
            make_read_only(self._rootfs_dir)
            for target in self._etc_targets:  # (read-only too, as docker's are then)
                make_read_only(target)

    def _start_box_pids(self) -> None:
        """The box's PID namespace and its init (pidns.py): once, with the helper."""
        if not os.access(HELPER, os.X_OK):
            return  # (the agent run on a development host)
        try:
            BOX_PIDS.start(self._rootfs_dir, HELPER)
        except OSError as e:  # (the box still runs, in the guest's namespace)
            console.log(f"boxlite-agent: no PID namespace for the box: {e}")

    def processes(self) -> list[BoxProcess]:
        root = self.rootfs()
        namespace = BOX_PIDS.namespace_id()
        if namespace is None:
            raise FailedPrecondition("the box has no PID namespace of its own to list")
        return box_processes(namespace, root)

    def resync(self, clock_ns: int, entropy: bytes, clock_step_ns: int = 0) -> None:
        set_clock(clock_ns, clock_step_ns)
        if entropy:
            add_entropy(entropy)

    def _mount_rootfs(self, serial: str) -> None:
        disk = wait_for_disk(serial)
        if disk is None:
            seen = ", ".join(f"{n}={s!r}" for n, (s, _) in list_disks().items()) or "none"
            raise FailedPrecondition(f"no disk with serial {serial!r} (virtio disks: {seen})")
        os.makedirs(self._rootfs_dir, mode=0o755, exist_ok=True)
        current = mount_at(self._rootfs_dir)
        if current is not None:
            if current.dev != disk.dev:
                raise FailedPrecondition(f"{self._rootfs_dir} already holds another disk ({current.source})")
            return
        # What the kernel cached of the disk before (its first page, read by the
        # partition scan at boot, holds the ext4 superblock) may be another disk's:
        # a VM restored from a template boots with the template box's disk.
        flush_buffers(disk.node)
        # discard: what the box deletes goes back to the host's disk (the qcow2 overlay
        # punches holes), as it is freed, with no fstrim in the box
        syscalls.mount(disk.node, self._rootfs_dir, ROOTFS_FSTYPE, 0, ROOTFS_OPTIONS)
        try:
            grow_to_disk(self._rootfs_dir, disk.node, disk.name)
        except OSError as e:
            raise FailedPrecondition(f"could not grow the box's filesystem to the size of its "
                                     f"disk: {e.strerror or e}") from None

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # every process but init and the agent
        os.sync()
        for target in mounts_under(self._rootfs_dir):
            for _ in range(5):
                try:
                    syscalls.umount(target)
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                with contextlib.suppress(OSError):
                    syscalls.umount(target, syscalls.MNT_DETACH)
        syscalls.power_off()
