"""The guest kernel command line shared by every driver."""

from __future__ import annotations

# Quiet console (serial output is slow under emulation), no reboot loops, and the
# timer/tsc checks that only cost time in a VM.
BASE_CMDLINE = (
    "console=ttyS0",
    "quiet",
    "loglevel=1",
    "panic=-1",
    "reboot=t",
    "tsc=reliable",
    "no_timer_check",
    "i8042.noaux",
    "i8042.nomux",
    "i8042.nopnp",
    "i8042.dumbkbd",
    "random.trust_cpu=on",
)


def kernel_cmdline(mode: str, extra: tuple[str, ...] = ()) -> str:
    return " ".join((*BASE_CMDLINE, f"boxlite.mode={mode}", *extra))
