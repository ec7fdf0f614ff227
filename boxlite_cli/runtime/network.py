"""Networking options of a box: parsing `-p`, `--dns`, `--add-host`, `--network`, and
choosing the host ports a start publishes.

The VM's network is QEMU's user-mode stack (slirp): the box is 10.0.2.15/24, the
gateway 10.0.2.2 is the host's loopback (`host.boxlite.internal`), 10.0.2.3 forwards
DNS to the host's resolver. See docs/networking.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from boxlite_cli.errors import Conflict, ImageError, NotFound, UsageError
from boxlite_cli.shim.vmspec import GuestNetwork
from boxlite_cli.state.network import NAT, NETWORK_MODES, NONE, NetworkConfig, PortMapping
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.vmm.base import NET_DNS, NET_GUEST, NET_HOST, NET_NONE, NET_PASST, NET_USER, PortForward

GUEST_PREFIX = 24
GATEWAY = NET_HOST
DNS_SERVER = NET_DNS
HOST_ALIAS = "host.boxlite.internal"
NETWORK_ALIASES = {"bridge": NAT, "default": NAT}  # (docker's names of its default)
DEFAULT_HOST_IP = "127.0.0.1"
PROTOS = ("tcp", "udp")
# RFC 1123 host names (docker accepts the same for --add-host).
HOSTNAME_RE = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                         r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")
# docker's ValidateDNSSearch: labels of letters, digits and inner hyphens
DOMAIN_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\Z")
MAX_DOMAIN = 255
DNS_OPTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}\Z")  # (one resolv.conf word)
MAX_RESOLVER_ITEMS = 32  # search domains, and options (the manifest's bound too)
MAX_RANGE = 256  # ports one -p range may publish (each is a forward of the VM's network)
MAX_EXPOSED = 1024  # --expose's ports of one box


def _port(text: str, spec: str, what: str, lowest: int = 1) -> int:
    if not text.isdigit():
        raise UsageError(f"invalid port spec {spec!r}: {what} {text!r} is not a number")
    value = int(text)
    if not lowest <= value <= 65535:
        raise UsageError(f"invalid port spec {spec!r}: {what} {value} is not in {lowest}-65535")
    return value


def _ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f"invalid {what}: {text!r} is not an IP address") from None


def parse_publish(spec: str) -> PortMapping:
    """`[HOSTIP:][HOSTPORT:]BOXPORT[/tcp|/udp]` (docker's -p; an IPv6 host IP, in brackets,
    is refused: QEMU's user-mode network forwards from IPv4 addresses only).

    Without HOSTIP the port is bound on 127.0.0.1 only (docker binds 0.0.0.0): a box is
    reachable from this host unless the user says otherwise. No HOSTPORT, or 0: a free
    port chosen at every start.
    """
    rest, slash, proto = spec.strip().rpartition("/")
    if not slash:
        rest, proto = spec.strip(), "tcp"
    proto = proto.lower()
    if proto not in PROTOS:
        raise UsageError(f"invalid port spec {spec!r}: protocol {proto!r} is not tcp or udp")
    host_ip = DEFAULT_HOST_IP
    if rest.startswith("["):
        end = rest.find("]:")
        if end < 0:
            raise UsageError(f"invalid port spec {spec!r}: use [IPv6]:HOSTPORT:BOXPORT")
        host_ip, rest = _ip(rest[1:end], f"host IP in port spec {spec!r}"), rest[end + 2:]
        parts = rest.split(":")
        if len(parts) != 2:
            raise UsageError(f"invalid port spec {spec!r}: use [IPv6]:HOSTPORT:BOXPORT")
        host_port_text, box_text = parts
    else:
        parts = rest.split(":")
        if len(parts) == 1:
            host_port_text, box_text = "", parts[0]
        elif len(parts) == 2:
            host_port_text, box_text = parts
        elif len(parts) == 3:
            host_ip = _ip(parts[0], f"host IP in port spec {spec!r}")
            host_port_text, box_text = parts[1], parts[2]
        else:
            raise UsageError(f"invalid port spec {spec!r}: use [HOSTIP:][HOSTPORT:]BOXPORT[/PROTO]")
    if "-" in box_text or "-" in host_port_text:
        raise UsageError(f"invalid port spec {spec!r}: port ranges are not supported")
    if ":" in host_ip:  # (QEMU 7.2's slirp: "Bad host address", after the VM started)
        raise UsageError(f"invalid port spec {spec!r}: ports are published on IPv4 addresses "
                         "only (QEMU's user-mode network cannot forward IPv6)",
                         hint="publish on 127.0.0.1 (the default) or 0.0.0.0")
    box_port = _port(box_text, spec, "box port")
    # (A host port 0, as docker takes it: one chosen at every start, like none.)
    host_port = _port(host_port_text, spec, "host port", lowest=0) if host_port_text else 0
    return PortMapping(box_port=box_port, proto=proto, host_ip=host_ip, host_port=host_port)


def _port_range(text: str, spec: str) -> tuple[int, int] | None:
    """`A-B` → (A, B); None when `text` is no range."""
    if "-" not in text:
        return None
    first, _, last = text.partition("-")
    if not first or not last:  # ("-1": not a range of ports "" to 1)
        raise UsageError(f"invalid port spec {spec!r}: {text!r} is neither a port nor a "
                         "range of ports (FIRST-LAST)")
    low, high = _port(first, spec, "port"), _port(last, spec, "port")
    if low > high:
        raise UsageError(f"invalid port spec {spec!r}: the range {text} runs backwards")
    if high - low + 1 > MAX_RANGE:
        raise UsageError(f"invalid port spec {spec!r}: the range {text} has more than "
                         f"{MAX_RANGE} ports")
    return low, high


def parse_publish_ranges(spec: str) -> list[PortMapping]:
    """docker's -p with port ranges: `8000-8001:80-81` (as many host ports as box
    ports), `80-81` (free host ports), `8000-8010:80` (one free port of the range);
    a spec without a range is parse_publish's."""
    rest, slash, proto = spec.strip().rpartition("/")
    if not slash:
        rest, proto = spec.strip(), ""
    *front, box_text = rest.rsplit(":", 2)
    host_text = front[-1] if front else ""
    if len(front) == 2 and "-" in front[0]:
        raise UsageError(f"invalid port spec {spec!r}: use [HOSTIP:][HOSTPORT:]BOXPORT[/PROTO]")
    boxes, hosts = _port_range(box_text, spec), _port_range(host_text, spec)
    if boxes is None and hosts is None:
        return [parse_publish(spec)]
    prefix = "".join(part + ":" for part in front[:-1])
    suffix = f"/{proto}" if slash else ""
    if boxes is not None and hosts is None and host_text not in ("", "0"):
        raise UsageError(f"invalid port spec {spec!r}: one host port for a range of box ports")
    if boxes is not None and hosts is not None and hosts[1] - hosts[0] != boxes[1] - boxes[0]:
        raise UsageError(f"invalid port spec {spec!r}: the host and box ranges differ in length")
    try:
        if boxes is None:  # (docker's: one free port of the host range, chosen at each start)
            assert hosts is not None
            one = parse_publish(f"{prefix}{hosts[0]}:{box_text}{suffix}")
            return [dataclasses.replace(one, host_port_end=hosts[1] if hosts[1] > hosts[0] else 0)]
        return [parse_publish(f"{prefix}{'' if hosts is None else hosts[0] + i}:{port}{suffix}"
                              if front else f"{port}{suffix}")
                for i, port in enumerate(range(boxes[0], boxes[1] + 1))]
    except UsageError as e:  # (said of the spec as given, not of one port of it)
        raise UsageError(f"invalid port spec {spec!r}: {e.message.partition(': ')[2]}",
                         hint=e.hint) from None


