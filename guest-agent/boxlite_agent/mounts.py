"""Read the mount table (/proc/self/mountinfo)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    dev: str  # "major:minor"
    mount_point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            entries.append(
                MountEntry(
                    dev=fields[2],
                    mount_point=_unescape(fields[4]),
                    fstype=fields[sep + 1],
                    source=_unescape(fields[sep + 2]),
                )
            )
        except (ValueError, IndexError):
            continue
    return entries


def read_mountinfo(path: str = MOUNTINFO) -> list[MountEntry]:
    with open(path) as f:
        return parse_mountinfo(f.read())


def mount_at(path: str) -> MountEntry | None:
    """The topmost mount on ``path`` (symlinks resolved), or None."""
    target = os.path.realpath(path)
    found = None
    for entry in read_mountinfo():
        if entry.mount_point == target:
            found = entry
    return found


def is_mountpoint(path: str) -> bool:
    return mount_at(path) is not None


def holds_share(path: str) -> bool:
    """The topmost mount on ``path`` is a 9p share's (a volume's), not one of the box's
    own (its /etc/hosts, say, that a volume goes over)."""
    entry = mount_at(path)
    return entry is not None and entry.fstype == "9p"


def mounted_now() -> Callable[[str], bool]:
    """is_mountpoint against one reading of the mount table: for a pass that mounts
    each of its targets at most once (the table is parsed once, not per target)."""
    points = {entry.mount_point for entry in read_mountinfo()}
    return lambda path: os.path.realpath(path) in points


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest (most recently mounted) first."""
    base = os.path.realpath(path)
    points = [
        e.mount_point
        for e in read_mountinfo()
        if e.mount_point == base or e.mount_point.startswith(base.rstrip("/") + "/")
    ]
    return list(reversed(points))
