"""Guest RAM as a file: how a warm-start template keeps its memory.

A VM that will save a template runs with its RAM shared in a memfd (`shared_ram`).
The save writes the device state alone (QEMU's x-ignore-shared skips shared RAM)
and copies the RAM into a sparse image (`copy_ram`): byte for byte, with holes where
it is zero. A VM restored from the template maps that image privately: pages load
lazily, copy-on-write, and the pages no box has written stay shared between every
box restored from it. Compared with loading a migration stream of the whole RAM
(each page copied into fresh memory before the guest runs), a restore costs the
device state only: milliseconds instead of a few hundred.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DEVICE_STATE_FILE = "device.state"  # QEMU's migration stream without the RAM
RAM_IMAGE_FILE = "ram.img"  # the guest's RAM, byte for byte (sparse)
_BLOCK = 64 * 1024
_ZERO = bytes(_BLOCK)


def ram_image(directory: Path | str) -> Path | None:
    """The RAM image of the snapshot in `directory`, when it is of that kind (a device
    state beside it); None for a single migration stream."""
    path = Path(directory)
    image = path / RAM_IMAGE_FILE
    return image if image.is_file() and (path / DEVICE_STATE_FILE).is_file() else None


def shared_ram(size: int) -> int | None:
    """A memfd of `size` bytes to back a VM's RAM, close-on-exec (hand it over with
    pass_fds), or None where the kernel has no memfd."""
    try:
        fd = os.memfd_create("boxlite-ram", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        return None
    return fd


def _extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) ranges of `fd` that hold data (SEEK_DATA/SEEK_HOLE); the whole
    file where the file system cannot tell."""
    extents = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole to the end
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            extents.append((start, end))
            offset = end
    except OSError:
        return [(0, size)]
    return extents


def copy_ram(ram_fd: int, dest: Path) -> int:
    """Write the RAM in `ram_fd` (the VM paused) to a new sparse file `dest`: only the
    blocks that are not all zero are written. Returns the bytes written."""
    size = os.fstat(ram_fd).st_size
    written = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        # (pread, not a mapping of the RAM: mapped, every page the guest used would
        # count in our own RSS, and in its peak for as long as the shim lives)
        for start, end in _extents(ram_fd, size):
            for offset in range(start, end, _BLOCK):
                block = os.pread(ram_fd, min(_BLOCK, end - offset), offset)
                if block != _ZERO[:len(block)]:
                    os.pwrite(fd, block, offset)
                    written += len(block)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            dest.unlink()
        raise
    os.close(fd)
    return written