def parse_add_host(item: str) -> str:
    """`NAME:IP` (docker also takes `NAME=IP`) → `name:ip` as kept in the config."""
    name, sep, ip = item.partition("=")
    if not sep:
        name, sep, ip = item.partition(":")
    if not sep or not name or not ip:
        raise UsageError(f"invalid --add-host {item!r}: use NAME:IP")
    if not HOSTNAME_RE.match(name):
        raise UsageError(f"invalid --add-host {item!r}: {name!r} is not a valid host name")
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip == "host-gateway":
        ip = GATEWAY
    return f"{name}:{_ip(ip, f'IP in --add-host {item!r}')}"


def dns_search_domain(domain: str) -> str | None:
    """A --dns-search domain as resolv.conf takes it (a trailing dot dropped); None for
    `.`, docker's "no search domain"."""
    if domain == ".":
        return None
    name = domain[:-1] if domain.endswith(".") else domain
    if len(name) > MAX_DOMAIN or not DOMAIN_RE.match(name):
        raise UsageError(f"invalid --dns-search {domain!r}: not a domain name")
    return name


def dns_option(option: str) -> str:
    """A --dns-option as resolv.conf's `options` line takes it: one word (ndots:2,
    timeout:1, rotate, edns0...), which the box's resolver reads; nothing is checked of
    what it means, as in docker."""
    if not DNS_OPTION_RE.match(option):
        raise UsageError(f"invalid --dns-option {option!r}: want one word, such as ndots:2")
    return option


