"""The interface every VMM driver implements, and the VM description it consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class VmSpec:
    """Everything needed to launch one box's VM."""

    kernel: Path
    initrd: Path
    agent_root: Path
    rootfs_disk: Path
    console_log: Path
    agent_socket: Path
    control_socket: Path
    cpus: int = 1
    memory_mib: int = 512
    accel: str = "tcg"
    mode: str = "agent"
    extra_cmdline: tuple[str, ...] = field(default_factory=tuple)


class VmmDriver(Protocol):
    """A way to run a VmSpec. Nothing above `vmm/` knows which driver runs."""

    name: str

    def binary(self) -> str | None:
        """Path of the VMM executable, or None when it is not installed."""

    def command(self, spec: VmSpec) -> list[str]:
        """The full command line that starts the VM described by `spec`."""

    def agent_target(self, spec: VmSpec) -> str:
        """The gRPC target through which the shim reaches the guest agent."""
