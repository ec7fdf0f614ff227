"""The launch description the runtime hands to a box's shim (`vm.json`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from boxlite_cli.shim.logframes import LOG_FILES, LOG_MAX_BYTES
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.vmm.base import PortForward, Share, VmSpec

TEMPLATE_META = "template.json"
ROOTFS_LAYER = "rootfs.qcow2"  # a primed template's disk overlay, as it was at the save
PATH_FIELDS = ("kernel", "initrd", "agent_root", "rootfs_disk", "console_log",
               "agent_socket", "control_socket")


@dataclass(frozen=True)
class GuestNetwork:
    """What the guest agent's Init sets up: interface, /etc/resolv.conf, /etc/hosts.

    Sent at every start, never stored in the VM's disks, so a VM restored from a
    template gets the network of the box it becomes.
    """

    mode: str = "none"
    address: str = ""  # CIDR
    gateway: str = ""
    dns: tuple[str, ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()
    mac: str = ""
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "address": self.address, "gateway": self.gateway,
                "dns": list(self.dns), "hosts": [list(h) for h in self.hosts], "mac": self.mac,
                "dns_search": list(self.dns_search), "dns_options": list(self.dns_options)}

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> GuestNetwork:
        if not data:
            return cls()
        dns = data.get("dns") or []
        hosts = data.get("hosts") or []
        search = data.get("dns_search") or []
        options = data.get("dns_options") or []
        assert isinstance(dns, list) and isinstance(hosts, list)
        assert isinstance(search, list) and isinstance(options, list)
        return cls(str(data.get("mode", "none")), str(data.get("address", "")),
                   str(data.get("gateway", "")), tuple(str(d) for d in dns),
                   tuple((str(n), str(ip)) for n, ip in hosts), str(data.get("mac", "")),
                   tuple(str(d) for d in search), tuple(str(o) for o in options))


@dataclass(frozen=True)
class GuestVolume:
    """Where the agent mounts a 9p share (see agent.proto's VolumeMount)."""

    tag: str
    target: str
    readonly: bool = False
    file_name: str = ""
    populate: bool = False  # an empty volume: filled from the image first


@dataclass(frozen=True)
class GuestTmpfs:
    """A tmpfs the agent mounts in the box (agent.proto's TmpfsMount; --tmpfs)."""

    target: str
    size_bytes: int = 0
    mode: int = 0o1777
    readonly: bool = False
    exec_: bool = False
    suid: bool = False
    dev: bool = False
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Launch:
    driver: str
    vm: VmSpec
    boot_timeout_s: float
    # A CLI will attach to the main process (foreground run); else the shim logs it.
    foreground: bool = False
    # A foreground CLI's (stdout, stderr), inherited at these fd numbers: the shim
    # writes the main process's output there itself and reports its exit status on
    # the ready pipe, so that CLI needs no connection (and no gRPC) at all.
    output_fds: tuple[int, ...] = ()
    network: GuestNetwork = field(default_factory=GuestNetwork)
    volumes: tuple[GuestVolume, ...] = ()
    # Boot without the main process, for `cp` on a stopped box; the box's state is
    # left alone and the VM goes when the CLI closes its hold pipe.
    maintenance: bool = False
    # Save a warm-start template here once the agent is ready (first cold start);
    # a start from one has `vm.restore_from` set instead.
    save_template: str = ""
    # ... primed: after a box-neutral Init, with the disk's overlay (the box's disk is
    # still as `create` made it; see runtime/templates.py).
    prime_template: bool = False
    # `vm.restore_from` is this box's own checkpoint: its processes run on, so there
    # is no Init and no main process to start, only the clock and entropy to reset.
    resume: bool = False
    # The size past which container.log is rotated (shim/logframes.py), and how many
    # files it keeps, the rotated ones included (0: no log, --log-driver none).
    log_max_bytes: int = LOG_MAX_BYTES
    log_files: int = LOG_FILES
    tmpfs: tuple[GuestTmpfs, ...] = ()  # --tmpfs
    # The foreground CLI's stdout and stderr are one file (`2>&1`): the main process
    # gets one pipe for both, so their order is kept (agent.proto's merge_stderr).
    merge_stderr: bool = False

    def save(self, path: Path) -> None:
        vm = {k: (str(v) if k in PATH_FIELDS else v) for k, v in asdict(self.vm).items()}
        vm["extra_cmdline"] = list(self.vm.extra_cmdline)
        vm["port_forwards"] = [asdict(f) for f in self.vm.port_forwards]
        vm["shares"] = [asdict(s) for s in self.vm.shares]
        write_json_atomic(path, {"driver": self.driver, "vm": vm,
                                 "boot_timeout_s": self.boot_timeout_s,
                                 "foreground": self.foreground,
                                 "output_fds": list(self.output_fds),
                                 "network": self.network.to_json(),
                                 "volumes": [asdict(v) for v in self.volumes],
                                 "maintenance": self.maintenance,
                                 "save_template": self.save_template,
                                 "prime_template": self.prime_template,
                                 "resume": self.resume,
                                 "log_max_bytes": self.log_max_bytes,
                                 "log_files": self.log_files,
                                 "tmpfs": [asdict(t) for t in self.tmpfs],
                                 "merge_stderr": self.merge_stderr},
                          durable=False)  # (written again at every start: see state/atomic.py)

    @classmethod
    def load(cls, path: Path) -> Launch:
        data = json.loads(path.read_text())
        vm = dict(data["vm"])
        for k in PATH_FIELDS:
            vm[k] = Path(vm[k])
        vm["extra_cmdline"] = tuple(vm.get("extra_cmdline", ()))
        vm["port_forwards"] = tuple(PortForward(**f) for f in vm.get("port_forwards", ()))
        vm["shares"] = tuple(Share(**s) for s in vm.get("shares", ()))
        return cls(str(data["driver"]), VmSpec(**vm), float(data["boot_timeout_s"]),
                   bool(data.get("foreground", False)),
                   tuple(int(fd) for fd in data.get("output_fds", ())),
                   GuestNetwork.from_json(data.get("network")),
                   tuple(GuestVolume(**v) for v in data.get("volumes", ())),
                   bool(data.get("maintenance", False)),
                   str(data.get("save_template", "")),
                   bool(data.get("prime_template", False)),
                   bool(data.get("resume", False)),
                   int(data.get("log_max_bytes", LOG_MAX_BYTES)),
                   int(data.get("log_files", LOG_FILES)),
                   tuple(GuestTmpfs(**t) for t in data.get("tmpfs", ())),
                   bool(data.get("merge_stderr", False)))
