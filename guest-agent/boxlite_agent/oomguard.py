"""The box's memory guard: kills the box's largest process when its group thrashes at
its memory limit, where the kernel's OOM killer would come minutes late.

A memory cgroup at its limit reclaims from itself. With no swap, what it can reclaim is
the page cache of the box's own programs and files, which they read back at once. Every
pass that freed a page is progress to the kernel, which then retries instead of
OOM-killing, so a box that fills its memory can crawl for minutes first (seen under
TCG: 100 s to over 300 s for a 192m box whose python allocated without end, where the
same run at other times took 7 s). systemd-oomd exists for the same livelock on
hardware.

The guard costs nothing while nothing stalls: it sleeps in poll() on a PSI trigger of
the group's memory.pressure. When it fires, the guard looks for two windows of
STALL_WINDOW_S: if in each the box's tasks were stalled on memory for STALL_FRACTION of
the time and the group hit its limit (memory.events' `max`), it SIGKILLs the process
the kernel's OOM killer would pick (the highest oom_score; never the box's init, nor a
process with oom_score_adj -1000), says so on the console and counts it as an OOM kill
(docker's State.OOMKilled). A box that stalls without being at its limit (disk I/O, a
host that is busy), or that reclaims at its limit with little stall (a file streamed
through its page cache), is left alone.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from boxlite_agent import console

TRIGGER = b"some 150000 1000000"  # (150 ms of stall within 1 s: look closer)
STALL_WINDOW_S = 3.0
WINDOWS = 2  # (in a row: a burst of reclaim is not a thrash)
# Measured under TCG at a 192m box's limit: a python allocating without end stalled 43 %
# of the time (its own pages read back ~8,000 times a second) and crawled for minutes;
# `cat` of a 200 MiB file three times over, beside a 45 MiB process, stalled 15 %.
STALL_FRACTION = 0.3
UNKILLABLE_ADJ = -1000


@dataclass(frozen=True)
class Sample:
    """What the guard reads of the group at one instant."""

    stalled_us: int  # memory.pressure's `some total=`
    at_limit: int  # memory.events' `max`: how often a charge met memory.max


def read_sample(group: str) -> Sample | None:
    """The group's stall time and limit count now; None when they cannot be read."""
    try:
        with open(os.path.join(group, "memory.pressure")) as f:
            some = next(line for line in f if line.startswith("some "))
        stalled = int(some.rsplit("total=", 1)[1])
        at_limit = 0
        with open(os.path.join(group, "memory.events")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "max":
                    at_limit = int(value)
        return Sample(stalled, at_limit)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def thrashing(before: Sample, after: Sample, window_s: float) -> bool:
    """Whether the group stalled STALL_FRACTION of the window while meeting its limit."""
    return (after.at_limit > before.at_limit
            and after.stalled_us - before.stalled_us >= STALL_FRACTION * window_s * 1e6)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def victim(group: str, proc: str = "/proc") -> tuple[int, str] | None:
    """The process of the group the kernel's OOM killer would pick (pid, name): the
    highest oom_score, then the largest resident set; None when none may be killed."""
    best: tuple[int, int, int, str] | None = None
    try:
        pids = [int(p) for p in _read(os.path.join(group, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return None
    for pid in pids:
        base = os.path.join(proc, str(pid))
        try:
            if int(_read(os.path.join(base, "oom_score_adj"))) <= UNKILLABLE_ADJ:
                continue
            status = dict(line.split(":", 1) for line in _read(os.path.join(base, "status"))
                          .splitlines() if ":" in line)
            if status.get("NSpid", "").split()[-1:] == ["1"]:
                continue  # the box's init: its end would end every process of the box
            score = int(_read(os.path.join(base, "oom_score")))
            rss = int(_read(os.path.join(base, "statm")).split()[1])
            name = status.get("Name", "?").strip()
        except (OSError, ValueError, IndexError):
            continue  # (gone meanwhile)
        if best is None or (score, rss) > best[:2]:
            best = (score, rss, pid, name)
    return None if best is None else (best[2], best[3])


def kill(pid: int) -> bool:
    """SIGKILL ``pid`` through a pidfd (a pid reused since it was read is not hit)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class MemoryGuard:
    """The watch over one group's memory; `start` once its memory.max is set."""

    def __init__(self, group: str, proc: str = "/proc",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.group = group
        self.proc = proc
        self.kills = 0  # processes the guard ended
        self._sleep = sleep
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Arm the trigger and watch in a daemon thread; once. Said on the console when
        the kernel has no PSI (the box then waits for the kernel's OOM killer)."""
        if self._thread is not None:
            return
        try:
            fd = os.open(os.path.join(self.group, "memory.pressure"),
                         os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            console.log(f"boxlite-agent: no memory guard for the box: {e}")
            return
        try:
            os.write(fd, TRIGGER)
        except OSError as e:
            os.close(fd)
            console.log(f"boxlite-agent: no memory guard for the box: {e}")
            return
        self._thread = threading.Thread(target=self._watch, args=(fd,),
                                        name="memory-guard", daemon=True)
        self._thread.start()

    def _watch(self, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        try:
            while True:
                events = poller.poll()
                if any(mask & (select.POLLERR | select.POLLNVAL) for _, mask in events):
                    return  # (the group is gone)
                self.check()
        finally:
            os.close(fd)

    def check(self) -> bool:
        """Look for WINDOWS windows of STALL_WINDOW_S; kill and count the victim if the
        group thrashed in each."""
        for _ in range(WINDOWS):
            before = read_sample(self.group)
            self._sleep(STALL_WINDOW_S)
            after = read_sample(self.group)
            if before is None or after is None or not thrashing(before, after, STALL_WINDOW_S):
                return False
        chosen = victim(self.group, self.proc)
        if chosen is None or not kill(chosen[0]):
            return False
        self.kills += 1
        console.log(f"boxlite-agent: the box is out of memory (stalled at its limit for "
                    f"{WINDOWS * STALL_WINDOW_S:g} s): killed process {chosen[0]} ({chosen[1]})")
        return True

