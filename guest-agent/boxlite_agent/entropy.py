"""Mix host-provided random bytes into the guest's pool (RNDADDENTROPY, credited), then
reseed the CRNG from it (RNDRESEEDCRNG)."""

from __future__ import annotations

import fcntl
import os
import struct

RNDADDENTROPY = 0x40085203
RNDRESEEDCRNG = 0x5207  # _IO('R', 0x07): reseed the CRNG now (from the pool just fed)
MAX_BYTES = 4096


def rand_pool_info(data: bytes) -> bytearray:
    """struct rand_pool_info {int entropy_count (bits); int buf_size (bytes); u32 buf[];}"""
    data = data[:MAX_BYTES]
    pad = b"\0" * (-len(data) % 4)
    return bytearray(struct.pack("ii", len(data) * 8, len(data)) + data + pad)


def add_entropy(data: bytes, device: str = "/dev/urandom") -> None:
    if not data:
        return
    fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    try:
        # A mutable buffer: fcntl.ioctl copies immutable ones into 1024 bytes only.
        fcntl.ioctl(fd, RNDADDENTROPY, rand_pool_info(data))
        # A VM restored from a warm-start template shares its CRNG state with every
        # other box of that template: reseed it, so that they all diverge right away.
        fcntl.ioctl(fd, RNDRESEEDCRNG)
    finally:
        os.close(fd)