ANY_ADDRESS = "0.0.0.0"  # the host's every address (-p 0.0.0.0:H:C)


def network_config(mode: str, dns: Iterable[str] = (), add_hosts: Iterable[str] = (),
                   publish: Iterable[str] = (), dns_search: Iterable[str] = (),
                   dns_options: Iterable[str] = ()) -> NetworkConfig:
    """The box's network config from the options of run/create."""
    mode = NETWORK_ALIASES.get(mode, mode)
    if mode not in NETWORK_MODES:
        raise UsageError(f"invalid --network {mode!r}: use nat (docker's bridge) or none",
                         hint=("a box has a VM and a network of its own: publish its ports "
                               "with -p" if mode == "host" else None))
    ports = [mapping for p in publish for mapping in parse_publish_ranges(p)]
    if mode == NONE and ports:
        raise UsageError("cannot publish ports (-p) of a box with --network none")
    seen: list[PortMapping] = []
    for p in ports:
        if p.host_port and not p.host_port_end:  # (a range: a free port of it)
            # (0.0.0.0 is every address of the host: 127.0.0.1's port too, as a bind says)
            if any(q.proto == p.proto and q.host_port == p.host_port
                   and (q.host_ip == p.host_ip or ANY_ADDRESS in (q.host_ip, p.host_ip))
                   for q in seen):
                raise UsageError(f"host port {p.public}/{p.proto} is published twice")
            seen.append(p)
    # ("." kept: docker's "no search domain", not the host's, which a box gets otherwise)
    search = [d if d is not None else "." for d in map(dns_search_domain, dns_search)]
    options = [dns_option(o) for o in dns_options]
    for what, values in (("--dns-search", search), ("--dns-option", options)):
        if len(values) > MAX_RESOLVER_ITEMS:
            raise UsageError(f"too many {what} values: at most {MAX_RESOLVER_ITEMS}")
    return NetworkConfig(mode=mode, dns=[_ip(d, "--dns server") for d in dns],
                         dns_search=list(dict.fromkeys(search)),
                         dns_options=list(dict.fromkeys(options)),
                         extra_hosts=[parse_add_host(h) for h in add_hosts], ports=ports)


def parse_expose(specs: Iterable[str]) -> list[str]:
    """docker's --expose (PORT[/PROTO], or a range START-END[/PROTO]): the ports as
    ExposedPorts keys ("80/tcp"), each once, in the order given."""
    keys: list[str] = []
    for spec in specs:
        text, _, proto = spec.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in PROTOS:
            raise UsageError(f"invalid --expose {spec!r}: the protocol must be tcp or udp")
        low, high = _port_range(text, spec) or (_port(text, spec, "port"),) * 2
        keys.extend(f"{port}/{proto}" for port in range(low, high + 1))
    unique = list(dict.fromkeys(keys))
    if len(unique) > MAX_EXPOSED:
        raise UsageError(f"too many --expose ports: at most {MAX_EXPOSED}")
    return unique


