"""The times `logs --since/--until` take (docker's forms), and `logs -t`'s stamps."""

from __future__ import annotations

import pytest

from boxlite_cli.cli.logs import Stamper, timestamp
from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.logtime import parse_log_time
from boxlite_cli.shim.logframes import LogRecord

NOW = 1_796_000_000 * 10**9
S = 10**9


@pytest.mark.parametrize(("text", "expected"), [
    ("10m", NOW - 600 * S), ("1h30m", NOW - 5400 * S), ("1.5h", NOW - 5400 * S),
    ("90s", NOW - 90 * S), ("250ms", NOW - 250_000_000), ("0s", NOW),
    ("1796000000", NOW), ("1796000000.5", NOW + S // 2),
    ("2026-11-30T00:53:20Z", NOW), ("2026-11-30T00:53:20.123456789Z", NOW + 123456789),
    ("2026-11-30T01:53:20+01:00", NOW), ("2026-11-30T00:53:20.5z", NOW + S // 2)])
def test_docker_time_forms(text: str, expected: int) -> None:
    assert parse_log_time(text, NOW, "--since") == expected


def test_a_date_alone_is_local_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    assert parse_log_time("2026-11-30", NOW, "--since") == (NOW // (86400 * S)) * 86400 * S


@pytest.mark.parametrize("text", ["", "yesterday", "10x", "-5m", "5m3", "1e5",
                                  "2026-13-01", "2026-11-30T00:53:20.1234567890Z"])
def test_other_times_are_refused_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError, match=r"invalid --until .*: expected an RFC 3339 time"):
        parse_log_time(text, NOW, "--until")


def test_stamps_are_rfc3339_utc_with_nanoseconds() -> None:
    assert timestamp(NOW + 7) == "2026-11-30T00:53:20.000000007Z"
    assert timestamp(0) == "0001-01-01T00:00:00.000000000Z"  # (an older log's records)


def test_each_line_is_stamped_once_per_stream() -> None:
    stamper = Stamper()
    out = [stamper.stamp(LogRecord(0, b"a\nb", NOW)), stamper.stamp(LogRecord(1, b"e\n", NOW)),
           stamper.stamp(LogRecord(0, b"c\n\n", NOW))]
    t = timestamp(NOW).encode()
    assert out == [t + b" a\n" + t + b" b", t + b" e\n", b"c\n" + t + b" \n"]
