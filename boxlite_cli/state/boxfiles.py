"""The files of one box directory, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from boxlite_cli.state.paths import socket_dir


@dataclass(frozen=True)
class BoxFiles:
    dir: Path

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def shim_pid(self) -> Path:
        return self.dir / "shim.pid"

    @property
    def vmm_pid(self) -> Path:
        return self.dir / "vmm.pid"

    @property
    def stop_requested(self) -> Path:
        """Present once a `stop`, `kill` or `rm -f` signalled the box's shim: a start
        that fails then was stopped, not broken (runtime.py)."""
        return self.dir / "stop-requested"

    @property
    def restarting(self) -> Path:
        """Present while `restart` stops a `--rm` box: its shim keeps the box then."""
        return self.dir / "restarting"

    @property
    def space_reserve(self) -> Path:
        """Disk space the shim keeps for the box's state on a full disk (state/reserve.py)."""
        return self.dir / "space.reserve"

    @property
    def shim_log(self) -> Path:
        return self.dir / "shim.log"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def container_log(self) -> Path:
        return self.dir / "container.log"

    @property
    def rootfs_disk(self) -> Path:
        return self.dir / "disks" / "rootfs.qcow2"

    @property
    def sockets(self) -> Path:
        return socket_dir(self.dir)

    @property
    def agent_socket(self) -> Path:
        """Where CLIs reach the agent (served by the shim)."""
        return self.sockets / "agent.sock"

    @property
    def exec_socket(self) -> Path:
        """Where CLIs run plain execs without gRPC (served by the shim; execwire.py)."""
        return self.sockets / "exec.sock"

    @property
    def vm_socket(self) -> Path:
        """The VMM's end of the agent channel (used by the shim only)."""
        return self.sockets / "vm.sock"

    @property
    def control_socket(self) -> Path:
        return self.sockets / "qmp.sock"
