"""The guest kernel command line shared by every driver."""

from __future__ import annotations

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


def host_tsc_khz(cpuinfo: str | None = None) -> int | None:
    """The host's TSC rate in kHz when it is constant (x86 `constant_tsc`), else None.

    Under TCG the guest's TSC runs at the host's rate, but the guest can only
    calibrate it against the emulated PIT, which fails when the host is busy (the
    guest then stalls with "Marking TSC unstable"). Telling it the rate avoids that.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read(65536)
        except OSError:
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
    if mhz is None or "constant_tsc" not in flags or "tsc_known_freq" not in flags:
        return None
    return round(mhz * 1000)


def accel_cmdline(accel: str) -> tuple[str, ...]:
    """Kernel parameters that depend on the accelerator."""
    if accel != "tcg":
        return ()
    khz = host_tsc_khz()
    return (f"tsc_early_khz={khz}",) if khz else ()
