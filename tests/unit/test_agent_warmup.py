"""The page-cache warm-up before a primed template is saved, and the network set-up of
a cold Init and of a box's Init on top of a primed template's."""

from __future__ import annotations

import errno
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent import netconf
from boxlite_agent.netconf import NetSetup
from boxlite_agent.warmup import elf_interpreter, warm_page_cache


def elf_with_interp(interp: bytes) -> bytes:
    """A minimal little-endian ELF64 header with one PT_INTERP program header."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = bytearray(56)
    struct.pack_into("<I", phdr, 0, 3)  # PT_INTERP
    struct.pack_into("<Q", phdr, 0x08, 120)  # p_offset
    struct.pack_into("<Q", phdr, 0x20, len(interp) + 1)  # p_filesz
    return bytes(header + phdr + interp + b"\0")


def test_elf_interpreter() -> None:
    assert elf_interpreter(elf_with_interp(b"/lib/ld-musl-x86_64.so.1")) == "/lib/ld-musl-x86_64.so.1"
    assert elf_interpreter(b"#!/bin/sh\n" + b"\0" * 64) is None  # a script
    assert elf_interpreter(elf_with_interp(b"/x")[:80]) is None  # truncated
    if Path("/bin/sh").is_file():
        interp = elf_interpreter(Path("/bin/sh").resolve().read_bytes())
        assert interp is None or interp.startswith("/")


def test_warm_up_reads_the_first_exec_files_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("etc", "usr/bin", "lib64", "lib/x86_64-linux-gnu"):
        (root / d).mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "usr/bin/dash").write_bytes(elf_with_interp(b"/lib64/ld-linux-x86-64.so.2"))
    (root / "usr/bin/dash").chmod(0o755)
    (root / "usr/bin/sh").symlink_to("dash")
    (root / "lib/x86_64-linux-gnu/ld.so").write_bytes(b"loader")
    # an absolute link resolves inside the root, not on the host
    (root / "lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld.so")
    (root / "lib/x86_64-linux-gnu/libc.so.6").write_bytes(b"libc")
    (root / "usr/bin/true").symlink_to("/etc")  # a directory: not an executable
    read = warm_page_cache(str(root))
    assert read == ["/usr/bin/sh", "/lib64/ld-linux-x86-64.so.2",
                    "/lib/x86_64-linux-gnu/libc.so.6"]
    assert warm_page_cache(str(tmp_path / "empty")) == []  # nothing there: nothing read


class FakeIoctl:
    """Records the network ioctls; the interfaces start down."""

    def __init__(self, refuse_live_mac: bool = False) -> None:
        self.calls: list[str] = []
        self.up: set[str] = set()
        self.refuse_live_mac = refuse_live_mac
        self.names = {v: k for k, v in vars(netconf).items() if k.startswith("SIOC")}

    def __call__(self, sock: object, request: int, arg: bytes) -> bytes:
        name = arg[:16].rstrip(b"\0").decode()
        what = self.names[request]
        if what == "SIOCGIFFLAGS":
            return netconf.ifreq_flags(name, netconf.IFF_UP if name in self.up else 0)
        self.calls.append(f"{what} {name}" if what != "SIOCADDRT" else what)
        if what == "SIOCSIFFLAGS":
            flags = struct.unpack("16sH22x", arg)[1]
            (self.up.add if flags & netconf.IFF_UP else self.up.discard)(name)
        if what == "SIOCSIFHWADDR" and self.refuse_live_mac and name in self.up:
            self.calls[-1] += " (busy)"
            raise OSError(errno.EBUSY, "busy")
        return arg


NAT = NetSetup(mode="nat", address="10.0.2.15/24", gateway="10.0.2.2", dns=("10.0.2.3",))


@pytest.fixture
def fake_net(monkeypatch: pytest.MonkeyPatch) -> FakeIoctl:
    fake = FakeIoctl()
    monkeypatch.setattr(netconf.fcntl, "ioctl", fake)
    monkeypatch.setattr(netconf, "interfaces", lambda: ["eth0"])
    monkeypatch.setattr(netconf, "_disable_ipv6",
                        lambda name: fake.calls.append(f"no ipv6 on {name}"))
    return fake


def test_a_cold_init_sets_up_the_whole_interface(fake_net: FakeIoctl) -> None:
    mac = "02:00:00:00:00:01"
    assert netconf.configure(NetSetup(**{**NAT.__dict__, "mac": mac})) == "eth0"
    assert fake_net.calls == ["SIOCSIFFLAGS lo", "SIOCSIFHWADDR eth0", "SIOCSIFADDR eth0",
                              "SIOCSIFNETMASK eth0", "no ipv6 on eth0", "SIOCSIFFLAGS eth0",
                              "SIOCADDRT"]


def test_on_a_primed_template_only_the_mac_changes(fake_net: FakeIoctl) -> None:
    netconf.configure(NAT)  # the template's Init: no MAC of any box
    fake_net.calls.clear()
    box = NetSetup(**{**NAT.__dict__, "mac": "02:00:00:00:00:01", "hosts": (("db", "10.0.2.9"),)})
    assert netconf.configure(box, current=NAT) == "eth0"
    assert fake_net.calls == ["SIOCSIFHWADDR eth0"]
    fake_net.calls.clear()
    netconf.configure(NAT, current=NAT)  # nothing to change
    assert fake_net.calls == []


def test_a_mac_the_driver_cannot_change_live_is_changed_down(fake_net: FakeIoctl) -> None:
    netconf.configure(NAT)
    fake_net.calls.clear()
    fake_net.refuse_live_mac = True
    netconf.configure(NetSetup(**{**NAT.__dict__, "mac": "02:00:00:00:00:01"}), current=NAT)
    assert fake_net.calls == ["SIOCSIFHWADDR eth0 (busy)", "SIOCSIFFLAGS eth0",
                              "SIOCSIFHWADDR eth0", "SIOCSIFFLAGS eth0", "SIOCADDRT"]
    assert "eth0" in fake_net.up


def test_another_address_is_a_full_set_up(fake_net: FakeIoctl) -> None:
    other = NetSetup(mode="nat", address="10.0.3.15/24", gateway="10.0.3.2")
    netconf.configure(other, current=NAT)
    assert "SIOCSIFADDR eth0" in fake_net.calls


def test_the_nic_gets_no_ipv6(tmp_path: Path) -> None:
    conf = tmp_path / "eth0"
    conf.mkdir()
    (conf / "disable_ipv6").write_text("0\n")
    netconf._disable_ipv6("eth0", proc=str(tmp_path))
    assert (conf / "disable_ipv6").read_text() == "1"
    netconf._disable_ipv6("eth1", proc=str(tmp_path))  # no such interface (or no IPv6): fine
    assert not (tmp_path / "eth1").exists()