def with_exposed(image_config: dict[str, Any], exposed: list[str]) -> dict[str, Any]:
    """The image's config with --expose's ports among its ExposedPorts (what -P
    publishes)."""
    if not exposed:
        return image_config
    ports = image_config.get("ExposedPorts") or {}
    if not isinstance(ports, dict):
        raise ImageError("invalid image config: ExposedPorts must be an object")
    return {**image_config, "ExposedPorts": {**ports, **{key: {} for key in exposed}}}


def image_exposed(image_config: dict[str, Any], exposed: list[str]) -> list[str]:
    """A box's exposed ports (docker's Config.ExposedPorts): the image's and --expose's,
    as "80/tcp" keys in port order; an image's that are not ports are left out (only -P
    refuses them)."""
    try:
        return [f"{m.box_port}/{m.proto}"
                for m in exposed_ports(with_exposed(image_config, exposed))]
    except ImageError:
        return list(exposed)


def exposed_ports(image_config: dict[str, Any]) -> list[PortMapping]:
    """The image's ExposedPorts (`{"80/tcp": {}, "53/udp": {}}`), in port order, as
    mappings to free host ports on 127.0.0.1."""
    exposed = image_config.get("ExposedPorts") or {}
    if not isinstance(exposed, dict):
        raise ImageError("invalid image config: ExposedPorts must be an object")
    mappings = []
    for key in exposed:
        port, _, proto = str(key).partition("/")
        proto = (proto or "tcp").lower()
        if not port.isdigit() or not 0 < int(port) < 65536 or proto not in PROTOS:
            raise ImageError(f"invalid image config: exposed port {key!r}")
        mappings.append(PortMapping(box_port=int(port), proto=proto))
    return sorted(set(mappings), key=lambda m: (m.box_port, m.proto))


def publish_exposed(network: NetworkConfig, image_config: dict[str, Any]) -> NetworkConfig:
    """`-P`: `network` with the image's exposed ports that -p did not publish."""
    published = {(p.box_port, p.proto) for p in network.ports}
    extra = [m for m in exposed_ports(image_config) if (m.box_port, m.proto) not in published]
    if extra and network.mode == NONE:
        raise UsageError("cannot publish ports (-P) of a box with --network none")
    return dataclasses.replace(network, ports=[*network.ports, *extra])


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _bind(mapping: PortMapping) -> socket.socket:
    kind = socket.SOCK_STREAM if mapping.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(_family(mapping.host_ip), kind)
    try:
        if kind == socket.SOCK_STREAM:
            # As QEMU's listener does: a port lingering in TIME_WAIT is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((mapping.host_ip, mapping.host_port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_host_ports(ports: Iterable[PortMapping]) -> list[PortMapping]:
    """The mappings with every host port checked free and every 0 replaced by a free port.

    Raises Conflict (one line) when a port is in use or the address is not on this
    host. The ports are released again before returning: QEMU binds them a moment later.
    """
    wanted = list(ports)
    held: list[socket.socket] = []
    out: dict[int, PortMapping] = {}
    # (fixed ports first, so that a range next to one of its ports leaves it free)
    order = sorted(range(len(wanted)), key=lambda i: bool(wanted[i].host_port_end))
    try:
        for i in order:
            sock = _bind_one_of(wanted[i])
            held.append(sock)
            p = wanted[i]
            out[i] = PortMapping(p.box_port, p.proto, p.host_ip, sock.getsockname()[1])
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
    return [out[i] for i in range(len(wanted))]


def _bind_one_of(p: PortMapping) -> socket.socket:
    """A socket bound to p's host port, or to the first free one of its range."""
    last = p.host_port_end or p.host_port
    for port in range(p.host_port, last + 1):
        try:
            return _bind(dataclasses.replace(p, host_port=port, host_port_end=0))
        except OSError as e:
            if e.errno == errno.EADDRINUSE and port < last:
                continue
            if e.errno == errno.EADDRINUSE:
                taken = "every host port of the range is" if p.host_port_end else "the host port is"
                raise Conflict(f"cannot publish {p.private} on {p.public}: {taken} "
                               "already in use") from None
            raise Conflict(f"cannot publish {p.private} on {p.public}: "
                           f"{e.strerror or e}") from None
    raise AssertionError("unreachable: a range has at least one port")


