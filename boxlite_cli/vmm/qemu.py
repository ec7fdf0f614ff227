"""QEMU `microvm` driver: virtio-mmio disks, virtio-serial agent port, QMP control."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from boxlite_cli.payload import AGENT_DISK_SERIAL, AGENT_PORT_NAME, ROOTFS_DISK_SERIAL
from boxlite_cli.vmm.base import (
    NET_CIDR,
    NET_DNS,
    NET_GUEST,
    NET_HOST,
    NET_PASST,
    NET_USER,
    AgentChannel,
    VmSpec,
)
from boxlite_cli.vmm.cmdline import accel_cmdline, kernel_cmdline
from boxlite_cli.vmm.qmp import MEMORY_FILE, Qmp
from boxlite_cli.vmm.ramimage import ram_image

QEMU_BINARY = "qemu-system-x86_64"
# seccomp: no obsolete syscalls, no privilege changes, no spawning, no resource control.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
# The id of microvm's RAM backend when `-m` makes it: a RAM backend of our own gets the
# same one, so the migration streams of both kinds of VM name the same RAM block.
RAM_ID = "microvm.ram"
TCG_CODE_BUFFER_MIB = 256  # QEMU's translated-code buffer (see below)


def _opt(path: object) -> str:
    """A path as a QEMU option value: commas are doubled so they cannot end the value."""
    return str(path).replace(",", ",,")


def network_args(spec: VmSpec) -> list[str]:
    """The box's NIC: none at all, or a virtio-net on QEMU's user-mode stack (slirp)
    with one `hostfwd` per published port."""
    device = ["-device", "virtio-net-device,netdev=net0"]
    if spec.network == NET_PASST:
        return ["-netdev", f"stream,id=net0,server=off,addr.type=unix,"
                           f"addr.path={_opt(spec.net_socket)}", *device]
    if spec.network != NET_USER:
        return []
    netdev = [f"user,id=net0,net={NET_CIDR},host={NET_HOST},dns={NET_DNS},"
              f"dhcpstart={NET_GUEST},ipv6=off,restrict=off"]
    for fwd in spec.port_forwards:
        host_ip = f"[{fwd.host_ip}]" if ":" in fwd.host_ip else fwd.host_ip
        netdev.append(f"hostfwd={fwd.proto}:{host_ip}:{fwd.host_port}-{NET_GUEST}:{fwd.guest_port}")
    return ["-netdev", ",".join(netdev), *device]


# 9p: guest owners and modes live in xattrs of the host files (user.virtfs.*); files the
# guest creates belong to the user running boxlite, with 0600/0700 host modes, so no
# guest can plant a set-uid or root-owned file on the host (passthrough would).
NINEP_SECURITY_MODEL = "mapped-xattr"


def ram_args(spec: VmSpec, ram_fd: int | None) -> list[str]:
    """The RAM backend: QEMU's own anonymous memory (`-m` alone), or a file mapping:
    shared in the memfd `ram_fd` (a VM that saves a template), or a private, copy-on-
    write mapping of the RAM image it is restored from (nothing is ever written to
    that file; no device of ours discards RAM, which would punch holes in it)."""
    if ram_fd is not None:
        path, share = f"/proc/self/fd/{ram_fd}", "on"
    elif spec.restore_from and (image := ram_image(spec.restore_from)) is not None:
        path, share = _opt(image), "off"
    else:
        return []
    return ["-object", f"memory-backend-file,id={RAM_ID},size={spec.memory_mib}M,"
                       f"mem-path={path},share={share}",
            "-machine", f"memory-backend={RAM_ID}"]


def share_args(spec: VmSpec) -> list[str]:
    """One virtio-9p device per `-v` share."""
    args = []
    for i, share in enumerate(spec.shares):
        ro = ",readonly=on" if share.readonly else ""
        args += ["-fsdev", f"local,id=fs{i},path={_opt(share.path)},"
                           f"security_model={NINEP_SECURITY_MODEL}{ro}",
                 "-device", f"virtio-9p-device,fsdev=fs{i},mount_tag={share.tag}"]
    return args


def rootfs_args(spec: VmSpec, disk_fd: int | None) -> list[str]:
    """The root disk's drive: by its path, or (`disk_fd`) by the magic link of a
    descriptor QEMU inherits. QEMU reopens a disk to change its access (read-only while
    a migration inactivates it, read-write again after); by path that fails once the
    file has been renamed (a spare's disk, moved into its box's directory), and the
    migration with it. /proc/self/fd/N reopens the same file under any name, as a new
    open file of its own (so QEMU's image locks come and go with it, as by path)."""
    source = _opt(spec.rootfs_disk) if disk_fd is None else f"/proc/self/fd/{disk_fd}"
    return ["-drive", f"id=rootfs,file={source},format=qcow2,if=none,discard=unmap"]


class QemuDriver:
    name = "qemu"

    executable = QEMU_BINARY

    def binary(self) -> str | None:
        return shutil.which(self.executable)

    def restore_file(self, spec: VmSpec) -> Path | None:
        """QEMU reads a restore's memory stream from an fd named on its command line
        (a snapshot with a RAM image loads its small device state over QMP instead)."""
        if not spec.restore_from or ram_image(spec.restore_from) is not None:
            return None
        return Path(spec.restore_from) / MEMORY_FILE

    def command(self, spec: VmSpec, restore_fd: int | None = None,
                ram_fd: int | None = None,
                disk_fd: int | None = None) -> list[str]:
        self.check(spec)
        accel_args = (
            ["-accel", "kvm", "-cpu", "host"]
            if spec.accel == "kvm"
            # (QEMU's translated-code buffer is 1 GiB by default, all of it touched by a
            # busy box: 256 MiB ran a fork-heavy loop as fast, at 0.6 GiB RSS, not 1.4)
            else ["-accel", f"tcg,thread=multi,tb-size={TCG_CODE_BUFFER_MIB}", "-cpu", "max"]
        )
        cmd = [
            self.binary() or QEMU_BINARY,
            "-M", "microvm",
            *accel_args,
            "-smp", str(spec.cpus),
            "-m", f"{spec.memory_mib}M",
            *ram_args(spec, ram_fd),
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-sandbox", SANDBOX,
            "-kernel", str(spec.kernel),
            "-initrd", str(spec.initrd),
            "-append", kernel_cmdline(spec.mode, (*accel_cmdline(spec.accel), *spec.extra_cmdline)),
            # (appended: the shim cuts it when it grows too big, shim/consolecap.py)
            "-chardev", f"file,id=con,path={_opt(spec.console_log)},append=on",
            "-serial", "chardev:con",
            "-qmp", f"unix:{_opt(spec.control_socket)},server=on,wait=off",
        ]
        if spec.mode != "agent":
            return cmd
        return [
            *cmd,
            "-drive", f"id=agent,file={_opt(spec.agent_root)},format=raw,if=none,readonly=on",
            "-device", f"virtio-blk-device,drive=agent,serial={AGENT_DISK_SERIAL}",
            *rootfs_args(spec, disk_fd),
            "-device", f"virtio-blk-device,drive=rootfs,serial={ROOTFS_DISK_SERIAL}",
            "-device", "virtio-serial-device",
            "-chardev", f"socket,id=agentch,path={_opt(spec.agent_socket)},server=on,wait=off",
            "-device", f"virtserialport,chardev=agentch,name={AGENT_PORT_NAME}",
            "-device", "virtio-rng-device",
            *network_args(spec),
            *share_args(spec),
            # A restore: QEMU loads the migration stream from `restore_fd` as it starts
            # (see wait_restored()), or, without one, waits for the stream that the
            # control channel's restore() hands it over QMP. Either way the VM is
            # paused afterwards, until resume().
            *(["-incoming", f"fd:{restore_fd}" if restore_fd is not None else "defer"]
              if spec.restore_from else []),
        ]

    def check(self, spec: VmSpec) -> None:
        """QEMU runs every box. (A restore with 9p devices is one from a warm-start
        template, saved before the guest mounted any: memory checkpoints of boxes with
        volumes are refused when they are taken, as QEMU cannot migrate a mounted export.)"""

    def agent_channel(self, spec: VmSpec) -> AgentChannel:
        path = spec.agent_socket

        def connect() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(str(path))
            except BaseException:
                sock.close()
                raise
            return sock

        return AgentChannel(connect=connect, description=f"virtio-serial chardev {path}",
                            unix_path=path)

    def control(self, spec: VmSpec, timeout_s: float = 10.0) -> Qmp:
        return Qmp(spec.control_socket, timeout_s)

    def agent_target(self, spec: VmSpec) -> str:
        return f"unix:{spec.agent_socket}"
