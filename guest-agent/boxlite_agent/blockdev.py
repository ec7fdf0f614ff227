"""Find a virtio disk by its serial (``-device virtio-blk...,serial=X``)."""

from __future__ import annotations

import fcntl
import glob
import os
import stat
import time
from dataclasses import dataclass

VIRTIO_BLK_ID_BYTES = 20  # the guest sees at most this many bytes of the serial
BLKFLSBUF = 0x1261  # _IO(0x12, 97): write back and drop a block device's buffer cache


@dataclass(frozen=True)
class Disk:
    name: str  # vdb
    node: str  # /dev/vdb
    dev: str  # "254:16"


def list_disks(sys_block: str = "/sys/block") -> dict[str, tuple[str, str]]:
    """{name: (serial, "major:minor")} of the virtio disks."""
    disks = {}
    for path in sorted(glob.glob(os.path.join(sys_block, "vd*"))):
        try:
            with open(os.path.join(path, "serial"), "rb") as f:
                serial = f.read().rstrip(b"\0\n").decode("utf-8", "replace").strip()
            with open(os.path.join(path, "dev")) as f:
                dev = f.read().strip()
        except OSError:
            continue
        disks[os.path.basename(path)] = (serial, dev)
    return disks


def find_disk(serial: str, sys_block: str = "/sys/block", dev_dir: str = "/dev") -> Disk | None:
    """The disk whose serial is ``serial``; its /dev node is created if missing."""
    wanted = serial[:VIRTIO_BLK_ID_BYTES]
    for name, (found, dev) in list_disks(sys_block).items():
        if found != wanted:
            continue
        node = os.path.join(dev_dir, name)
        if not os.path.exists(node):
            major, minor = (int(x) for x in dev.split(":"))
            os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        return Disk(name, node, dev)
    return None


def wait_for_disk(serial: str, timeout: float = 5.0, sys_block: str = "/sys/block") -> Disk | None:
    """find_disk, retried while the disk may still be probed."""
    deadline = time.monotonic() + timeout
    while True:
        disk = find_disk(serial, sys_block)
        if disk is not None or time.monotonic() >= deadline:
            return disk
        time.sleep(0.05)


def flush_buffers(node: str) -> None:
    """Drop what the kernel caches of block device ``node`` (BLKFLSBUF), so the next
    reads (a mount's superblock) come from the disk as it is now."""
    fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, BLKFLSBUF)
    finally:
        os.close(fd)
