"""Resolving paths inside a root directory without ever leaving it."""

from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINKS = 40


def clean_member_name(name: str) -> list[str]:
    """Components of an archive member name, cleaned as Go's filepath.Clean does (as
    docker and containerd take layers: `a/b/../c` is `a/c`); refuses one whose `..`
    climbs above the root. (A backslash is an ordinary character of a Linux file name,
    as in systemd's `\\x2d` escapes.)"""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            raise ValueError(f"path traversal in archive member name {name!r}")
    return parts


def resolve_in_root(root: str, parts: list[str], follow_last: bool = False) -> str:
    """Host path of `parts` under `root`, following symlinks as if `root` were `/`.

    Absolute symlink targets and `..` are taken relative to `root` and can never climb
    above it. The last component is followed only when `follow_last`.
    """
    resolved: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        is_last = not pending
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode) and (follow_last or not is_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", candidate)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)
