"""clocksync: the guest clock's offset from the host's, NTP's way, and the step that
takes it away (a fake agent whose clock runs a set offset from a scripted host clock)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import cast

import pytest

from boxlite_cli.agent import clocksync
from boxlite_cli.agent.client import AgentClient
from boxlite_cli.agent.clocksync import (
    ClockReading,
    ClockSetting,
    clock_setting,
    guest_offset_ns,
)

MS = 1_000_000


class ScriptedHost:
    """time.time_ns of the host: each call the next of `readings` (ns)."""

    def __init__(self, readings: list[int]) -> None:
        self._next: Iterator[int] = iter(readings)

    def time_ns(self) -> int:
        return next(self._next)


class FakeAgent:
    """Answers each ping with the next of `guest_clocks`."""

    def __init__(self, guest_clocks: list[int]) -> None:
        self._clocks = iter(guest_clocks)

    def ping(self, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(clock_ns=next(self._clocks))


def test_the_offset_is_the_guests_time_against_the_midpoint_of_the_host_readings() -> None:
    assert ClockReading(1000 * MS, 900 * MS, 1010 * MS).offset_ns == -105 * MS
    assert ClockReading(1000 * MS, 1012 * MS, 1010 * MS).offset_ns == 7 * MS


def test_the_reading_of_the_shortest_round_trip_counts() -> None:
    """A slow answer (a leg delayed one way) says less: the quickest one decides."""
    readings = [ClockReading(0, 80 * MS, 100 * MS),   # offset +30 ms, 100 ms round trip
                ClockReading(200 * MS, 100 * MS, 204 * MS),  # -102 ms, 4 ms
                ClockReading(300 * MS, 250 * MS, 340 * MS)]  # -70 ms, 40 ms
    assert guest_offset_ns(readings) == -102 * MS


def test_a_guest_behind_is_stepped_forward_by_its_offset(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    # the guest 150 ms behind, three readings with round trips of 10, 2 and 6 ms
    host = [1000, 1010, 2000, 2002, 3000, 3006]
    monkeypatch.setattr(clocksync, "time", ScriptedHost([t * MS for t in host]))
    agent = FakeAgent([(1005 - 150) * MS, (2001 - 150) * MS, (3003 - 150) * MS])
    assert clock_setting(cast(AgentClient, agent)) == ClockSetting(clock_step_ns=150 * MS)


def test_an_offset_within_the_tolerance_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clocksync, "time", ScriptedHost([0, 2 * MS] * 3))
    agent = FakeAgent([MS + clocksync.TOLERANCE_NS // 2] * 3)
    assert clock_setting(cast(AgentClient, agent)) == ClockSetting()


def test_an_agent_that_does_not_say_its_clock_gets_the_hosts_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A box of an older payload: its Ping has no clock_ns (0); its clock is set as
    before, to the host's time as the call is made."""
    monkeypatch.setattr(clocksync, "time", ScriptedHost([0, MS, 77 * MS]))
    agent = FakeAgent([0])
    assert clock_setting(cast(AgentClient, agent)) == ClockSetting(clock_ns=77 * MS)
