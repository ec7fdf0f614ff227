"""The VM's network interfaces, set up with ioctls (no `ip` binary, no fork under TCG).

Loopback always comes up. In NAT mode the first non-loopback interface (virtio-net,
whose driver the initramfs loads) gets the static address the host chose (QEMU's
user-mode network has the box at 10.0.2.15/24 behind the gateway 10.0.2.2) and a
default route. Running it again (a second Init, a restored VM) changes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field

SIOCADDRT = 0x890B
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCSIFHWADDR = 0x8924
ARPHRD_ETHER = 1
IFF_UP = 0x1
RTF_UP = 0x1
RTF_GATEWAY = 0x2
NONE = "none"
SYS_NET = "/sys/class/net"
# struct rtentry on 64-bit Linux: pad1, dst, gateway, genmask, flags, pad2, pad3, pad4,
# metric, dev, mtu, window, irtt (native alignment, 120 bytes).
RTENTRY = "@L16s16s16sHhLPhPLLH6x"


@dataclass(frozen=True)
class NetSetup:
    """What the host asked for in Init (InitRequest.network)."""

    mode: str = NONE
    address: str = ""  # CIDR
    gateway: str = ""
    dns: tuple[str, ...] = ()
    hosts: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    mac: str = ""  # "02:xx:xx:xx:xx:xx"; empty: keep the NIC's
    dns_search: tuple[str, ...] = ()  # resolv.conf's search domains
    dns_options: tuple[str, ...] = ()  # and its options

    @property
    def ip(self) -> str:
        return self.address.partition("/")[0]


NO_NETWORK = NetSetup()


def sockaddr_in(ip: str) -> bytes:
    """struct sockaddr_in (16 bytes) for ``ip``."""
    return struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(ip))


def ifreq_addr(name: str, ip: str) -> bytes:
    """struct ifreq (40 bytes) carrying an IPv4 address."""
    return struct.pack("16s16s8x", name.encode(), sockaddr_in(ip))


def ifreq_hwaddr(name: str, mac: str) -> bytes:
    """struct ifreq (40 bytes) carrying an Ethernet address (struct sockaddr)."""
    return struct.pack("16sH14s8x", name.encode(), ARPHRD_ETHER, bytes.fromhex(mac.replace(":", "")))


def ifreq_flags(name: str, flags: int = 0) -> bytes:
    return struct.pack("16sH22x", name.encode(), flags)


def rtentry_default(gateway: str) -> bytes:
    """struct rtentry of a default route through ``gateway``."""
    zero = sockaddr_in("0.0.0.0")
    return struct.pack(RTENTRY, 0, zero, sockaddr_in(gateway), zero, RTF_UP | RTF_GATEWAY,
                       0, 0, 0, 0, 0, 0, 0, 0)


def interfaces(sys_net: str = SYS_NET) -> list[str]:
    """Non-loopback interfaces, sorted (eth0 first)."""
    try:
        names = os.listdir(sys_net)
    except OSError:
        return []
    return sorted(n for n in names if n != "lo")


def _set_up(sock: socket.socket, name: str) -> None:
    flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq_flags(name)))[1]
    if not flags & IFF_UP:
        fcntl.ioctl(sock, SIOCSIFFLAGS, ifreq_flags(name, flags | IFF_UP))


def _add_default_route(sock: socket.socket, gateway: str) -> None:
    try:
        fcntl.ioctl(sock, SIOCADDRT, rtentry_default(gateway))
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise


def _same_interface(net: NetSetup, current: NetSetup) -> bool:
    return current.mode != NONE and (net.mode, net.address, net.gateway) == (
        current.mode, current.address, current.gateway)


def _disable_ipv6(name: str, proc: str = "/proc/sys/net/ipv6/conf") -> None:
    """No IPv6 on ``name``, as the host side has none (QEMU's user network runs with
    ipv6=off) and as docker does without an IPv6 network: no link-local address
    (which would follow the MAC of whichever box brought it up), no autoconfiguration."""
    try:
        with open(os.path.join(proc, name, "disable_ipv6"), "wb") as f:
            f.write(b"1")
    except OSError:
        pass  # no IPv6 in this kernel


def _change_mac(sock: socket.socket, name: str, net: NetSetup) -> None:
    """The MAC of an interface that is up: live when the driver can (virtio-net), else
    down, change, up again (which drops the default route: added back). It has no
    IPv6 address that would follow the MAC (see _disable_ipv6)."""
    try:
        fcntl.ioctl(sock, SIOCSIFHWADDR, ifreq_hwaddr(name, net.mac))
    except OSError:
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq_flags(name)))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, ifreq_flags(name, flags & ~IFF_UP))
        fcntl.ioctl(sock, SIOCSIFHWADDR, ifreq_hwaddr(name, net.mac))
        _set_up(sock, name)
        if net.gateway:
            _add_default_route(sock, net.gateway)


def configure(net: NetSetup, current: NetSetup = NO_NETWORK) -> str | None:
    """Bring loopback up and, unless mode is none, the NIC; returns the NIC's name.

    ``current``: what an earlier Init of this VM set up (a primed template's, which
    has no MAC of any box): an interface with the same address and gateway stays as
    it is, only its MAC changes.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _set_up(sock, "lo")  # the kernel gives lo 127.0.0.1/8 and ::1 when it comes up
        if net.mode == NONE or not net.address:
            return None
        found = interfaces()
        if not found:
            raise OSError(errno.ENODEV, "no network interface in the VM (is virtio_net loaded?)")
        name = found[0]
        if _same_interface(net, current):
            if net.mac and net.mac != current.mac:
                _change_mac(sock, name, net)
            return name
        if net.mac:
            fcntl.ioctl(sock, SIOCSIFHWADDR, ifreq_hwaddr(name, net.mac))
        iface = ipaddress.ip_interface(net.address)
        fcntl.ioctl(sock, SIOCSIFADDR, ifreq_addr(name, str(iface.ip)))
        fcntl.ioctl(sock, SIOCSIFNETMASK, ifreq_addr(name, str(iface.netmask)))
        _disable_ipv6(name)
        _set_up(sock, name)
        if net.gateway:
            _add_default_route(sock, net.gateway)
        return name


def hosts_file(hostname: str, net: NetSetup) -> str:
    """/etc/hosts as docker writes it: loopback names, extra hosts, the box's own name."""
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    lines += [f"{ip}\t{name}" for name, ip in net.hosts]
    own = net.ip if net.mode != NONE and net.ip else "127.0.1.1"
    lines.append(f"{own}\t{hostname}")
    return "\n".join(lines) + "\n"


def resolv_conf(net: NetSetup) -> str:
    lines = [f"nameserver {ip}" for ip in net.dns] or [
        "# no DNS servers: the box has no network (--network none)"]
    if net.dns_search:
        lines.append("search " + " ".join(net.dns_search))
    if net.dns_options:
        lines.append("options " + " ".join(net.dns_options))
    return "\n".join(lines) + "\n"
