"""Choosing the accelerator: KVM when a short boot probe succeeds, TCG otherwise.

The verdict is cached per host boot (`/proc/sys/kernel/random/boot_id`), so a run
never pays for the probe twice. A PVM-backed /dev/kvm (`/sys/module/kvm_pvm`) cannot
boot a standard guest kernel, so it is rejected without probing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from boxlite_cli.errors import UsageError
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.vmm.base import VmSpec
from boxlite_cli.vmm.qemu import QemuDriver

ACCELS = ("auto", "kvm", "tcg")
PROBE_MARKER = b"BOXLITE-PROBE-OK"
PROBE_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class AccelVerdict:
    """Whether KVM works on this host boot, and why not when it does not."""

    kvm_ok: bool
    reason: str
    boot_id: str
    # Made by this call, not read from the cache: the CLI says "no KVM" then only.
    fresh: bool = field(default=False, compare=False)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def static_kvm_problem() -> str | None:
    """A reason KVM cannot work that needs no probe, or None."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist (no hardware virtualisation, or kvm is not loaded)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable by this user (add yourself to the kvm group)"
    if os.path.exists("/sys/module/kvm_pvm"):
        return "/dev/kvm is served by kvm_pvm, which cannot boot a standard guest kernel"
    return None


def probe_kvm(kernel: Path, initrd: Path, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Boot the payload kernel under KVM in probe mode; bounded by `timeout_s`."""
    with tempfile.TemporaryDirectory(prefix="boxlite-probe-") as tmp:
        t = Path(tmp)
        spec = VmSpec(
            kernel=kernel, initrd=initrd, agent_root=t / "none", rootfs_disk=t / "none",
            console_log=t / "console.log", agent_socket=t / "a.sock",
            control_socket=t / "c.sock", accel="kvm", mode="probe", memory_mib=256,
        )
        cmd = QemuDriver().command(spec)
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return False, f"a KVM guest did not finish booting within {timeout_s:.0f} s"
        except OSError as e:
            return False, f"could not run QEMU: {e}"
        console = (t / "console.log").read_bytes() if (t / "console.log").exists() else b""
        if PROBE_MARKER in console:
            return True, "a KVM guest booted"
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return False, "a KVM guest failed to boot" + (f": {err[-1]}" if err else "")


def kvm_verdict(cache_file: Path, kernel: Path, initrd: Path) -> AccelVerdict:
    """The cached verdict for this host boot, probing once if there is none."""
    bid = boot_id()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(cache_file.read_text())
        if data["boot_id"] == bid:
            return AccelVerdict(bool(data["kvm_ok"]), str(data["reason"]), bid)
    problem = static_kvm_problem()
    ok, reason = (False, problem) if problem else probe_kvm(kernel, initrd)
    verdict = AccelVerdict(ok, reason, bid, fresh=True)
    with contextlib.suppress(OSError):
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_file, {"boot_id": bid, "kvm_ok": ok, "reason": reason}, 0o644)
    return verdict


def requested_accel(flag: str | None) -> str:
    """The accelerator asked for by --accel or BOXLITE_ACCEL (default auto)."""
    value = (flag or os.environ.get("BOXLITE_ACCEL") or "auto").lower()
    if value not in ACCELS:
        raise UsageError(f"invalid accelerator {value!r}: choose one of {', '.join(ACCELS)}")
    return value
