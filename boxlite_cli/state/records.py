"""The records kept in a box's state.json, and their (de)serialisation."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from boxlite_cli.errors import StateCorrupt
from boxlite_cli.state.health import Health, HealthConfig
from boxlite_cli.state.network import NetworkConfig, PortMapping
from boxlite_cli.state.pidfile import ProcessRecord
from boxlite_cli.state.volumes import Mount

FORMAT = 1


class Status(StrEnum):
    """Lifecycle of a box. `created` boxes have disks but no VM."""

    CREATING = "creating"
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"


@dataclass
class ProcessSpec:
    """The main process of a box (or of an exec)."""

    argv: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = ""
    user: str = ""
    tty: bool = False
    stdin: bool = False
    rows: int = 0
    cols: int = 0
    timeout_s: float = 0.0
    # how many of argv's first items are the entrypoint (docker's Config.Entrypoint);
    # the rest is the command (Config.Cmd)
    entrypoint_len: int = 0


# A box's processes and threads at most, unless --pids-limit says otherwise (podman's
# default is 2048; docker has none): a fork bomb ends there, not in a guest too busy to
# start an exec.
DEFAULT_PIDS_LIMIT = 4096


@dataclass
class BoxConfig:
    """What the user asked for when creating the box; fixed for its life."""

    image: str
    image_id: str
    rootfs_base: str
    process: ProcessSpec
    cpus: int = 1  # the VM's vCPUs
    memory_mib: int = 512
    accel: str = "auto"
    vmm: str = "auto"  # auto | qemu | cloud-hypervisor (--vmm)
    auto_remove: bool = False
    detach: bool = False
    hostname: str = ""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    stop_signal: str = ""  # what `stop` sends the main process ("": SIGTERM)
    # Seconds `stop` waits after the stop signal before SIGKILL (None: 10; -t overrides)
    stop_timeout: float | None = None
    # Processes and threads the box may have at once (--pids-limit; 0: no limit)
    pids_limit: int = DEFAULT_PIDS_LIMIT
    # The root disk's size in bytes (--disk-size; 0: the image's filesystem as built,
    # its content and 4 GiB free)
    disk_size: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # --label KEY=VALUE
    # --expose, as ExposedPorts keys ("80/tcp"): published by -P, kept by commit
    exposed: list[str] = field(default_factory=list)
    # --log-driver and --log-opt, checked (runtime/logopts.py): "none" keeps no log
    log_driver: str = "json-file"
    log_options: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)  # -v, in the order given
    # --cap-add and --cap-drop, normalized (state/capabilities.py); none: every one
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False  # --privileged: every capability, over cap_add and cap_drop
    # --cpus with a fraction (1.5): the CPUs' worth of time the box's processes may use,
    # in the guest's cgroup; its VM has the vCPUs rounded up. 0: all of the vCPUs.
    cpu_limit: float = 0.0
    read_only: bool = False  # --read-only: the root file system is read-only in the box
    tmpfs: list[str] = field(default_factory=list)  # --tmpfs PATH[:OPTIONS], as given
    # --restart, normalized (state/restartpolicy.py): no, always, unless-stopped,
    # on-failure or on-failure:N
    restart: str = "no"
    ulimits: list[str] = field(default_factory=list)  # --ulimit, NAME=SOFT:HARD (ulimits.py)
    # --security-opt no-new-privileges: no process of the box gains privileges by exec
    no_new_privileges: bool = False
    group_add: list[str] = field(default_factory=list)  # --group-add (state/groupadd.py)
    shm_size: int = 0  # --shm-size in bytes (0: /dev/shm's 64 MiB; a --tmpfs of it wins)
    sysctls: dict[str, str] = field(default_factory=dict)  # --sysctl (state/sysctls.py)
    # The health check (--health-*, over the image's HEALTHCHECK: state/health.py); None:
    # none
    healthcheck: HealthConfig | None = None
    # The ext4 UUID of rootfs_base when the box's disk was made on it (disks/ext4.py): a
    # base unpacked again since is another file system ("": not known, made before).
    rootfs_base_id: str = ""
    publish_all: bool = False  # -P (docker's HostConfig.PublishAllPorts): as asked


@dataclass
class BoxState:
    """Everything known about one box. Changed only under its box.lock."""

    id: str
    name: str
    config: BoxConfig
    status: Status = Status.CREATING
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    # The exit code of the run before this one (kept by every start): what a `wait` on
    # that run returns once a `restart` has begun the next.
    last_exit_code: int | None = None
    # Starts by the restart policy since the last start by hand (docker's RestartCount).
    restart_count: int = 0
    # The restarter waiting to start the box again by its policy, and the backoff it
    # waits (docker's, doubled from the last one: state/restartpolicy.py); both cleared
    # by every start (the delay by a start by hand only).
    restarter: dict[str, int] | None = None
    restart_delay_s: float = 0.0
    error: str | None = None
    accel: str | None = None
    vmm: str | None = None  # the VMM the current (or last) start used
    # The process creating or starting the box, until the shim takes over.
    creator: dict[str, int] | None = None
    # The ports the current (or last) start published, host ports resolved.
    ports: list[PortMapping] = field(default_factory=list)
    # The root disk's file identity as `create` made it (disks.qcow2.file_identity):
    # while it matches, nothing has written the disk yet (a primed warm start may).
    fresh_disk: str | None = None
    # `boxlite pause`: the VM is stopped (QEMU's `stop`) until `unpause`; meaningful
    # while the status is running (see is_paused), cleared by every start.
    paused: bool = False
    # Why the VM stands stopped though nobody paused it (QEMU's io-error: the host's disk
    # is full), set and cleared by its shim; meaningful while the status is running.
    held: str | None = None
    # The kernel's OOM killer killed a process of the box during its last run (docker's
    # State.OOMKilled); cleared by every start.
    oom_killed: bool = False
    # The box's health (state/health.py), while it has a health check: set "starting" by
    # every start, by its shim after each check; kept when the box ends.
    health: Health | None = None
    format: int = FORMAT

    @property
    def is_paused(self) -> bool:
        return self.paused and self.status == Status.RUNNING

    @property
    def is_held(self) -> bool:
        return bool(self.held) and self.status == Status.RUNNING

    @property
    def is_restarting(self) -> bool:
        """Exited, and its restart policy's restarter waits to start it (docker's
        "Restarting")."""
        if self.status != Status.EXITED or self.restarter is None:
            return False
        restarter = ProcessRecord.from_json(self.restarter)
        return restarter is not None and restarter.alive()

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["paused"] = self.is_paused  # (a box that stopped while paused is not paused)
        return data

    @classmethod
    def from_json(cls, data: Any) -> BoxState:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        cfg = dict(data["config"])
        cfg["process"] = ProcessSpec(**cfg["process"])
        cfg["network"] = NetworkConfig.from_json(cfg.get("network"))
        cfg["mounts"] = [Mount.from_json(m) for m in cfg.get("mounts") or []]
        cfg["healthcheck"] = HealthConfig.from_json(cfg.get("healthcheck"))
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["config"] = BoxConfig(**cfg)
        values["status"] = Status(values["status"])
        values["ports"] = [PortMapping.from_json(p) for p in values.get("ports") or []]
        values["health"] = Health.from_json(values.get("health"))
        return cls(**values)


def load_state(path: Path) -> BoxState:
    """Read a state.json; raises StateCorrupt naming the file when unreadable."""
    try:
        return BoxState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StateCorrupt(
            f"corrupt box state file {path}: {e}",
            hint=f"remove the box with: boxlite rm -f {path.parent.name[:12]}",
        ) from e
