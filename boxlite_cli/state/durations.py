"""Go's duration syntax (`time.ParseDuration`), which docker's flags take: `30s`,
`1m30s`, `1.5h`, `500ms`, `250us`."""

from __future__ import annotations

import re

UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+))(ns|us|µs|ms|s|m|h)")


def duration_ns(text: str) -> int | None:
    """Nanoseconds of a sum of number-and-unit parts (no sign; a bare `0` is zero, as
    Go takes it); None when `text` is not one."""
    if text == "0":
        return 0
    if not text or _PART.sub("", text) != "":
        return None
    from decimal import Decimal  # (exact sums of fractions; only once there is one)

    total = sum((Decimal(number) * UNITS_NS[unit] for number, unit in _PART.findall(text)),
                Decimal(0))
    return int(total)