def hosts_entries(config: NetworkConfig) -> list[tuple[str, str]]:
    """(name, ip) lines the box's /etc/hosts gets besides localhost and its hostname."""
    entries = [(HOST_ALIAS, GATEWAY)] if config.mode == NAT else []
    for item in config.extra_hosts:
        name, _, ip = item.partition(":")
        entries.append((name, ip))
    return entries


def dns_servers(config: NetworkConfig) -> list[str]:
    if config.dns:
        return list(config.dns)
    return [DNS_SERVER] if config.mode == NAT else []


def vm_network(config: NetworkConfig, backend: str = "") -> str:
    """VmSpec.network for a box's config; `backend` (`$BOXLITE_NET_BACKEND`) may pick
    the experimental passt backend instead of slirp."""
    if config.mode != NAT:
        return NET_NONE
    backend = backend or os.environ.get("BOXLITE_NET_BACKEND", "slirp")
    if backend not in ("slirp", NET_PASST):
        raise UsageError(f"invalid BOXLITE_NET_BACKEND {backend!r}: use slirp or passt")
    return NET_PASST if backend == NET_PASST else NET_USER


def port_forwards(bound: Iterable[PortMapping]) -> tuple[PortForward, ...]:
    return tuple(PortForward(p.proto, p.host_ip, p.host_port, p.box_port) for p in bound)


def box_mac(box_id: str) -> str:
    """The box's own MAC address: locally administered, unicast, stable, from its id."""
    digest = hashlib.sha256(box_id.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


HOST_RESOLV_CONF = Path("/etc/resolv.conf")


def host_resolver(path: Path | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The host's resolv.conf `search` domains (its last `search` or `domain` line, as
    the resolver reads it) and `options`, those a box's resolv.conf can take."""
    try:
        text = (path or HOST_RESOLV_CONF).read_text(errors="replace")[:65536]
    except OSError:
        return (), ()
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = re.split(r"[#;]", line, maxsplit=1)[0].split()
        if words and words[0] in ("search", "domain"):
            search = words[1:]
        elif words and words[0] == "options":
            options += words[1:]

    def kept(check: Callable[[str], str | None], items: list[str]) -> tuple[str, ...]:
        out = []
        for item in items:
            with contextlib.suppress(UsageError):
                if (value := check(item)) is not None:
                    out.append(value)
        return tuple(dict.fromkeys(out))[:MAX_RESOLVER_ITEMS]

    return kept(dns_search_domain, search), kept(dns_option, options)


def guest_network(config: NetworkConfig, box_id: str = "") -> GuestNetwork:
    """What the guest agent's Init sets up for this box (sent at every start)."""
    hosts = tuple(hosts_entries(config))
    host_search, host_options = host_resolver() if config.mode == NAT else ((), ())
    # (as docker's: the host's search domains and options, unless --dns-search or
    # --dns-option say others; "." says none)
    search = tuple(d for d in config.dns_search if d != ".") if config.dns_search else host_search
    resolver = GuestNetwork(mode=NONE, dns=tuple(dns_servers(config)), hosts=hosts,
                            dns_search=search,
                            dns_options=tuple(config.dns_options or host_options))
    if config.mode != NAT:
        return resolver
    return dataclasses.replace(resolver, mode=NAT, address=f"{NET_GUEST}/{GUEST_PREFIX}",
                               gateway=NET_HOST,
                               mac=config.mac or (box_mac(box_id) if box_id else ""))


def parse_private_port(text: str) -> tuple[int, str]:
    """`PORT[/PROTO]` of `boxlite port`."""
    port_text, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOS:
        raise UsageError(f"invalid port {text!r}: protocol {proto!r} is not tcp or udp")
    return _port(port_text, text, "port"), proto


def published_ports(state: BoxState, private: str | None = None) -> list[PortMapping]:
    """The mappings of a running box (docker's `port`), all or those of one box port."""
    if state.status not in (Status.STARTING, Status.RUNNING, Status.STOPPING):
        return []
    if private is None:
        return list(state.ports)
    port, proto = parse_private_port(private)
    found = [p for p in state.ports if p.box_port == port and p.proto == proto]
    if not found:
        raise NotFound(f"no public port '{port}/{proto}' published for {state.name}")
    return found
