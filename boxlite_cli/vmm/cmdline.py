"""The guest kernel command line shared by every driver."""

from __future__ import annotations

import os

# Quiet console (serial output is slow under emulation), power off on panic, and no
# boot-time work a box never needs: crypto self-tests (~0.3 s under TCG) and the
# kprobe trace initcall (~0.2 s). Measured in images/README.md.
BASE_CMDLINE = (
    "console=ttyS0",
    "quiet",
    "loglevel=1",
    "panic=-1",
    "tsc=reliable",
    "random.trust_cpu=on",
    "cryptomgr.notests",
    "initcall_blacklist=init_kprobe_trace",
)


def kernel_cmdline(mode: str, extra: tuple[str, ...] = ()) -> str:
    return " ".join((*BASE_CMDLINE, f"boxlite.mode={mode}", *extra))


CPUFREQ_DIR = "/sys/devices/system/cpu/cpu0/cpufreq"


def host_tsc_khz(cpuinfo: str | None = None, cpufreq: bool | None = None) -> int | None:
    """The host's TSC rate in kHz when it is constant (x86 `constant_tsc`) and known,
    else None.

    Under TCG the guest's TSC runs at the host's rate, but the guest can only
    calibrate it against the emulated PIT, which fails when the host is busy (the
    guest then stalls with "Marking TSC unstable"). Telling it the rate avoids that.
    A wrong rate would be worse (the guest's clock would run fast or slow), so it is
    taken from "cpu MHz" only where that is the kernel's calibrated rate: not where
    the kernel reports the current frequency instead (an `aperfmperf` CPU, or a host
    with a cpufreq driver: `cpufreq`, else looked up in sysfs), as bare metal does.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read(65536)
        except OSError:
            return None
    if cpufreq is None:
        cpufreq = os.path.isdir(CPUFREQ_DIR)
    if cpufreq:
        return None
    flags: set[str] = set()
    mhz = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "cpu MHz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                return None
    if mhz is None or not {"constant_tsc", "tsc_known_freq"} <= flags or "aperfmperf" in flags:
        return None
    return round(mhz * 1000)


def accel_cmdline(accel: str) -> tuple[str, ...]:
    """Kernel parameters that depend on the accelerator."""
    if accel != "tcg":
        return ()
    khz = host_tsc_khz()
    return (f"tsc_early_khz={khz}",) if khz else ()
