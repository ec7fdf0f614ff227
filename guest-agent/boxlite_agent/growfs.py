"""Grow the box's ext4 root filesystem, mounted, to the size of its disk (--disk-size).

The host makes a box's disk larger than its image's filesystem; the first mount after
that grows the filesystem online (EXT4_IOC_RESIZE_FS, what resize2fs does on a mounted
ext4), once: later mounts find it as large as the disk already."""

from __future__ import annotations

import fcntl
import os
import struct

EXT4_IOC_RESIZE_FS = 0x40086610  # _IOW('f', 16, __u64): the new size in blocks
SUPERBLOCK_OFFSET = 1024
EXT4_MAGIC = 0xEF53
INCOMPAT_64BIT = 0x80
SECTOR = 512


def fs_blocks(node: str) -> tuple[int, int]:
    """(blocks, block size) of the ext4 filesystem on block device `node`, from its
    superblock (the mounted filesystem's own, through the device's page cache)."""
    fd = os.open(node, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sb = os.pread(fd, 1024, SUPERBLOCK_OFFSET)
    finally:
        os.close(fd)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != EXT4_MAGIC:
        raise OSError(f"{node} holds no ext4 filesystem")
    blocks = struct.unpack_from("<I", sb, 0x04)[0]
    if struct.unpack_from("<I", sb, 0x60)[0] & INCOMPAT_64BIT:
        blocks |= struct.unpack_from("<I", sb, 0x150)[0] << 32
    return blocks, 1024 << struct.unpack_from("<I", sb, 0x18)[0]


def disk_bytes(name: str, sys_block: str = "/sys/block") -> int:
    """The size of block device `name` (vdb) as the kernel knows it."""
    with open(os.path.join(sys_block, name, "size")) as f:
        return int(f.read()) * SECTOR


def grow_to_disk(mountpoint: str, node: str, name: str) -> int:
    """Grow the filesystem mounted at `mountpoint` (on `node`, /dev/`name`) to its disk's
    size; returns the blocks it was grown by (0: it filled the disk already)."""
    blocks, block_size = fs_blocks(node)
    wanted = disk_bytes(name) // block_size
    if wanted <= blocks:
        return 0
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, EXT4_IOC_RESIZE_FS, struct.pack("=Q", wanted))
    finally:
        os.close(fd)
    return wanted - blocks
