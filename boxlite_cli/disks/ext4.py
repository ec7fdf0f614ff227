"""ext4 filesystem images made from a directory tree (mkfs.ext4 -d)."""

from __future__ import annotations

import os
from pathlib import Path

from boxlite_cli.disks.ownership import Ownership, apply_ownership
from boxlite_cli.disks.tools import run_tool

MIB = 1024 * 1024
# Free space a box gets on top of its image's content.
DEFAULT_FREE_BYTES = 4 * 1024 * MIB


def tree_size(root: Path) -> int:
    """Bytes used by the files under `root` (apparent sizes, plus one block per inode)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_size + 4096
    return total


def make_ext4(tree: Path, image: Path, free_bytes: int = DEFAULT_FREE_BYTES, label: str = "",
              ownership: Ownership | None = None) -> int:
    """Create a sparse ext4 image holding `tree`; returns its size in bytes.

    `ownership`: the owners, modes, device nodes and xattrs an unprivileged unpack of
    `tree` recorded, written into the image after it is made.
    """
    size = tree_size(tree) * 11 // 10 + free_bytes
    size = (size + MIB - 1) // MIB * MIB
    with open(image, "wb") as f:
        f.truncate(size)
    run_tool(
        ["mkfs.ext4", "-q", "-F", "-d", str(tree), "-L", label or "boxlite",
         "-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
         str(image)],
        f"making the filesystem of {image.name}",
    )
    # mkfs's lost+found: a container's root has none (docker's do not), unless the
    # image's own tree has one
    extra = () if os.path.lexists(tree / "lost+found") else ("rmdir /lost+found",)
    apply_ownership(ownership, tree, image, extra)
    return size
