"""docker's --ulimit in the guest: Init's limits, checked as untrusted, become what the
exec helper (boxlite-spawn.c) sets on every process of the box before it executes it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from boxlite_agent.errors import InvalidArgument

# Linux's resource numbers, by docker's names of them (go-units' ulimit names)
RESOURCES = {"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
             "nofile": 7, "memlock": 8, "locks": 10, "sigpending": 11, "msgqueue": 12,
             "nice": 13, "rtprio": 14, "rttime": 15}
UNLIMITED = -1
HELPER_ENV = "BOXLITE_RLIMITS"  # RESOURCE=SOFT:HARD,... (read and unset by the helper)


class Ulimit(Protocol):
    name: str
    soft: int
    hard: int


NOFILE = RESOURCES["nofile"]
NR_OPEN = "/proc/sys/fs/nr_open"  # the kernel's most open files a process may have


def _most_open_files(path: str = NR_OPEN) -> int | None:
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def helper_spec(ulimits: Iterable[Ulimit], nr_open: str = NR_OPEN) -> str:
    """The helper's spec of `ulimits` ("" for none); InvalidArgument names a bad one, or
    one the guest's kernel would refuse (nofile above its nr_open)."""
    parts: dict[int, str] = {}
    for u in ulimits:
        resource = RESOURCES.get(u.name)
        if resource is None or resource in parts:
            raise InvalidArgument(f"invalid ulimit {u.name!r}")
        if u.soft < UNLIMITED or u.hard < UNLIMITED or (
                u.hard != UNLIMITED and (u.soft == UNLIMITED or u.soft > u.hard)):
            raise InvalidArgument(f"invalid ulimit {u.name}: {u.soft}:{u.hard}")
        if resource == NOFILE and (most := _most_open_files(nr_open)) is not None and (
                u.hard == UNLIMITED or u.hard > most):
            raise InvalidArgument(f"--ulimit nofile={u.soft}:{u.hard}: more than the {most} "
                                  "open files the guest's kernel allows a process")
        parts[resource] = f"{resource}={u.soft}:{u.hard}"
    return ",".join(parts[r] for r in sorted(parts))
