"""docker's `--ulimit NAME=SOFT[:HARD]`: the resource limits of a box's processes.

Kept in a box's config as `NAME=SOFT:HARD` (the guest agent sets them on every process
of the box: main, exec). NAME is one of docker's (go-units'), a value a count, or -1
for unlimited; HARD defaults to SOFT. NAME again replaces the one before, as docker's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from boxlite_cli.errors import UsageError

NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
         "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
UNLIMITED = -1
MAX_VALUE = (1 << 63) - 1


def _value(text: str, spec: str) -> int:
    # (docker's strconv.ParseInt: digits and a minus, no spaces, '+' or '_')
    value = int(text) if re.fullmatch(r"-?[0-9]+", text) else -2
    if not UNLIMITED <= value <= MAX_VALUE:
        raise UsageError(f"invalid --ulimit {spec!r}: {text!r} is not a count (-1: unlimited)")
    return value


def parse_ulimit(spec: str) -> tuple[str, int, int]:
    """(name, soft, hard) of one --ulimit; UsageError naming what is wrong."""
    name, eq, values = spec.partition("=")
    if name not in NAMES or not eq:
        raise UsageError(f"invalid --ulimit {spec!r}: give NAME=SOFT[:HARD]",
                         hint=f"names: {', '.join(NAMES)}")
    soft_text, colon, hard_text = values.partition(":")
    soft = _value(soft_text, spec)
    hard = _value(hard_text, spec) if colon else soft
    if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
        raise UsageError(f"invalid --ulimit {spec!r}: the soft limit is above the hard one")
    return name, soft, hard


def normalize_ulimits(specs: Iterable[str]) -> list[str]:
    """Every --ulimit as NAME=SOFT:HARD, in the order of the names (the last of one wins)."""
    limits = {}
    for spec in specs:
        name, soft, hard = parse_ulimit(spec)
        limits[name] = f"{name}={soft}:{hard}"
    return [limits[name] for name in sorted(limits)]
