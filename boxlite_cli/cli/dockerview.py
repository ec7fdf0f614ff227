"""docker's shape of a box for `inspect`, beside boxlite's own record: the sections and
keys docker users' templates and `jq` scripts read, with docker's names (`State`,
`Config`, `HostConfig`, `NetworkSettings`, `Mounts`, `Path`, `Args`, `Image`, ...).

Values carry docker's meaning with boxlite's facts: the box's address is its VM's on
the user-mode network, `HostConfig.Memory` is the VM's RAM, `State.Pid` its QEMU.
boxlite's own record keeps its snake_case keys (`id`, `status`, `config`, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boxlite_cli.cli.output import rfc3339
from boxlite_cli.cli.paramtypes import MAX_TIMEOUT_S
from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.network import GATEWAY, box_mac
from boxlite_cli.runtime.tmpfs import SHM, parse_tmpfs
from boxlite_cli.state.health import Health, HealthConfig
from boxlite_cli.state.network import NAT, PortMapping
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.state.restartpolicy import policy_parts
from boxlite_cli.state.ulimits import parse_ulimit
from boxlite_cli.state.volumes import BIND
from boxlite_cli.vmm.base import NET_GUEST

NANO = 1_000_000_000
SHM_SIZE = 64 << 20  # (the guest's /dev/shm, as docker's default)


def shm_size(tmpfs: list[str], size: int, memory_bytes: int) -> int:
    """docker's HostConfig.ShmSize: a --tmpfs of /dev/shm's (it wins; the kernel's half
    of the RAM without a size), --shm-size's, else 64 MiB."""
    for spec in tmpfs:
        with contextlib.suppress(UsageError):
            mount = parse_tmpfs(spec)
            if mount.target == SHM:
                return mount.size_bytes or memory_bytes // 2
    return size or SHM_SIZE


def _port_map(ports: list[PortMapping]) -> dict[str, list[dict[str, str]]]:
    """docker's `{"80/tcp": [{"HostIp": ..., "HostPort": "8080"}]}` (ports as strings)."""
    out: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        out.setdefault(p.private, []).append(
            {"HostIp": p.host_ip, "HostPort": p.host_ports if p.host_port else ""})
    return out


def _mounts(state: BoxState, volume_dir: Callable[[str], Path]) -> list[dict[str, Any]]:
    mounts = []
    for m in state.config.mounts:
        bind = m.kind == BIND
        mounts.append({
            "Type": "bind" if bind else "volume", "Name": "" if bind else m.source,
            "Source": m.source if bind else str(volume_dir(m.source)),
            "Destination": m.target, "Driver": "" if bind else "local",
            "Mode": ",".join(o for o, on in (("ro", m.readonly), ("nocopy", m.nocopy)) if on),
            "RW": not m.readonly,
            "Propagation": "rprivate" if bind else ""})
    return mounts


def _stop_timeout(seconds: float | None) -> int | float | None:
    if seconds is None:
        return None
    if seconds >= MAX_TIMEOUT_S:  # (how -1, for ever, is kept: shown as given)
        return -1
    return int(seconds) if float(seconds).is_integer() else seconds


def docker_status(state: BoxState) -> str:
    """One of docker's states for boxlite's own: a box being made or started is what it
    was (created, or exited: docker's start returns once it runs), one stopping still
    runs."""
    if state.status in (Status.CREATING, Status.STARTING):
        return Status.CREATED.value if state.last_exit_code is None else Status.EXITED.value
    if state.status == Status.STOPPING:
        return Status.RUNNING.value
    return state.status.value


def docker_state(state: BoxState, vmm_pid: int) -> dict[str, Any]:
    """docker's State (`{{.State.Status}}`, `.State.ExitCode`, `.State.OOMKilled`...);
    Pid is the box's VM (its QEMU) on the host."""
    running = state.status == Status.RUNNING
    restarting = state.is_restarting or (state.status == Status.STARTING
                                         and state.restart_count > 0)  # (its policy's start)
    return {
        "Status": ("paused" if state.is_paused else "restarting" if restarting
                   else docker_status(state)),
        "Running": running, "Paused": state.is_paused, "Restarting": restarting,
        "OOMKilled": state.oom_killed, "Dead": False, "Pid": vmm_pid if running else 0,
        # (while its policy starts it again, the code it last ended with: docker's)
        "ExitCode": (state.exit_code if state.exit_code is not None
                     else (state.last_exit_code or 0) if restarting else 0),
        "Error": (state.held if state.is_held else state.error) or "",
        "StartedAt": rfc3339(state.started_at), "FinishedAt": rfc3339(state.finished_at),
        **({"Health": _health(state.health)} if state.health is not None else {}),
    }


def _health(health: Health) -> dict[str, Any]:
    """docker's State.Health: the status, the failures in a row, the last results."""
    return {"Status": health.status, "FailingStreak": health.failing_streak,
            "Log": [{"Start": rfc3339(r.start), "End": rfc3339(r.end), "ExitCode": r.exit_code,
                     "Output": r.output} for r in health.log]}


