"""The box's cgroup: every process of the box (main, exec, their children) is in it,
so that limits hold for the box as a whole and not for the guest agent.

Now: the pids controller (`--pids-limit`): a fork bomb in the box stops at its limit;
the cpu controller for a fractional `--cpus` (cpu.max); the memory controller: the
guest's available memory less a margin (memory.max, so that a box that fills it is
OOM-killed in its group, not the guest's kernel deadlocked; the memory guard,
oomguard.py, ends a box that thrashes there instead), and its events (an OOM kill in
the box: docker's OOMKilled). The agent (outside the group) can still
start a process, or end the box. The exec helper joins the group before it executes
the box's program (spawn.py passes it the group's cgroup.procs open for writing), so
nothing of the box starts outside it.

Best effort: a kernel without cgroup v2 or the pids controller leaves the box without
a limit (said on the console), and runs it as before.
"""

from __future__ import annotations

import contextlib
import os

from boxlite_agent import console, syscalls
from boxlite_agent.oomguard import MemoryGuard

CGROUP_ROOT = "/sys/fs/cgroup"
BOX_GROUP = "box"
CPU_PERIOD_US = 100_000  # (docker's --cpus period)
CPU_QUOTA_MIN_US = 1_000  # (the kernel's least quota)
MEMORY_MARGIN = 24 << 20  # of the guest's available memory, kept out of the box's group
MEMORY_LEAST = 4 << 20  # (a box's group is never limited below this)


class BoxCgroup:
    def __init__(self, root: str = CGROUP_ROOT) -> None:
        self.root = root
        self.group: str | None = None  # the box's group, once made
        self.guard: MemoryGuard | None = None  # its watch at the memory limit, once set

    def setup(self, mount: bool = True) -> None:
        """Mount cgroup2 (if need be), enable the pids controller below the root and
        make the box's group; once. Failures are said on the console, not raised."""
        if self.group is not None:
            return
        try:
            if mount and not os.path.exists(os.path.join(self.root, "cgroup.controllers")):
                os.makedirs(self.root, exist_ok=True)
                flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
                try:  # (each exec moves its helper into the group: favordynmods spares
                    # every move an RCU grace period, tens of ms in an idle emulated guest)
                    syscalls.mount("cgroup2", self.root, "cgroup2", flags, "favordynmods")
                except OSError:  # (Linux < 6.1)
                    syscalls.mount("cgroup2", self.root, "cgroup2", flags)
            with open(os.path.join(self.root, "cgroup.subtree_control"), "w") as f:
                f.write("+pids")
            try:  # (for its memory.events: the OOM kills in the box; no limit is set)
                with open(os.path.join(self.root, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            except OSError as e:
                console.log(f"boxlite-agent: no memory controller for the box: {e}")
            group = os.path.join(self.root, BOX_GROUP)
            os.makedirs(group, exist_ok=True)
            self.group = group
        except OSError as e:
            console.log(f"boxlite-agent: no cgroup for the box (no --pids-limit): {e}")

    def set_pids_limit(self, limit: int) -> None:
        """The box's pids.max: `limit` processes and threads at once (0: no limit)."""
        if self.group is None:
            return
        with open(os.path.join(self.group, "pids.max"), "w") as f:
            f.write(str(limit) if limit > 0 else "max")

    def set_cpu_limit(self, cpus: float) -> None:
        """The box's cpu.max: `cpus` CPUs' worth of time per period (0: no limit). The
        cpu controller is enabled for the first limit only: a box without one does not
        pay for its accounting. A kernel without it: said on the console."""
        if self.group is None:
            return
        path = os.path.join(self.group, "cpu.max")
        if cpus <= 0 and not os.path.exists(path):
            return
        try:
            if not os.path.exists(path):
                with open(os.path.join(self.root, "cgroup.subtree_control"), "w") as f:
                    f.write("+cpu")
            quota = max(CPU_QUOTA_MIN_US, round(cpus * CPU_PERIOD_US))
            with open(path, "w") as f:
                f.write(f"{quota} {CPU_PERIOD_US}" if cpus > 0 else f"max {CPU_PERIOD_US}")
        except OSError as e:
            console.log(f"boxlite-agent: no CPU limit for the box (--cpus {cpus}): {e}")

    def set_memory_limit(self, meminfo: str = "/proc/meminfo") -> None:
        """The box's memory.max: the guest's available memory now (its processes start
        after this), less a margin for the agent and the kernel (24 MiB, or a half
        of it in a small VM). A box that fills its
        memory with what no OOM kill frees (a tmpfs, /dev/shm larger than the RAM) then
        has its own processes killed, as a docker container's memory cgroup does,
        instead of deadlocking the guest kernel ("System is deadlocked on memory")."""
        if self.group is None:
            return
        try:
            with open(meminfo) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            available = int(fields["MemAvailable"].split()[0]) * 1024
            # (a small VM's margin is half of what it has: the limit stays below
            # what is there, or it would never bind)
            limit = max(available - min(MEMORY_MARGIN, available // 2), MEMORY_LEAST)
            with open(os.path.join(self.group, "memory.max"), "w") as f:
                f.write(str(limit))
        except (OSError, KeyError, ValueError) as e:
            console.log(f"boxlite-agent: no memory limit for the box's group: {e}")
            return
        if self.guard is None:  # (the kernel's OOM kill at a group's limit can come
            self.guard = MemoryGuard(self.group)  # minutes late: oomguard.py)
            self.guard.start()

    def oom_kills(self) -> int:
        """How many processes of the box the kernel's OOM killer, or the memory guard,
        has killed (any OOM: the guest's memory is the box's); 0 without a group or a
        memory controller."""
        if self.group is None:
            return 0
        guarded = self.guard.kills if self.guard is not None else 0
        with contextlib.suppress(OSError, ValueError), \
                open(os.path.join(self.group, "memory.events")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) + guarded
        return guarded

    def memory(self) -> tuple[int, int]:
        """(bytes the box's processes use, the most they may): the group's
        memory.current less its inactive file cache (what docker's stats shows: cache
        the kernel takes back first is not use), and its memory.max (0 for either when
        not known: no group, no memory controller, or no limit set)."""
        if self.group is None:
            return 0, 0
        try:
            with open(os.path.join(self.group, "memory.current")) as f:
                current = int(f.read())
            inactive = 0
            with open(os.path.join(self.group, "memory.stat")) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "inactive_file":
                        inactive = int(value)
                        break
            with open(os.path.join(self.group, "memory.max")) as f:
                text = f.read().strip()
        except (OSError, ValueError):
            return 0, 0
        return max(current - inactive, 0), int(text) if text.isdigit() else 0

    def procs_fd(self) -> int | None:
        """The box group's cgroup.procs open for writing (the helper writes "0" to it to
        join), or None without a group."""
        if self.group is None:
            return None
        with contextlib.suppress(OSError):
            return os.open(os.path.join(self.group, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        return None


BOX_CGROUP = BoxCgroup()
