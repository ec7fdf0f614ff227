"""Columns of top, stats and JSON outputs: ps's TIME and STIME, command lines, memory units, times."""

from __future__ import annotations

import time

from boxlite_cli.agent.client import ProcessInfo
from boxlite_cli.cli.top import command_line, cpu_time, rows, start_time, to_json


def proc(argv: tuple[str, ...] = ("sleep", "30"), **over: object) -> ProcessInfo:
    values: dict[str, object] = dict(pid=5, ppid=1, uid=65534, user="nobody", state="S",
                                     cpu_s=3725.5, rss_bytes=2_000_000, started=0.0,
                                     threads=1, name="sleep", argv=argv)
    values.update(over)
    return ProcessInfo(**values)  # type: ignore[arg-type]


def test_cpu_time_is_ps_time() -> None:
    assert cpu_time(0.4) == "00:00:00"
    assert cpu_time(3725.5) == "01:02:05"
    assert cpu_time(2 * 86400 + 61) == "2-00:01:01"


def test_start_time_is_the_time_of_day_today_else_the_date() -> None:
    now = time.mktime((2026, 11, 30, 15, 0, 0, 0, 0, -1))
    assert start_time(now - 3600, now) == "14:00"
    assert start_time(now - 3 * 86400, now) == "Nov27"
    assert start_time(0.0, now) == "?"


def test_command_lines_quote_as_a_shell_would() -> None:
    assert command_line(proc(("sh", "-c", "echo a b"))) == "sh -c 'echo a b'"
    assert command_line(proc((), name="kworker/0:1")) == "[kworker/0:1]"
    assert command_line(proc(("sleep", "30"), argv_cut=True)) == "sleep 30 …"


def test_rows_and_json() -> None:
    now = time.time()
    row = rows([proc(started=now - 60), proc(user="", uid=1234)], now)
    assert row[0][:6] == ["5", "1", "nobody", "S", "01:02:05", "1.907MiB"]
    assert row[0][7] == "sleep 30"
    assert row[1][2] == "1234"  # no passwd entry: the uid
    data = to_json(proc(started=1796000000.123))
    assert data["command"] == ["sleep", "30"] and data["started_at"] == 1796000000.12
    assert data["cpu_seconds"] == 3725.5 and data["user"] == "nobody"
    assert data["command_cut"] is False


def test_stats_memory_is_in_binary_units_as_docker_shows_it() -> None:
    from boxlite_cli.cli.output import human_binary
    from boxlite_cli.cli.stats import _rows
    from boxlite_cli.runtime.runtime import BoxStats

    assert (human_binary(512 << 20), human_binary(1536 << 20), human_binary(1000)) == (
        "512MiB", "1.5GiB", "1000B")
    [row] = _rows([BoxStats("a" * 64, "web", 1.5, 100 << 20, 512 << 20)])
    assert row[3] == "100MiB / 512MiB" and row[4] == "19.53%"
    assert row[5:] == ["0B / 0B", "0B / 0B", "--"]  # (PIDS not known: docker's --)
    [row] = _rows([BoxStats("a" * 64, "web", 1.5, 100 << 20, 512 << 20, 2_500_000, 0, 7,
                            net_rx_bytes=1234, net_tx_bytes=5_600_000)])
    # (docker's NET I/O and BLOCK I/O in decimal units)
    assert row[5:] == ["1.23kB / 5.6MB", "2.5MB / 0B", "7"]


def test_json_times_are_rfc3339_in_utc() -> None:
    from boxlite_cli.cli.output import NEVER, rfc3339

    assert rfc3339(1796000000.5) == "2026-11-30T00:53:20.500000Z"
    assert rfc3339(None) == rfc3339(0) == NEVER == "0001-01-01T00:00:00Z"


def test_durations_are_the_ones_docker_prints() -> None:
    """go-units' HumanDuration, which `docker ps` prints ("Up 2 hours")."""
    from boxlite_cli.cli.output import human_duration

    hour, day = 3600, 86400
    cases = [(0.4, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
             (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
             (59 * 60, "59 minutes"), (60 * 60, "About an hour"), (89 * 60, "About an hour"),
             (90 * 60, "2 hours"), (25 * hour, "25 hours"), (47 * hour, "47 hours"),
             (48 * hour, "2 days"), (13 * day, "13 days"), (14 * day, "2 weeks"),
             (60 * day, "2 months"), (729 * day, "24 months"), (730 * day, "2 years")]
    assert [human_duration(s) for s, _ in cases] == [text for _, text in cases]
