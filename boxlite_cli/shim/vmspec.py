"""The launch description the runtime hands to a box's shim (`vm.json`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.vmm.base import VmSpec

PATH_FIELDS = ("kernel", "initrd", "agent_root", "rootfs_disk", "console_log",
               "agent_socket", "control_socket")


@dataclass(frozen=True)
class Launch:
    driver: str
    vm: VmSpec
    boot_timeout_s: float
    # A CLI will attach to the main process (foreground run); else the shim logs it.
    foreground: bool = False

    def save(self, path: Path) -> None:
        vm = {k: (str(v) if k in PATH_FIELDS else v) for k, v in asdict(self.vm).items()}
        vm["extra_cmdline"] = list(self.vm.extra_cmdline)
        write_json_atomic(path, {"driver": self.driver, "vm": vm,
                                 "boot_timeout_s": self.boot_timeout_s,
                                 "foreground": self.foreground})

    @classmethod
    def load(cls, path: Path) -> Launch:
        data = json.loads(path.read_text())
        vm = dict(data["vm"])
        for k in PATH_FIELDS:
            vm[k] = Path(vm[k])
        vm["extra_cmdline"] = tuple(vm.get("extra_cmdline", ()))
        return cls(str(data["driver"]), VmSpec(**vm), float(data["boot_timeout_s"]),
                   bool(data.get("foreground", False)))
