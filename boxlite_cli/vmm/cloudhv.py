"""cloud-hypervisor driver: virtio-pci disks, hybrid vsock to the agent, REST control.

cloud-hypervisor needs KVM (it has no software emulation) and boots the payload's
uncompressed `vmlinux` directly through its PVH entry point. It has no user-mode
network stack (no slirp) and no virtio-9p, so boxes with `--network nat`, published
ports or `-v` volumes need QEMU; `auto` picks QEMU for them (see drivers.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from boxlite_cli.payload import AGENT_DISK_SERIAL, AGENT_VSOCK_PORT, ROOTFS_DISK_SERIAL
from boxlite_cli.vmm import hybrid_vsock
from boxlite_cli.vmm.base import NET_NONE, AgentChannel, VmmUnsupported, VmSpec
from boxlite_cli.vmm.cmdline import kernel_cmdline

if TYPE_CHECKING:  # http.client: only once the VM is controlled
    from boxlite_cli.vmm.chapi import ChApi

CH_BINARY = "cloud-hypervisor"
RELEASES_URL = "https://github.com/cloud-hypervisor/cloud-hypervisor/releases"
# The guest's vsock CID (2 is the host; 3 is the first guest CID).
GUEST_CID = 3
# qcow2 overlays on a raw backing file, `backing_files=on` and `image_type=`: v51.0.
MIN_VERSION = (51, 0)


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of `cloud-hypervisor --version` output ("cloud-hypervisor v51.1.0")."""
    m = re.search(r"v?(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _value(what: str, path: object) -> str:
    """A path as an option value: cloud-hypervisor splits option lists on commas and
    has no escape for them, so such a path cannot be passed at all."""
    text = str(path)
    if "," in text:
        raise VmmUnsupported(f"cloud-hypervisor cannot use a {what} path with a comma: {text}",
                             hint="use a boxlite home without commas in its path")
    return text


class CloudHypervisorDriver:
    name = "cloud-hypervisor"

    executable = CH_BINARY

    def binary(self) -> str | None:
        return shutil.which(self.executable)

    def check(self, spec: VmSpec) -> None:
        if spec.accel != "kvm":
            raise VmmUnsupported(
                "cloud-hypervisor needs KVM; it has no software emulation",
                hint="use --vmm qemu (TCG), or run on a host with working /dev/kvm")
        if spec.network != NET_NONE or spec.port_forwards:
            raise VmmUnsupported(
                "cloud-hypervisor has no user-mode network (no slirp): --network nat "
                "and -p need QEMU",
                hint="use --network none with --vmm cloud-hypervisor, or --vmm qemu")
        if spec.shares:
            raise VmmUnsupported(
                "cloud-hypervisor has no virtio-9p: -v volumes need QEMU",
                hint="use --vmm qemu (or auto) for boxes with volumes")

    def restore_file(self, spec: VmSpec) -> Path | None:
        """None: a restore goes through the API (restore()), not the command line."""
        return None

    def command(self, spec: VmSpec, restore_fd: int | None = None,
                ram_fd: int | None = None,
                disk_fd: int | None = None) -> list[str]:
        self.check(spec)  # (the disk is opened by its path: `disk_fd` is not used)
        if ram_fd is not None:
            raise VmmUnsupported("cloud-hypervisor cannot share a VM's RAM in a memfd")
        api = ["--api-socket", f"path={_value('socket', spec.control_socket)}"]
        binary = self.binary() or CH_BINARY
        if spec.restore_from:
            # A VMM with no VM: the shim restores the snapshot through the API (the VM's
            # configuration, disks, vsock, memory, comes from it) and resumes it.
            return [binary, *api]
        cmd = [
            binary, *api,
            "--kernel", str(spec.kernel),
            "--initramfs", str(spec.initrd),
            "--cmdline", kernel_cmdline(spec.mode, spec.extra_cmdline),
            "--cpus", f"boot={spec.cpus}",
            "--memory", f"size={spec.memory_mib}M",
            "--serial", f"file={_value('console log', spec.console_log)}",
            "--console", "off",
            "--seccomp", "true",
        ]
        if spec.mode != "agent":
            return cmd
        return [
            *cmd,
            "--disk",
            f"path={_value('disk', spec.agent_root)},readonly=on,image_type=raw,"
            f"serial={AGENT_DISK_SERIAL}",
            # The overlay's base (the image's ext4) is a raw backing file: read only
            # with backing_files=on (cloud-hypervisor >= 50.1/51.0; off by default).
            f"path={_value('disk', spec.rootfs_disk)},image_type=qcow2,backing_files=on,"
            f"serial={ROOTFS_DISK_SERIAL}",
            "--vsock", f"cid={GUEST_CID},socket={_value('socket', spec.agent_socket)}",
            "--rng", "src=/dev/urandom",
        ]

    def agent_channel(self, spec: VmSpec) -> AgentChannel:
        return AgentChannel(
            connect=hybrid_vsock.connector(spec.agent_socket, AGENT_VSOCK_PORT),
            description=f"hybrid vsock {spec.agent_socket} port {AGENT_VSOCK_PORT}")

    def control(self, spec: VmSpec, timeout_s: float = 10.0) -> ChApi:
        from boxlite_cli.vmm.chapi import ChApi

        return ChApi(spec.control_socket, timeout_s)
