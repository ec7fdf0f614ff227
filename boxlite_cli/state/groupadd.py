"""docker's `--group-add GROUP`: supplementary groups of every process of a box.

A group is a name in the container's /etc/group or a gid, resolved in the guest when a
process starts (an unknown name fails it, as docker's "Unable to find group").
"""

from __future__ import annotations

from collections.abc import Iterable

from boxlite_cli.errors import UsageError

MAX_GROUP_ADD = 64  # (the guest agent takes no more)


def check_group_add(groups: Iterable[str]) -> list[str]:
    """The --group-add values, each checked, in order, without repeats."""
    kept: list[str] = []
    for group in groups:
        if not group or any(c in group for c in ":\n\0") or group != group.strip():
            raise UsageError(f"invalid --group-add {group!r}: give a group name or a gid")
        if group not in kept:
            kept.append(group)
    if len(kept) > MAX_GROUP_ADD:
        raise UsageError(f"too many --group-add: a box takes at most {MAX_GROUP_ADD}")
    return kept
