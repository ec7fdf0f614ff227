"""The times `logs --since` and `--until` take, as docker's: an RFC 3339 date and time
(`2026-11-30T10:00:00Z`, with fractions or an offset; without one it is local time), a
date (`2026-11-30`, local midnight), a Unix time (`1764496800`, `1764496800.5`), or a
duration before now (`10m`, `1h30m`, `1.5h`, `90s`)."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

from boxlite_cli.errors import UsageError
from boxlite_cli.state.durations import duration_ns

_UNIX = re.compile(r"\d+(?:\.\d{1,9})?")
_FRACTION = re.compile(r"(\.\d+)")
HELP = ("an RFC 3339 time (2026-11-30T10:00:00Z), a date (2026-11-30), a Unix time, "
        "or a duration before now (10m, 1h30m)")


def _iso_ns(text: str) -> int | None:
    """An RFC 3339 time or a date; nanosecond fractions kept (Python parses microseconds)."""
    fraction = _FRACTION.search(text)
    digits = fraction.group(1)[1:] if fraction else ""
    if len(digits) > 9:
        return None
    stem = text.replace(fraction.group(1), "", 1) if fraction else text
    try:
        parsed = datetime.datetime.fromisoformat(stem.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as docker takes it
    seconds = int(parsed.timestamp())
    return seconds * 1_000_000_000 + int(digits.ljust(9, "0") or 0)


def parse_log_time(text: str, now_ns: int, option: str) -> int:
    """`text` as nanoseconds since the epoch (`now_ns`: what durations count back from);
    a UsageError naming `option` when it is none of the forms."""
    text = text.strip()
    if _UNIX.fullmatch(text):
        return int(Decimal(text) * 1_000_000_000)
    duration = duration_ns(text)
    if duration is not None:
        return now_ns - duration
    at = _iso_ns(text) if "-" in text else None  # (not the basic form, 20261130)
    if at is not None:
        return at
    raise UsageError(f"invalid {option} {text!r}: expected {HELP}")
