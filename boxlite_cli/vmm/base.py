"""The interface every VMM driver implements, and the VM description it consumes."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from boxlite_cli.errors import VmError


@dataclass(frozen=True)
class PortForward:
    """A host socket whose traffic reaches `guest_port` of the VM."""

    proto: str  # "tcp" | "udp"
    host_ip: str
    host_port: int
    guest_port: int


@dataclass(frozen=True)
class Share:
    """A host directory exported to the guest over virtio-9p as mount tag `tag`."""

    tag: str
    path: str
    readonly: bool = False


# VmSpec.network: no NIC at all, or QEMU's user-mode (slirp) stack behind a virtio-net.
NET_NONE = "none"
NET_USER = "user"
# Experimental, for measurements (BOXLITE_NET_BACKEND=passt; docs/networking.md): the
# same layout served by a `passt` process that the shim starts on `net_socket`.
NET_PASST = "passt"
# The user-mode network's fixed layout (QEMU's defaults, stated explicitly).
NET_CIDR = "10.0.2.0/24"
NET_GUEST = "10.0.2.15"
NET_HOST = "10.0.2.2"
NET_DNS = "10.0.2.3"


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
    network: str = NET_NONE
    port_forwards: tuple[PortForward, ...] = field(default_factory=tuple)
    net_socket: str = ""
    shares: tuple[Share, ...] = field(default_factory=tuple)
    # A memory snapshot directory to start from instead of booting (drivers that can).
    restore_from: str = ""


class VmmUnsupported(VmError):
    """The chosen VMM cannot do what the box or the operation asks for."""


@dataclass(frozen=True)
class AgentChannel:
    """How the shim reaches the guest agent: `connect()` opens a fresh byte stream to
    it. `unix_path` is set when the VMM itself serves the stream on a unix socket
    that gRPC can dial directly (QEMU's virtio-serial chardev); otherwise the shim
    relays each gRPC connection through `connect()` (cloud-hypervisor's hybrid vsock).
    """

    connect: Callable[[], socket.socket]
    description: str
    unix_path: Path | None = None


class VmControl(Protocol):
    """A running VM's control channel (QMP, cloud-hypervisor's REST API). Every call
    is bounded; failures raise VmError subclasses; what a VMM cannot do raises
    VmmUnsupported."""

    def wait_ready(self, timeout_s: float, alive: Callable[[], bool] | None = None) -> None:
        """Return once the control channel answers (raise VmError after the timeout, or
        at once when `alive` says the VMM's process is gone)."""

    def info(self) -> dict[str, Any]:
        """The VMM's description of the VM; always has a "state" key."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def shutdown(self) -> None:
        """Power the VM off now (no guest cooperation); the VMM process exits."""

    def snapshot(self, directory: Path, ram_fd: int | None = None) -> None:
        """Pause the VM and save its memory and device state into `directory`;
        `ram_fd`: the memfd the VM's RAM is shared in (VmmDriver.command's), which
        lets the save write a RAM image instead of a stream of the RAM."""

    def restore(self, directory: Path, begun: bool = False) -> None:
        """Load a snapshot into a VMM started for a restore (VmSpec.restore_from), or
        with `begun`, wait for the load the VMM began from its command line (it was
        given VmmDriver.restore_file as an open fd); the VM is paused afterwards."""


class VmmDriver(Protocol):
    """A way to run a VmSpec. Nothing above `vmm/` knows which driver runs."""

    name: str
    executable: str  # the VMM executable's name, looked up on PATH

    def binary(self) -> str | None:
        """Path of the VMM executable, or None when it is not installed."""

    def check(self, spec: VmSpec) -> None:
        """Raise VmmUnsupported when this VMM cannot run `spec` (e.g. no user-mode NIC)."""

    def restore_file(self, spec: VmSpec) -> Path | None:
        """The memory snapshot file of a restore that this VMM reads from an fd named
        on its command line (see command()), or None when restore() loads it."""

    def command(self, spec: VmSpec, restore_fd: int | None = None,
                ram_fd: int | None = None,
                disk_fd: int | None = None) -> list[str]:
        """The full command line that starts the VM described by `spec`; `restore_fd`
        is an open fd of restore_file(spec), `ram_fd` a memfd to share the VM's RAM in
        (for a template save: see vmm/ramimage.py), `disk_fd` the root disk (a VMM
        that takes it never opens the disk by its path, which a spare's disk leaves:
        shim/spare.py), all inherited by the VMM process. VmmUnsupported when this VMM
        cannot take `ram_fd`."""

    def agent_channel(self, spec: VmSpec) -> AgentChannel:
        """How the shim reaches the guest agent of the VM started from `spec`."""

    def control(self, spec: VmSpec, timeout_s: float = 10.0) -> VmControl:
        """The control channel of the VM started from `spec`."""
