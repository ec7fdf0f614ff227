"""Looking up a VMM driver by name."""

from __future__ import annotations

from boxlite_cli.errors import UsageError
from boxlite_cli.vmm.base import VmmDriver
from boxlite_cli.vmm.qemu import QemuDriver

DRIVERS: dict[str, type[QemuDriver]] = {"qemu": QemuDriver}


def get_driver(name: str) -> VmmDriver:
    try:
        return DRIVERS[name]()
    except KeyError:
        raise UsageError(f"unknown VMM {name!r}: choose one of {', '.join(DRIVERS)}") from None
