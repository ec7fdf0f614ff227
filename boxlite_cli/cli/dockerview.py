"""docker's shape of a box for `inspect` (beside boxlite's own record): the sections
docker users' templates and scripts read (`{{.NetworkSettings.Ports}}`, `{{.Mounts}}`,
`{{.HostConfig.Memory}}`, `{{.Config.Env}}`, `{{.Path}}`, `{{.Args}}`, `{{.Image}}`).

Keys are snake_case as the rest of the record (templates match `NetworkSettings` and
`network_settings` alike); values carry docker's meaning, with boxlite's facts: the
box's address is its VM's on the user-mode network, Memory is the VM's RAM.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from boxlite_cli.runtime.network import GATEWAY, box_mac
from boxlite_cli.state.network import NAT, PortMapping
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.state.volumes import BIND
from boxlite_cli.vmm.base import NET_GUEST

NANO = 1_000_000_000


def _port_map(ports: list[PortMapping]) -> dict[str, list[dict[str, str]]]:
    """docker's `{"80/tcp": [{"HostIp": ..., "HostPort": "8080"}]}` (ports as strings)."""
    out: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        out.setdefault(p.private, []).append(
            {"host_ip": p.host_ip, "host_port": str(p.host_port) if p.host_port else ""})
    return out


def _mounts(state: BoxState, volume_dir: Callable[[str], Path]) -> list[dict[str, Any]]:
    mounts = []
    for m in state.config.mounts:
        bind = m.kind == BIND
        mounts.append({
            "type": "bind" if bind else "volume", "name": "" if bind else m.source,
            "source": m.source if bind else str(volume_dir(m.source)),
            "destination": m.target, "driver": "" if bind else "local",
            "mode": "ro" if m.readonly else "", "rw": not m.readonly,
            "propagation": "rprivate" if bind else ""})
    return mounts


def docker_view(state: BoxState, volume_dir: Callable[[str], Path]) -> dict[str, Any]:
    """The docker-shaped sections of `state`, to merge into its inspect record
    (`volume_dir`: a named volume's directory on the host)."""
    cfg = state.config
    proc = cfg.process
    running = state.status == Status.RUNNING
    nat = cfg.network.mode == NAT
    address = NET_GUEST if running and nat else ""
    mac = box_mac(state.id) if nat else ""
    network = {"ip_address": address, "ip_prefix_len": 24 if address else 0,
               "gateway": GATEWAY if address else "", "mac_address": mac}
    return {
        "path": proc.argv[0] if proc.argv else "",
        "args": proc.argv[1:],
        "image": cfg.image_id,
        "host_config": {
            "nano_cpus": round((cfg.cpu_limit or cfg.cpus) * NANO),
            "memory": cfg.memory_mib * 1024 * 1024,
            "pids_limit": cfg.pids_limit,
            "cap_add": list(cfg.cap_add), "cap_drop": list(cfg.cap_drop),
            "auto_remove": cfg.auto_remove, "privileged": False,
            "readonly_rootfs": cfg.read_only,
            "tmpfs": {spec.partition(":")[0]: spec.partition(":")[2] for spec in cfg.tmpfs},
            "binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}"
                      for m in cfg.mounts],
            "port_bindings": _port_map(cfg.network.ports),
            "network_mode": cfg.network.mode, "dns": list(cfg.network.dns),
            "extra_hosts": list(cfg.network.extra_hosts),
            "restart_policy": {"name": "no", "maximum_retry_count": 0},
        },
        "network_settings": {
            **network,
            "ports": _port_map(state.ports if running else []),
            "networks": {cfg.network.mode: network} if nat else {},
        },
        "mounts": _mounts(state, volume_dir),
    }


def docker_config(state: BoxState) -> dict[str, Any]:
    """docker's Config fields boxlite's config does not have under these names."""
    proc = state.config.process
    return {"env": list(proc.env), "cmd": list(proc.argv), "entrypoint": None,
            "working_dir": proc.cwd, "user": proc.user, "tty": proc.tty,
            "open_stdin": proc.stdin,
            "attach_stdin": proc.stdin,
            "exposed_ports": {p.private: {} for p in state.config.network.ports}}
