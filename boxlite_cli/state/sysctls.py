"""docker's `--sysctl NAME=VALUE`: kernel parameters of a box's guest, which its agent
writes to /proc/sys before the box's first process.

The kernel is the box's own (its VM), so any parameter may be set, where docker takes
only those a container's namespaces hold (net.*, kernel.shm*, fs.mqueue.*):
`vm.overcommit_memory`, `kernel.pid_max` or `net.core.somaxconn` all work here. NAME
takes dots, or slashes where a part holds a dot (`net/ipv4/conf/eth0.1/forwarding`), as
sysctl(8) and docker take it. A parameter the guest's kernel lacks, or a value it
refuses, fails the start in one line (exit 125).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from boxlite_cli.errors import UsageError

PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,63}\Z")  # (one /proc/sys level)
MAX_NAME = 255
MAX_VALUE = 4096
MAX_SYSCTLS = 64  # (the guest agent takes no more)


def sysctl_parts(name: str) -> list[str] | None:
    """The /proc/sys path of a parameter name, level by level; None when it is not one."""
    parts = name.split("/") if "/" in name else name.split(".")
    if len(name) > MAX_NAME or len(parts) < 2:
        return None
    if any(p in (".", "..") or not PART_RE.match(p) for p in parts):
        return None
    return parts


def parse_sysctl(spec: str) -> tuple[str, str]:
    """NAME=VALUE, checked: a name of /proc/sys levels, a value of one line."""
    name, eq, value = spec.partition("=")
    if not eq:
        raise UsageError(f"invalid --sysctl {spec!r}: want NAME=VALUE (net.core.somaxconn=1024)")
    if sysctl_parts(name) is None:
        raise UsageError(f"invalid --sysctl {spec!r}: {name!r} is not a kernel parameter name")
    if len(value) > MAX_VALUE or any(c in value for c in "\n\0"):
        raise UsageError(f"invalid --sysctl {spec!r}: the value must be one line "
                         f"of at most {MAX_VALUE} characters")
    return name, value


def check_sysctls(specs: Iterable[str]) -> dict[str, str]:
    """The --sysctl values as docker keeps them (HostConfig.Sysctls: a later value of a
    name wins)."""
    kept: dict[str, str] = {}
    for spec in specs:
        name, value = parse_sysctl(spec)
        kept[name] = value
    if len(kept) > MAX_SYSCTLS:
        raise UsageError(f"too many --sysctl: a box takes at most {MAX_SYSCTLS}")
    return kept
