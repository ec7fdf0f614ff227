"""A box's network settings as kept in its state.json (`config.network`, `ports`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")

NAT = "nat"
NONE = "none"
NETWORK_MODES = (NAT, NONE)


@dataclass(frozen=True)
class PortMapping:
    """One published port: `host_ip:host_port` on the host → `box_port/proto` in the box.

    In a box's config `host_port` 0 means "a free port, chosen at every start", and a
    `host_port_end` (docker's `-p 8000-8010:80`) "a free one of host_port..host_port_end,
    chosen at every start"; the mappings a start actually bound (state `ports`) always
    carry the real port.
    """

    box_port: int
    proto: str = "tcp"
    host_ip: str = "127.0.0.1"
    host_port: int = 0
    host_port_end: int = 0  # 0: host_port alone

    @property
    def host_ports(self) -> str:
        """`8000`, or a range `8000-8010`."""
        return f"{self.host_port}-{self.host_port_end}" if self.host_port_end else str(self.host_port)

    @property
    def private(self) -> str:
        """docker's name of the box side: `80/tcp`."""
        return f"{self.box_port}/{self.proto}"

    @property
    def public(self) -> str:
        """The host side: `127.0.0.1:32768` (`[::1]:32768` for IPv6)."""
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{ip}:{self.host_ports}"

    @classmethod
    def from_json(cls, data: Any) -> PortMapping:
        if not isinstance(data, dict):
            raise ValueError("a port mapping is not a JSON object")
        return cls(box_port=int(data["box_port"]), proto=str(data.get("proto", "tcp")),
                   host_ip=str(data.get("host_ip", "127.0.0.1")),
                   host_port=int(data.get("host_port", 0)),
                   host_port_end=int(data.get("host_port_end", 0)))


@dataclass
class NetworkConfig:
    """What the user asked for at create time: `--network`, `--dns`, `--dns-search`,
    `--dns-option`, `--add-host`, `-p`."""

    mode: str = NAT
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)  # (resolv.conf's search)
    dns_options: list[str] = field(default_factory=list)  # (resolv.conf's options)
    # "name:ip", as docker keeps ExtraHosts (the name never holds a colon).
    extra_hosts: list[str] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)
    # The guest's MAC when it is not the box's own (runtime/network.box_mac of its id): a
    # box made by `run --from` has its checkpoint's, which the restored NIC keeps.
    mac: str = ""

    @classmethod
    def from_json(cls, data: Any) -> NetworkConfig:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("config.network is not a JSON object")
        mac = str(data.get("mac", ""))
        if mac and not _MAC_RE.match(mac):
            raise ValueError(f"config.network.mac {mac!r} is not a MAC address")
        return cls(mode=str(data.get("mode", NAT)), dns=[str(d) for d in data.get("dns", [])],
                   dns_search=[str(d) for d in data.get("dns_search", [])],
                   dns_options=[str(o) for o in data.get("dns_options", [])],
                   extra_hosts=[str(h) for h in data.get("extra_hosts", [])],
                   ports=[PortMapping.from_json(p) for p in data.get("ports", [])], mac=mac)