def _healthcheck(config: HealthConfig | None) -> dict[str, Any]:
    """docker's Config.Healthcheck (durations in nanoseconds; 0: the default)."""
    return {"Healthcheck": config.to_image_json()} if config is not None else {}


def docker_view(state: BoxState, vmm_pid: int, volume_dir: Callable[[str], Path],
                log_path: Path, image_volumes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The docker-shaped sections of `state`, to merge into its inspect record
    (`volume_dir`: a named volume's directory on the host; `image_volumes`: the VOLUMEs
    of its image's config)."""
    cfg = state.config
    proc = cfg.process
    running = state.status == Status.RUNNING
    nat = cfg.network.mode == NAT
    address = NET_GUEST if running and nat else ""
    network = {"IPAddress": address, "IPPrefixLen": 24 if address else 0,
               "Gateway": GATEWAY if address else "",
               "MacAddress": (state.config.network.mac or box_mac(state.id)) if nat else ""}
    return {
        "Id": state.id,
        "Created": rfc3339(state.created_at),
        "Path": proc.argv[0] if proc.argv else "",
        "Args": proc.argv[1:],
        "State": docker_state(state, vmm_pid),
        "Image": cfg.image_id,
        "LogPath": str(log_path) if cfg.log_driver != "none" else "",
        "Name": "/" + state.name,  # (docker's, with its leading slash)
        "RestartCount": state.restart_count,
        "Driver": "qcow2",
        "Platform": "linux",
        "Config": {
            "Hostname": cfg.hostname, "Domainname": "", "User": proc.user,
            "AttachStdin": proc.stdin, "Tty": proc.tty, "OpenStdin": proc.stdin,
            "Env": list(proc.env), "Cmd": list(proc.argv[proc.entrypoint_len:]) or None,
            "Entrypoint": list(proc.argv[:proc.entrypoint_len]) or None,
            "Image": cfg.image, "WorkingDir": proc.cwd, "Labels": dict(cfg.labels),
            "StopSignal": cfg.stop_signal or "SIGTERM",
            "StopTimeout": _stop_timeout(cfg.stop_timeout),
            "ExposedPorts": {**{key: {} for key in cfg.exposed},
                             **{p.private: {} for p in cfg.network.ports}},
            # (docker's: the image's VOLUMEs and `-v /path`, the anonymous volumes)
            "Volumes": {**{path: {} for path in image_volumes},
                        **{m.target: {} for m in cfg.mounts if m.anonymous}} or None,
            **_healthcheck(cfg.healthcheck),
        },
        "HostConfig": {
            "NanoCpus": round((cfg.cpu_limit or cfg.cpus) * NANO),
            "Memory": cfg.memory_mib * 1024 * 1024,
            "PidsLimit": cfg.pids_limit,
            "CapAdd": list(cfg.cap_add), "CapDrop": list(cfg.cap_drop),
            "AutoRemove": cfg.auto_remove, "Privileged": cfg.privileged,
            "ReadonlyRootfs": cfg.read_only,
            "Tmpfs": {spec.partition(":")[0]: spec.partition(":")[2] for spec in cfg.tmpfs},
            # (docker's Binds: host paths and named volumes; anonymous ones are left out)
            "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}"
                      for m in cfg.mounts if not m.anonymous],
            "PortBindings": _port_map(cfg.network.ports),
            "PublishAllPorts": state.config.publish_all,
            "NetworkMode": cfg.network.mode, "Dns": list(cfg.network.dns),
            "DnsSearch": list(cfg.network.dns_search),
            "DnsOptions": list(cfg.network.dns_options),
            "ExtraHosts": list(cfg.network.extra_hosts),
            "RestartPolicy": dict(zip(("Name", "MaximumRetryCount"),
                                      policy_parts(cfg.restart), strict=True)),
            "LogConfig": {"Type": cfg.log_driver, "Config": dict(cfg.log_options)},
            "ShmSize": shm_size(cfg.tmpfs, cfg.shm_size, cfg.memory_mib << 20),
            "Ulimits": [dict(zip(("Name", "Soft", "Hard"), parse_ulimit(u), strict=True))
                        for u in cfg.ulimits],
            "SecurityOpt": ["no-new-privileges"] if cfg.no_new_privileges else None,
            "GroupAdd": list(cfg.group_add) or None,
            "Sysctls": dict(cfg.sysctls) or None,
        },
        "NetworkSettings": {
            **network,
            # (docker's: an exposed port not published is there too, as null)
            "Ports": ({**{key: None for key in cfg.exposed}, **_port_map(state.ports)}
                      if running else {}),
            "Networks": ({cfg.network.mode: {**network, "NetworkID": cfg.network.mode,
                                             "Aliases": None}} if nat else {}),
            "SandboxKey": "",
        },
        "Mounts": _mounts(state, volume_dir),
    }
