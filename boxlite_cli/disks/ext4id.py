"""Which ext4 file system an image file holds (its superblock's UUID), without the
tools that make one (kept apart from ext4.py: `start` reads it)."""

from __future__ import annotations

from pathlib import Path

SUPERBLOCK = 1024  # where an ext4 file system's superblock begins (bytes)
MAGIC = slice(0x38, 0x3A)  # in it: 0xEF53, little-endian
UUID = slice(0x68, 0x78)


def filesystem_uuid(image: Path) -> str:
    """The UUID in an ext4 image's superblock, as hex ("" if it is not ext4): mkfs makes a
    new one each time, so it tells one unpack of an image from another."""
    with open(image, "rb") as f:
        f.seek(SUPERBLOCK)
        block = f.read(UUID.stop)
    if len(block) < UUID.stop or block[MAGIC] != b"\x53\xef":
        return ""
    return block[UUID].hex()
