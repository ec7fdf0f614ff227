"""QEMU `microvm` driver: virtio-mmio disks, virtio-serial agent port, QMP control."""

from __future__ import annotations

import shutil

from boxlite_cli.payload import AGENT_DISK_SERIAL, AGENT_PORT_NAME, ROOTFS_DISK_SERIAL
from boxlite_cli.vmm.base import VmSpec
from boxlite_cli.vmm.cmdline import accel_cmdline, kernel_cmdline

QEMU_BINARY = "qemu-system-x86_64"
# seccomp: no obsolete syscalls, no privilege changes, no spawning, no resource control.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def _opt(path: object) -> str:
    """A path as a QEMU option value: commas are doubled so they cannot end the value."""
    return str(path).replace(",", ",,")


class QemuDriver:
    name = "qemu"

    def binary(self) -> str | None:
        return shutil.which(QEMU_BINARY)

    def command(self, spec: VmSpec) -> list[str]:
        accel_args = (
            ["-accel", "kvm", "-cpu", "host"]
            if spec.accel == "kvm"
            else ["-accel", "tcg,thread=multi", "-cpu", "max"]
        )
        cmd = [
            self.binary() or QEMU_BINARY,
            "-M", "microvm",
            *accel_args,
            "-smp", str(spec.cpus),
            "-m", f"{spec.memory_mib}M",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-sandbox", SANDBOX,
            "-kernel", str(spec.kernel),
            "-initrd", str(spec.initrd),
            "-append", kernel_cmdline(spec.mode, (*accel_cmdline(spec.accel), *spec.extra_cmdline)),
            "-chardev", f"file,id=con,path={_opt(spec.console_log)}",
            "-serial", "chardev:con",
            "-qmp", f"unix:{_opt(spec.control_socket)},server=on,wait=off",
        ]
        if spec.mode != "agent":
            return cmd
        return [
            *cmd,
            "-drive", f"id=agent,file={_opt(spec.agent_root)},format=raw,if=none,readonly=on",
            "-device", f"virtio-blk-device,drive=agent,serial={AGENT_DISK_SERIAL}",
            "-drive", f"id=rootfs,file={_opt(spec.rootfs_disk)},format=qcow2,if=none,"
                      "discard=unmap",
            "-device", f"virtio-blk-device,drive=rootfs,serial={ROOTFS_DISK_SERIAL}",
            "-device", "virtio-serial-device",
            "-chardev", f"socket,id=agentch,path={_opt(spec.agent_socket)},server=on,wait=off",
            "-device", f"virtserialport,chardev=agentch,name={AGENT_PORT_NAME}",
            "-device", "virtio-rng-device",
        ]

    def agent_target(self, spec: VmSpec) -> str:
        return f"unix:{spec.agent_socket}"
