"""qcow2 overlays over a shared base, through qemu-img."""

from __future__ import annotations

import os
from pathlib import Path

from boxlite_cli.disks.tools import run_tool


def create_overlay(base: Path, overlay: Path, base_format: str = "raw") -> None:
    """A new, empty qcow2 whose reads fall through to `base` (which is never written)."""
    run_tool(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base),
         "-o", "cluster_size=65536,lazy_refcounts=on", str(overlay)],
        f"creating disk {overlay.name}",
    )


def file_identity(path: Path) -> str | None:
    """Inode, size and mtime of `path`: any write to the file changes it (None: gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
