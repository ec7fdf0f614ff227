"""PID files that record the process start time, so a reused PID never fools us."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from boxlite_cli.state.atomic import write_json_atomic


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def process_is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] == "Z"


@dataclass(frozen=True)
class ProcessSample:
    cpu_percent: float
    rss_bytes: int
    read_bytes: int = 0  # what the process read from and wrote to storage
    write_bytes: int = 0


def _io_bytes(pid: int) -> tuple[int, int]:
    """/proc/PID/io's read_bytes and write_bytes (the whole process; 0s if unreadable)."""
    fields: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = int(value)
    return fields.get("read_bytes", 0), fields.get("write_bytes", 0)


def _cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def sample_process(pid: int, interval_s: float) -> ProcessSample:
    """CPU use over `interval_s` (100 = one CPU busy) and resident memory of `pid`."""
    hz = os.sysconf("SC_CLK_TCK")
    start, t0 = _cpu_ticks(pid), time.monotonic()
    time.sleep(interval_s)
    ticks, elapsed = _cpu_ticks(pid) - start, time.monotonic() - t0
    return ProcessSample(100.0 * ticks / hz / elapsed, _rss_bytes(pid), *_io_bytes(pid))


@dataclass(frozen=True)
class ProcessRecord:
    """A process identified by pid and start time."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessRecord | None:
        start = process_start_time(pid)
        return None if start is None else cls(pid, start)

    @classmethod
    def current(cls) -> ProcessRecord:
        record = cls.of(os.getpid())
        assert record is not None
        return record

    def alive(self) -> bool:
        """True if this very process (not a reuse of its pid) still runs."""
        return process_start_time(self.pid) == self.start_time and not process_is_zombie(self.pid)

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_json(cls, data: object) -> ProcessRecord | None:
        if not isinstance(data, dict):
            return None
        pid, start = data.get("pid"), data.get("start_time")
        if not isinstance(pid, int) or not isinstance(start, int):
            return None
        return cls(pid, start)


def write_pidfile(path: Path, record: ProcessRecord) -> None:
    write_json_atomic(path, record.to_json())


def read_pidfile(path: Path) -> ProcessRecord | None:
    try:
        return ProcessRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
