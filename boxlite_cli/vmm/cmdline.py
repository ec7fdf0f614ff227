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
    """The host's TSC rate in kHz when it is constant (x86 `constant_tsc`) and known
    to the kernel (`tsc_known_freq`), else None.

    Under TCG the guest's TSC runs at the host's rate, but the guest can only
    calibrate it against the emulated PIT, which fails when the host is busy (the
    guest then stalls with "Marking TSC unstable"). Telling it the rate avoids that.
    A wrong rate would be worse (the guest's clock would run fast or slow). "cpu MHz"
    is the kernel's TSC rate only where it does not report the current frequency
    instead, as bare metal does (an `aperfmperf` CPU, or a cpufreq driver: `cpufreq`,
    else looked up in sysfs). There "bogomips" is used: the kernel derives it from
    the TSC rate (loops per jiffy = TSC kHz x 1000 / HZ; bogomips = TSC kHz / 500).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read(65536)
        except OSError:
            return None
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())  # the first processor's
    flags = set(fields.get("flags", "").split())
    if not {"constant_tsc", "tsc_known_freq"} <= flags:
        return None
    if cpufreq is None:
        cpufreq = os.path.isdir(CPUFREQ_DIR)
    scaled = cpufreq or "aperfmperf" in flags
    try:
        khz = float(fields["bogomips"]) * 500 if scaled else float(fields["cpu MHz"]) * 1000
    except (KeyError, ValueError):
        return None
    return round(khz) if khz > 0 else None


def accel_cmdline(accel: str) -> tuple[str, ...]:
    """Kernel parameters that depend on the accelerator."""
    if accel != "tcg":
        return ()
    khz = host_tsc_khz()
    return (f"tsc_early_khz={khz}",) if khz else ()
