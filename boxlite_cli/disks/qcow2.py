"""qcow2 overlays over a shared base, through qemu-img."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from boxlite_cli.disks.tools import run_tool
from boxlite_cli.errors import DiskError

QCOW2_MAGIC = b"QFI\xfb"


def create_overlay(base: Path, overlay: Path, base_format: str = "raw") -> None:
    """A new, empty qcow2 whose reads fall through to `base` (which is never written)."""
    run_tool(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base),
         "-o", "cluster_size=65536,lazy_refcounts=on", str(overlay)],
        f"creating disk {overlay.name}",
    )


def virtual_size(path: Path) -> int:
    """A qcow2's virtual size in bytes (from its header)."""
    with open(path, "rb") as f:
        header = f.read(32)
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        raise DiskError(f"{path} is not a qcow2 image")
    return int(struct.unpack(">Q", header[24:32])[0])


def grow(disk: Path, size: int) -> None:
    """Make the virtual size of qcow2 `disk` `size` bytes (more than it is: the guest
    grows its filesystem to the disk's size when it mounts it)."""
    run_tool(["qemu-img", "resize", "-q", "-f", "qcow2", str(disk), str(size)],
             f"resizing disk {disk.name}")


EMPTY_OVERLAY_SUFFIX = ".empty.qcow2"


def empty_overlay_of(base: Path) -> Path:
    """Where create_overlay_cached keeps the empty overlay of `base` (next to it)."""
    return base.with_name(base.name + EMPTY_OVERLAY_SUFFIX)


def create_overlay_cached(base: Path, overlay: Path) -> None:
    """create_overlay of a raw `base`, as a copy of an empty overlay of it that
    qemu-img made once: its bytes depend only on the base's path and size, and a
    copy spares every `create` a qemu-img process. Remade when the base is newer."""
    cached = empty_overlay_of(base)
    try:
        fresh = cached.stat().st_mtime_ns > base.stat().st_mtime_ns
    except FileNotFoundError:
        fresh = False
    if not fresh:
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        try:
            create_overlay(base, partial)
            os.replace(partial, cached)
        finally:
            partial.unlink(missing_ok=True)
    partial = overlay.with_name(overlay.name + ".partial")
    shutil.copyfile(cached, partial)
    os.replace(partial, overlay)


def file_identity(path: Path) -> str | None:
    """Inode, size and mtime of `path`: any write to the file changes it (None: gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def create_root_disk(base: Path, overlay: Path, size: int = 0) -> None:
    """A box's new root disk: an empty overlay of raw `base`, of `size` bytes when that
    is more than the base's (--disk-size)."""
    create_overlay_cached(base, overlay)
    if size > base.stat().st_size:
        grow(overlay, size)
