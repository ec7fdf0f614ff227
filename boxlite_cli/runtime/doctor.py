"""Health checks of the host: VMM, disk tools, guest payload, accelerators."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from boxlite_cli.errors import BoxliteError
from boxlite_cli.payload import PayloadMissing, build_hint, find_payload
from boxlite_cli.state.paths import home_paths
from boxlite_cli.state.settings import registry_settings, vmm_setting
from boxlite_cli.vmm.accel import kvm_verdict, static_kvm_problem
from boxlite_cli.vmm.cloudhv import CH_BINARY, MIN_VERSION, RELEASES_URL, parse_version
from boxlite_cli.vmm.qemu import QEMU_BINARY

APT_FIX = "apt-get install -y {}"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tool_version(binary: str, flag: str = "--version") -> str | None:
    """The first line `binary FLAG` prints (None: not installed)."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        return None
    try:
        out = subprocess.run([path, flag], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown version"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown version"


def tool_check(name: str, binary: str, package: str, flag: str = "--version") -> Check:
    version = tool_version(binary, flag)
    if version is None:
        return Check(name, False, f"{binary} not found", APT_FIX.format(package))
    return Check(name, True, version)


def cloud_hypervisor_check(version: str | None, kvm_ok: bool, kvm_reason: str) -> Check:
    """Found or not, version, usable or why not, and the fix (optional: QEMU runs all)."""
    fix = f"download the static binary from {RELEASES_URL} onto PATH (no Debian package)"
    if version is None:
        return Check("cloud-hypervisor", False, f"{CH_BINARY} not found (optional; boxes use QEMU)",
                     fix, required=False)
    parsed = parse_version(version)
    if parsed is not None and parsed < MIN_VERSION:
        want = ".".join(map(str, MIN_VERSION))
        return Check("cloud-hypervisor", False, f"{version}: too old (box disks need "
                     f"v{want}+ for qcow2 overlays on a raw base, backing_files=on)",
                     f"upgrade: {RELEASES_URL}", required=False)
    if not kvm_ok:
        return Check("cloud-hypervisor", False, f"{version}: not usable, it needs KVM "
                     f"({kvm_reason})", "enable KVM (see the kvm check); boxes use QEMU meanwhile",
                     required=False)
    return Check("cloud-hypervisor", True, f"{version}: usable (--vmm cloud-hypervisor; auto "
                 "picks it for boxes with --network none and no volumes)", required=False)


def home_check() -> Check:
    """Whether this home's directories can be made and used, and its config.toml read."""
    try:
        paths = home_paths()
        paths.ensure()
        registry_settings(paths.config)
        vmm_setting(paths.config)
    except BoxliteError as e:
        return Check("home", False, e.message, e.hint or "")
    return Check("home", True, str(paths.data))


def run_checks() -> list[Check]:
    checks = [
        home_check(),
        tool_check("qemu", QEMU_BINARY, "qemu-system-x86"),
        tool_check("qemu-img", "qemu-img", "qemu-utils"),
        tool_check("mkfs.ext4", "mkfs.ext4", "e2fsprogs", flag="-V"),  # (no --version)
    ]
    try:
        payload = find_payload()
    except PayloadMissing as e:
        checks.append(Check("guest payload", False, f"not built (expected in {e})",
                            build_hint()))
        checks.append(Check("accelerator", False, "unknown until the payload is built",
                            build_hint()))
        problem = static_kvm_problem()
        checks.append(cloud_hypervisor_check(tool_version(CH_BINARY), problem is None,
                                             problem or ""))
        return checks
    manifest = payload.manifest()
    checks.append(Check("guest payload", True,
                        f"{payload.root} (kernel {manifest.get('kernel_version', '?')})"))
    verdict = kvm_verdict(home_paths().cache / "accel.json", payload.kernel, payload.initrd)
    if verdict.kvm_ok:
        checks.append(Check("kvm", True, verdict.reason))
    else:
        checks.append(Check("kvm", False, verdict.reason,
                            "enable virtualisation in the BIOS/hypervisor and load kvm_intel or "
                            "kvm_amd; boxes run with TCG meanwhile", required=False))
    checks.append(cloud_hypervisor_check(tool_version(CH_BINARY), verdict.kvm_ok,
                                         verdict.reason))
    qemu_ok = shutil.which(QEMU_BINARY) is not None
    checks.append(Check("tcg", qemu_ok,
                        "software emulation available (slower than KVM)" if qemu_ok
                        else "needs QEMU", "" if qemu_ok else APT_FIX.format("qemu-system-x86")))
    return checks
