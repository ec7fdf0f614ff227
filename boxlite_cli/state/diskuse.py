"""What files take on the host's disk: the blocks allocated, as `du` counts them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def allocated_bytes(path: Path) -> int:
    """Bytes a file or tree takes on the host's disk (sparse files as they are; 0 for
    what is not there)."""
    try:
        if not os.path.isdir(path):
            return os.lstat(path).st_blocks * 512
    except OSError:
        return 0
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


@dataclass
class Pruned:
    """What a prune removed (box ids, volume names) and the disk space it gave back."""

    removed: list[str] = field(default_factory=list)
    freed: int = 0
