"""What the agent needs from the machine it runs on, and a host-side stand-in.

The VM implementation (vm.py) mounts disks, sets the hostname and powers off; the
``LocalGuest`` runs execs in an existing directory, so the whole gRPC service can be
exercised on a development host (tests, ``python -m boxlite_agent.server --local``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Collection
from typing import Protocol

from boxlite_agent.boxprocs import BoxProcess, box_processes
from boxlite_agent.netconf import NetSetup
from boxlite_agent.rootmounts import TmpfsSpec


class Guest(Protocol):
    def rootfs(self) -> str:
        """The container rootfs; raises FailedPrecondition before Init."""
        ...

    def hostname(self) -> str: ...

    def init(self, hostname: str, clock_ns: int, entropy: bytes, rootfs_serial: str,
             net: NetSetup, pids_limit: int = 0, cpu_limit: float = 0.0,
             clock_step_ns: int = 0) -> None:
        """Prepare the machine (idempotent); raises AgentError or OSError. The clock:
        set to `clock_ns`, stepped by `clock_step_ns` (0: not). `pids_limit`:
        the box's processes and threads at most (0: no limit); `cpu_limit`: the CPUs'
        worth of time they may use (0: no limit; cgroups.py)."""
        ...

    def resync(self, clock_ns: int, entropy: bytes, clock_step_ns: int = 0) -> None:
        """After a restore from a checkpoint: set the clock (or step it by
        `clock_step_ns`), reseed the CRNG."""
        ...

    def set_up_root(self, tmpfs: list[TmpfsSpec], read_only: bool) -> None:
        """--tmpfs mounts in the box's root, then --read-only (rootmounts.py)."""
        ...

    def cover_etc_again(self, skip: Collection[str] = ()) -> None:
        """The box's /etc/hostname, hosts and resolv.conf bound again (but `skip`'s)."""
        ...

    def processes(self) -> list[BoxProcess]:
        """The box's processes (boxprocs.py); raises FailedPrecondition before Init."""
        ...

    def shutdown(self) -> None:
        """Flush and power off (in a VM this does not return)."""
        ...


class LocalGuest:
    """Runs execs in ``root`` on the current machine; Init only records its arguments."""

    def __init__(self, root: str = "/", on_shutdown: Callable[[], None] | None = None) -> None:
        self._root = root
        self._hostname = socket.gethostname()
        self._on_shutdown = on_shutdown
        self.init_calls: list[tuple[str, int, bytes, str, NetSetup]] = []
        self.resync_calls: list[tuple[int, bytes]] = []
        self.clock_steps: list[int] = []
        self.pids_limit = 0
        self.cpu_limit = 0.0
        self.root_setup: tuple[list[TmpfsSpec], bool] = ([], False)
        self.etc_covered_again: set[str] | None = None

    def rootfs(self) -> str:
        return self._root

    def hostname(self) -> str:
        return self._hostname

    def init(self, hostname: str, clock_ns: int, entropy: bytes, rootfs_serial: str,
             net: NetSetup, pids_limit: int = 0, cpu_limit: float = 0.0,
             clock_step_ns: int = 0) -> None:
        self.init_calls.append((hostname, clock_ns, entropy, rootfs_serial, net))
        self.clock_steps.append(clock_step_ns)
        self.pids_limit = pids_limit
        self.cpu_limit = cpu_limit
        if hostname:
            self._hostname = hostname

    def resync(self, clock_ns: int, entropy: bytes, clock_step_ns: int = 0) -> None:
        self.resync_calls.append((clock_ns, entropy))
        self.clock_steps.append(clock_step_ns)

    def set_up_root(self, tmpfs: list[TmpfsSpec], read_only: bool) -> None:
        self.root_setup = (tmpfs, read_only)  # (recorded only: the root is this host's)

    def cover_etc_again(self, skip: Collection[str] = ()) -> None:
        self.etc_covered_again = set(skip)  # (recorded only)

    def processes(self) -> list[BoxProcess]:
        """Every process of this host's PID namespace (a development host has no box)."""
        return box_processes(os.stat("/proc/self/ns/pid").st_ino, self._root)

    def shutdown(self) -> None:
        if self._on_shutdown is not None:
            self._on_shutdown()
