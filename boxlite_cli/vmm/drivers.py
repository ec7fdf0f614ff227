"""Looking up a VMM driver by name, and choosing one for `--vmm auto`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from boxlite_cli.errors import UsageError
from boxlite_cli.vmm.base import NET_NONE, VmmDriver, VmmUnsupported, VmSpec

if TYPE_CHECKING:
    from boxlite_cli.vmm.cloudhv import CloudHypervisorDriver

QEMU = "qemu"
CLOUD_HYPERVISOR = "cloud-hypervisor"
AUTO = "auto"


# The driver modules are imported only when a driver is made: a command that never
# touches a VMM (or only QEMU) does not pay for cloud-hypervisor's REST client.
def _qemu() -> VmmDriver:
    from boxlite_cli.vmm.qemu import QemuDriver

    return QemuDriver()


def _cloud_hypervisor() -> CloudHypervisorDriver:
    from boxlite_cli.vmm.cloudhv import CloudHypervisorDriver

    return CloudHypervisorDriver()


DRIVERS: dict[str, Callable[[], VmmDriver]] = {
    QEMU: _qemu,
    CLOUD_HYPERVISOR: _cloud_hypervisor,
}
VMMS = (AUTO, QEMU, CLOUD_HYPERVISOR)
ENV_VMM = "BOXLITE_VMM"


def get_driver(name: str) -> VmmDriver:
    try:
        return DRIVERS[name]()
    except KeyError:
        raise UsageError(f"unknown VMM {name!r}: choose one of {', '.join(DRIVERS)}") from None


def requested_vmm(flag: str | None, configured: str | None = None,
                  config_file: str = "config.toml") -> str:
    """The VMM asked for: --vmm, else $BOXLITE_VMM, else config.toml's `vmm`, else auto."""
    given = [(flag, "--vmm"), (os.environ.get(ENV_VMM), f"${ENV_VMM}"),
             (configured, f"vmm in {config_file}"), (AUTO, "")]
    text, source = next((v, where) for v, where in given if v)
    value = text.strip().lower()
    if value not in VMMS:
        raise UsageError(f"invalid VMM {value!r} ({source}): choose one of {', '.join(VMMS)}")
    return value


@dataclass(frozen=True)
class VmmChoice:
    name: str
    accel: str
    # Why auto did not take cloud-hypervisor (empty when it did, or was not asked).
    note: str = ""


def box_needs_qemu(spec: VmSpec) -> str:
    """What of the box only QEMU can serve, or ''."""
    if spec.network != NET_NONE or spec.port_forwards:
        return "the box has a user-mode network (--network nat), which only QEMU has"
    if spec.shares:
        return "the box has -v volumes (virtio-9p), which only QEMU has"
    return ""


def choose_vmm(requested: str, accel: str, kvm_ok: bool, spec: VmSpec,
               kvm_reason: str = "", ch_binary: str | None = None) -> VmmChoice:
    """The VMM (and accelerator) a start uses.

    `accel` is the accelerator already chosen for QEMU (kvm or tcg). `auto` prefers
    cloud-hypervisor when its binary is on PATH, KVM works and the box needs nothing
    only QEMU has; otherwise QEMU. An explicit cloud-hypervisor always runs with KVM
    (it fails here without KVM; its driver's check() says what else it cannot do).
    """
    if requested == QEMU:
        return VmmChoice(QEMU, accel)
    if requested == CLOUD_HYPERVISOR:
        if not kvm_ok:
            raise VmmUnsupported(
                f"cloud-hypervisor needs KVM, which is not usable here ({kvm_reason})",
                hint="use --vmm qemu (software emulation), or a host with working KVM")
        return VmmChoice(CLOUD_HYPERVISOR, accel)  # its check() refuses --accel tcg
    if ch_binary is None:
        ch_binary = _cloud_hypervisor().binary()
    if ch_binary is None:
        return VmmChoice(QEMU, accel, "cloud-hypervisor is not on PATH")
    if not kvm_ok or accel != "kvm":
        return VmmChoice(QEMU, accel, "KVM is not usable")
    needs = box_needs_qemu(spec)
    if needs:
        return VmmChoice(QEMU, accel, needs)
    return VmmChoice(CLOUD_HYPERVISOR, "kvm")


def check_box_config(vmm: str, network_mode: str, has_ports: bool, has_volumes: bool) -> None:
    """At create time: refuse a box the explicitly chosen VMM could never run."""
    if vmm != CLOUD_HYPERVISOR:
        return
    if network_mode != "none" or has_ports:
        raise VmmUnsupported(
            "cloud-hypervisor has no user-mode network (no slirp): --network nat and -p "
            "need QEMU", hint="add --network none, or use --vmm qemu (or auto)")
    if has_volumes:
        raise VmmUnsupported("cloud-hypervisor has no virtio-9p: -v volumes need QEMU",
                             hint="use --vmm qemu (or auto)")
