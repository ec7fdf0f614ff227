"""The guest's wall clock brought to the host's, NTP's way. A clock set to a time the
host sent is behind by however long the call took to reach the setting of it (under
TCG 10-40 ms; a warm start's first call pages its restored agent in: 0.1-0.15 s),
enough for a file the host stamps on a `-v` share to look newer than one the box
wrote after it, or for make to warn of clock skew. So the host reads the guest's
clock between two readings of its own, takes the guest's offset from their midpoint
(the reading of the shortest round trip: off by at most half of it, by the asymmetry
of its two legs), and has the guest step its clock by that much: a relative change,
which no delay spoils."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from boxlite_cli.agent.client import AgentClient, agent_error

READINGS = 3
TOLERANCE_NS = 500_000  # an offset under half a millisecond is left as it is


@dataclass(frozen=True)
class ClockReading:
    """The host's clock before a call, the guest's as it answered, the host's after."""

    host_before_ns: int
    guest_ns: int
    host_after_ns: int

    @property
    def round_trip_ns(self) -> int:
        return self.host_after_ns - self.host_before_ns

    @property
    def offset_ns(self) -> int:
        """How far the guest's clock is ahead of the host's (negative: behind)."""
        return self.guest_ns - (self.host_before_ns + self.host_after_ns) // 2


def guest_offset_ns(readings: Iterable[ClockReading]) -> int:
    """The offset of the reading with the shortest round trip: the least uncertain."""
    return min(readings, key=lambda r: r.round_trip_ns).offset_ns


def read_guest_clock(client: AgentClient) -> ClockReading | None:
    """One reading over the agent's Ping; None from an agent that does not say its
    clock (a payload of before)."""
    before = time.time_ns()
    try:
        guest = client.ping(timeout=10).clock_ns
    except grpc.RpcError as e:
        raise agent_error("reading the guest's clock", e) from e
    after = time.time_ns()
    return ClockReading(before, guest, after) if guest else None


def measure_guest_offset(client: AgentClient, readings: int = READINGS) -> int | None:
    """The guest clock's offset (ns, positive: ahead of the host's), or None when the
    agent cannot say its clock. Raises BoxliteError as the calls do."""
    taken = []
    for _ in range(readings):
        reading = read_guest_clock(client)
        if reading is None:
            return None
        taken.append(reading)
    return guest_offset_ns(taken)


@dataclass(frozen=True)
class ClockSetting:
    """The InitRequest fields that bring the guest's clock to the host's."""

    clock_ns: int = 0  # set it to this (the host's as the call is made)
    clock_step_ns: int = 0  # step it by this

    def __str__(self) -> str:
        if self.clock_step_ns:
            return f"stepped by {self.clock_step_ns / 1e6:+.1f} ms to the host's"
        if self.clock_ns:
            return "set to the host's time (its agent does not say its clock)"
        return "within half a millisecond of the host's"


def clock_setting(client: AgentClient) -> ClockSetting:
    """A step by the offset measured (none within TOLERANCE_NS); from an agent that
    cannot say its clock, the host's time as the call is made."""
    offset = measure_guest_offset(client)
    if offset is None:
        return ClockSetting(clock_ns=time.time_ns())
    return ClockSetting(clock_step_ns=-offset if abs(offset) > TOLERANCE_NS else 0)
