"""Networking: -p/--dns/--add-host parsing, host port choice, the QEMU NIC, the state
round trip, what the guest is told, and the guest's /etc files and ioctl structs."""

from __future__ import annotations

import dataclasses
import re
import socket
import struct
import sys
from pathlib import Path

import pytest

from boxlite_cli.errors import Conflict, ImageError, NotFound, UsageError
from boxlite_cli.runtime.network import (
    bind_host_ports,
    exposed_ports,
    guest_network,
    image_exposed,
    network_config,
    parse_add_host,
    parse_expose,
    parse_private_port,
    parse_publish,
    parse_publish_ranges,
    port_forwards,
    publish_exposed,
    published_ports,
    vm_network,
    with_exposed,
)
from boxlite_cli.shim.vmspec import GuestNetwork, Launch
from boxlite_cli.state.network import NetworkConfig, PortMapping
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status
from boxlite_cli.vmm import cmdline, qemu
from boxlite_cli.vmm.base import PortForward, VmSpec
from boxlite_cli.vmm.qemu import QemuDriver

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent import netconf

P = Path("/p")


# -p ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    ("80", PortMapping(80, "tcp", "127.0.0.1", 0)),
    ("8080:80", PortMapping(80, "tcp", "127.0.0.1", 8080)),
    ("0.0.0.0:8080:80", PortMapping(80, "tcp", "0.0.0.0", 8080)),
    ("127.0.0.1::80", PortMapping(80, "tcp", "127.0.0.1", 0)),
    ("53/udp", PortMapping(53, "udp", "127.0.0.1", 0)),
    ("5353:53/UDP", PortMapping(53, "udp", "127.0.0.1", 5353)),
    ("10.1.2.3:1:65535/tcp", PortMapping(65535, "tcp", "10.1.2.3", 1)),
    ("0:80", PortMapping(80, "tcp", "127.0.0.1", 0)),  # docker's "any free port" too
    ("0.0.0.0:0:80", PortMapping(80, "tcp", "0.0.0.0", 0)),
])
def test_publish_specs(spec: str, expected: PortMapping) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize(("spec", "says"), [
    ("0", "not in 1-65535"),
    ("65536", "not in 1-65535"),
    ("0:0", "box port 0 is not in 1-65535"),
    ("70000:80", "host port 70000 is not in 0-65535"),
    ("80/sctp", "protocol 'sctp'"),
    ("80/", "protocol ''"),
    ("http", "'http' is not a number"),
    ("", "'' is not a number"),
    ("1.2.3:8080:80", "not an IP address"),
    ("localhost:8080:80", "not an IP address"),
    ("a:b:c:d", "use [HOSTIP:]"),
    ("8000-8010:80", "ranges are not supported"),  # (parse_publish_ranges' to take)
    ("[::1]:80", "use [IPv6]"),
    ("[::1]:8080:80", "published on IPv4 addresses only"),
    ("[::1]::80/udp", "published on IPv4 addresses only"),
    ("[zz]:1:80", "not an IP address"),
])
def test_bad_publish_specs_are_one_line_usage_errors(spec: str, says: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_publish(spec)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("spec", "expected"), [
    ("8080:80", [("127.0.0.1", 8080, 80, "tcp")]),
    ("8000-8001:80-81", [("127.0.0.1", 8000, 80, "tcp"), ("127.0.0.1", 8001, 81, "tcp")]),
    ("80-82/udp", [("127.0.0.1", 0, port, "udp") for port in (80, 81, 82)]),
    ("127.0.0.1::80-81", [("127.0.0.1", 0, 80, "tcp"), ("127.0.0.1", 0, 81, "tcp")]),
    ("0.0.0.0:9000-9001:80-81/tcp", [("0.0.0.0", 9000, 80, "tcp"), ("0.0.0.0", 9001, 81, "tcp")]),
])
def test_port_ranges_publish_one_port_each(spec: str,
                                           expected: list[tuple[str, int, int, str]]) -> None:
    assert [(m.host_ip, m.host_port, m.box_port, m.proto)
            for m in parse_publish_ranges(spec)] == expected


@pytest.mark.parametrize(("spec", "expected"), [
    ("8000-8010:80", PortMapping(80, host_port=8000, host_port_end=8010)),
    ("0.0.0.0:9000-9001:53/udp", PortMapping(53, "udp", "0.0.0.0", 9000, 9001)),
    ("8000-8000:80", PortMapping(80, host_port=8000)),
])
def test_a_host_range_for_one_box_port_is_one_mapping(spec: str, expected: PortMapping) -> None:
    """docker's `-p 8000-8010:80`: one free port of the range, chosen at each start."""
    assert parse_publish_ranges(spec) == [expected]
    assert NetworkConfig.from_json({"ports": [dataclasses.asdict(expected)]}).ports == [expected]


@pytest.mark.parametrize(("spec", "says"), [
    ("80:80-81", "one host port for a range of box ports"),
    ("8000-8002:80-81", "differ in length"),
    ("81-80", "runs backwards"),
    ("1-1000", "more than 256 ports"),
    ("a-b", "'a' is not a number"),
    ("-1:80", "'-1' is neither a port nor a range of ports"),
    ("80:5-", "'5-' is neither a port nor a range of ports"),
    ("80-81/sctp", "invalid port spec '80-81/sctp': protocol 'sctp'"),
    ("18000-18001:80-81:90", "use \\[HOSTIP:\\]"),
])
def test_bad_port_ranges(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_publish_ranges(spec)


def test_add_host() -> None:
    assert parse_add_host("db:192.0.2.7") == "db:192.0.2.7"
    assert parse_add_host("db.local=192.0.2.7") == "db.local:192.0.2.7"
    assert parse_add_host("v6:::1") == "v6:::1"
    assert parse_add_host("v6:[2001:db8::1]") == "v6:2001:db8::1"
    assert parse_add_host("gw:host-gateway") == "gw:10.0.2.2"
    for bad in ("db", "db:", ":1.2.3.4", "db:1.2.3", "bad_name!:1.2.3.4", "a b:1.2.3.4"):
        with pytest.raises(UsageError):
            parse_add_host(bad)


def test_network_config_checks_everything_up_front() -> None:
    cfg = network_config("nat", ["1.1.1.1"], ["db:192.0.2.7"], ["8080:80", "53/udp"])
    assert cfg.dns == ["1.1.1.1"] and cfg.extra_hosts == ["db:192.0.2.7"]
    assert [p.private for p in cfg.ports] == ["80/tcp", "53/udp"]
    with pytest.raises(UsageError, match="--network none"):
        network_config("none", publish=["80"])
    assert network_config("bridge").mode == "nat"  # (docker's name of its default)
    with pytest.raises(UsageError, match="invalid --network 'host'") as e:
        network_config("host")
    assert e.value.hint and "-p" in e.value.hint
    with pytest.raises(UsageError, match="invalid --network"):
        network_config("overlay")
    with pytest.raises(UsageError, match="--dns"):
        network_config("nat", dns=["dns.example"])
    with pytest.raises(UsageError, match="published twice"):
        network_config("nat", publish=["8080:80", "8080:81"])
    # (0.0.0.0 is 127.0.0.1 too: the box conflicted with itself, "already in use")
    with pytest.raises(UsageError, match=r"host port 0\.0\.0\.0:8080/tcp is published twice"):
        network_config("nat", publish=["8080:80", "0.0.0.0:8080:81"])
    assert len(network_config("nat", publish=["127.0.0.1:8080:80", "127.0.0.2:8080:81",
                                              "0.0.0.0:8080:82/udp"]).ports) == 3


@pytest.mark.parametrize(("search", "kept"), [
    (["example.com", "corp.example.", "example.com"], ["example.com", "corp.example"]),
    (["."], ["."]),  # (docker's "no search domain": kept, so not the host's either)
    (["a-b.c0", "x"], ["a-b.c0", "x"]),
])
def test_dns_search_domains_are_kept_as_resolv_conf_takes_them(search: list[str],
                                                               kept: list[str]) -> None:
    assert network_config("nat", dns_search=search).dns_search == kept


@pytest.mark.parametrize("bad", ["two words", "-lead.example", "trail-.example", "a..b",
                                 "x\nnameserver 1.2.3.4", "", "a" * 256, "dom\u00e4in.example"])
def test_a_bad_dns_search_domain_is_refused(bad: str) -> None:
    with pytest.raises(UsageError, match=r"invalid --dns-search .*: not a domain name"):
        network_config("nat", dns_search=[bad])


def test_dns_options_are_single_words() -> None:
    cfg = network_config("nat", dns_options=["ndots:2", "timeout:1", "rotate", "ndots:2"])
    assert cfg.dns_options == ["ndots:2", "timeout:1", "rotate"]
    for bad in ("ndots:1 rotate", "x\nnameserver 192.0.2.66", "", ":x", "a" * 65):
        with pytest.raises(UsageError, match="invalid --dns-option"):
            network_config("nat", dns_options=[bad])
    with pytest.raises(UsageError, match="too many --dns-option values: at most 32"):
        network_config("nat", dns_options=[f"o{i}" for i in range(33)])


@pytest.fixture(autouse=True)
def host_resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host's resolv.conf, as the test writes it (none: this host's is no matter)."""
    from boxlite_cli.runtime import network

    path = tmp_path / "resolv.conf"
    monkeypatch.setattr(network, "HOST_RESOLV_CONF", path)
    return path


def test_the_hosts_search_domains_and_options_are_the_boxs_unless_given(
        host_resolv_conf: Path) -> None:
    """As docker's: short names resolve in a box as on its host (a corporate network's,
    or a Kubernetes runner's `search ns.svc.cluster.local`)."""
    host_resolv_conf.write_text("nameserver 10.255.255.53\nsearch old.example\n"
                                "search corp.example svc.cluster.local # the last wins\n"
                                "options ndots:5 timeout:2\noptions bad\x01word rotate\n")
    from boxlite_cli.runtime.network import host_resolver

    assert host_resolver() == (("corp.example", "svc.cluster.local"),
                               ("ndots:5", "timeout:2", "rotate"))
    nat = guest_network(network_config("nat"))
    assert (nat.dns_search, nat.dns_options) == (("corp.example", "svc.cluster.local"),
                                                 ("ndots:5", "timeout:2", "rotate"))
    given = guest_network(network_config("nat", dns_search=["mine.example"],
                                          dns_options=["ndots:1"]))
    assert (given.dns_search, given.dns_options) == (("mine.example",), ("ndots:1",))
    assert guest_network(network_config("nat", dns_search=["."])).dns_search == ()
    assert guest_network(network_config("none")).dns_search == ()  # (no network: no DNS)
    host_resolv_conf.unlink()
    assert guest_network(network_config("nat")).dns_search == ()


def test_the_guest_gets_the_resolver_settings_with_and_without_a_network() -> None:
    for mode in ("nat", "none"):
        cfg = network_config(mode, dns_search=["example.com"], dns_options=["ndots:3"])
        guest = guest_network(cfg, "ab" * 32)
        assert (guest.dns_search, guest.dns_options) == (("example.com",), ("ndots:3",))
        assert GuestNetwork.from_json(guest.to_json()) == guest
        assert NetworkConfig.from_json(dataclasses.asdict(cfg)) == cfg
    # The same host port for tcp and udp is two sockets: fine.
    network_config("nat", publish=["8080:80", "8080:80/udp"])


def test_private_port() -> None:
    assert parse_private_port("80") == (80, "tcp")
    assert parse_private_port("53/udp") == (53, "udp")
    with pytest.raises(UsageError):
        parse_private_port("80/icmp")


# host ports -----------------------------------------------------------------------------

def test_omitted_host_ports_are_chosen_free_and_distinct() -> None:
    bound = bind_host_ports([PortMapping(80), PortMapping(81), PortMapping(53, "udp")])
    ports = [p.host_port for p in bound]
    assert all(ports) and len(set(ports[:2])) == 2
    assert [p.box_port for p in bound] == [80, 81, 53]
    # They were released: QEMU can bind them.
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))


def test_a_host_port_in_use_is_a_conflict_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Conflict) as e:
            bind_host_ports([PortMapping(80, host_port=port)])
    assert str(e.value) == (f"cannot publish 80/tcp on 127.0.0.1:{port}: "
                            "the host port is already in use")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(Conflict, match="already in use"):
            bind_host_ports([PortMapping(53, "udp", host_port=port)])


def _neighbouring_listeners(count: int) -> list[socket.socket]:
    """`count` sockets listening on neighbouring free ports of 127.0.0.1."""
    for base in range(31000, 60000, 97):
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
                sock.listen()
            return held
        except OSError:
            for sock in held:
                sock.close()
    pytest.skip("no neighbouring free ports on this host")


def test_a_host_range_binds_its_first_free_port_and_fixed_ports_go_first() -> None:
    busy, *free = _neighbouring_listeners(3)
    first = busy.getsockname()[1]
    for sock in free:
        sock.close()
    try:
        ranged = PortMapping(80, host_port=first, host_port_end=first + 2)
        bound = bind_host_ports([ranged, PortMapping(81, host_port=first + 1)])
        assert [p.host_port for p in bound] == [first + 2, first + 1]
        assert [p.box_port for p in bound] == [80, 81] and not bound[0].host_port_end
    finally:
        busy.close()


def test_a_host_range_all_in_use_is_a_conflict_in_one_line() -> None:
    held = _neighbouring_listeners(2)
    first = held[0].getsockname()[1]
    try:
        with pytest.raises(Conflict) as e:
            bind_host_ports([PortMapping(80, host_port=first, host_port_end=first + 1)])
    finally:
        for sock in held:
            sock.close()
    assert str(e.value) == (f"cannot publish 80/tcp on 127.0.0.1:{first}-{first + 1}: "
                            "every host port of the range is already in use")


def test_an_address_not_on_this_host_is_a_conflict() -> None:
    with pytest.raises(Conflict, match=r"192\.0\.2\.1"):
        bind_host_ports([PortMapping(80, host_ip="192.0.2.1", host_port=8080)])


# the VM --------------------------------------------------------------------------------

def vm_spec(**kw: object) -> VmSpec:
    values: dict[str, object] = dict(
        kernel=P / "vmlinuz", initrd=P / "initrd.img", agent_root=P / "agent-root.ext4",
        rootfs_disk=Path("/b/rootfs.qcow2"), console_log=Path("/b/console.log"),
        agent_socket=Path("/b/vm.sock"), control_socket=Path("/b/qmp.sock"))
    values.update(kw)
    return VmSpec(**values)  # type: ignore[arg-type]


@pytest.fixture
def _qemu_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(cmdline, "host_tsc_khz", lambda: None)


@pytest.mark.usefixtures("_qemu_on_path")
def test_no_network_means_no_nic_at_all() -> None:
    cmd = QemuDriver().command(vm_spec())
    assert "-netdev" not in cmd and "-nic" not in cmd and "-net" not in cmd
    assert not any("net" in arg for arg in cmd if arg.startswith("virtio"))
    assert "-nodefaults" in cmd  # no default NIC either


@pytest.mark.usefixtures("_qemu_on_path")
def test_user_network_with_forwards() -> None:
    fwd = (PortForward("tcp", "127.0.0.1", 32768, 80), PortForward("udp", "::1", 5353, 53))
    cmd = QemuDriver().command(vm_spec(network="user", port_forwards=fwd))
    i = cmd.index("-netdev")
    assert cmd[i:i + 4] == [
        "-netdev",
        "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,dhcpstart=10.0.2.15,"
        "ipv6=off,restrict=off,hostfwd=tcp:127.0.0.1:32768-10.0.2.15:80,"
        "hostfwd=udp:[::1]:5353-10.0.2.15:53",
        "-device", "virtio-net-device,netdev=net0",
    ]


@pytest.mark.usefixtures("_qemu_on_path")
def test_passt_network_joins_its_socket() -> None:
    cmd = QemuDriver().command(vm_spec(network="passt", net_socket="/run/a,b/net.sock"))
    i = cmd.index("-netdev")
    assert cmd[i + 1] == "stream,id=net0,server=off,addr.type=unix,addr.path=/run/a,,b/net.sock"


def test_vm_network_follows_the_mode_and_backend() -> None:
    assert vm_network(NetworkConfig("none"), "slirp") == "none"
    assert vm_network(NetworkConfig("nat"), "slirp") == "user"
    assert vm_network(NetworkConfig("nat"), "passt") == "passt"
    with pytest.raises(UsageError):
        vm_network(NetworkConfig("nat"), "tap")
    assert port_forwards([PortMapping(80, "tcp", "127.0.0.1", 8080)]) == (
        PortForward("tcp", "127.0.0.1", 8080, 80),)


def test_what_the_guest_is_told() -> None:
    nat = guest_network(NetworkConfig("nat", extra_hosts=["db:192.0.2.7"]))
    assert nat == GuestNetwork("nat", "10.0.2.15/24", "10.0.2.2", ("10.0.2.3",),
                               (("host.boxlite.internal", "10.0.2.2"), ("db", "192.0.2.7")))
    assert guest_network(NetworkConfig("nat", dns=["1.1.1.1", "8.8.8.8"])).dns == (
        "1.1.1.1", "8.8.8.8")
    none = guest_network(NetworkConfig("none"))
    assert none == GuestNetwork("none")


def test_launch_and_state_round_trip(tmp_path: Path) -> None:
    fwd = (PortForward("tcp", "127.0.0.1", 32768, 80),)
    launch = Launch("qemu", vm_spec(network="user", port_forwards=fwd), 60.0,
                    network=guest_network(NetworkConfig("nat", extra_hosts=["db:1.2.3.4"])))
    launch.save(tmp_path / "vm.json")
    assert Launch.load(tmp_path / "vm.json") == launch

    cfg = network_config("nat", ["1.1.1.1"], ["db:192.0.2.7"], ["8080:80", "53/udp"])
    state = BoxState(id="a" * 64, name="n", config=BoxConfig(
        image="i", image_id="x", rootfs_base="", process=ProcessSpec(argv=["true"]),
        network=cfg), ports=[PortMapping(80, "tcp", "127.0.0.1", 8080)])
    assert BoxState.from_json(state.to_json()) == state
    # A state written before networking existed reads as nat without ports.
    old = state.to_json()
    del old["config"]["network"], old["ports"]
    assert BoxState.from_json(old).config.network == NetworkConfig()


def test_port_command_view() -> None:
    state = BoxState(id="a" * 64, name="web", config=BoxConfig(
        image="i", image_id="x", rootfs_base="", process=ProcessSpec(argv=["true"])),
        ports=[PortMapping(80, "tcp", "127.0.0.1", 32768), PortMapping(53, "udp", "::1", 5353)],
        status=Status.RUNNING)
    assert [f"{p.private} -> {p.public}" for p in published_ports(state)] == [
        "80/tcp -> 127.0.0.1:32768", "53/udp -> [::1]:5353"]
    assert published_ports(state, "53/udp")[0].public == "[::1]:5353"
    with pytest.raises(NotFound, match="no public port '81/tcp' published for web"):
        published_ports(state, "81")
    state.status = Status.EXITED
    assert published_ports(state) == []


# the guest's side ------------------------------------------------------------------------

def test_guest_hosts_and_resolv_conf() -> None:
    net = netconf.NetSetup("nat", "10.0.2.15/24", "10.0.2.2", ("10.0.2.3",),
                           (("host.boxlite.internal", "10.0.2.2"),))
    hosts = netconf.hosts_file("box1", net).splitlines()
    assert hosts[0] == "127.0.0.1\tlocalhost"
    assert hosts[-2:] == ["10.0.2.2\thost.boxlite.internal", "10.0.2.15\tbox1"]
    assert netconf.resolv_conf(net) == "nameserver 10.0.2.3\n"
    none = netconf.NetSetup()
    assert netconf.hosts_file("box1", none).splitlines()[-1] == "127.0.1.1\tbox1"
    assert "nameserver" not in netconf.resolv_conf(none)
    searching = dataclasses.replace(net, dns_search=("a.example", "b.example"),
                                    dns_options=("ndots:2", "rotate"))
    assert netconf.resolv_conf(searching) == ("nameserver 10.0.2.3\nsearch a.example b.example\n"
                                              "options ndots:2 rotate\n")


@pytest.mark.parametrize(("field", "word", "says"), [
    ("dns_search", "a b", "invalid DNS search domain 'a b'"),
    ("dns_search", "x\nnameserver 1.2.3.4", "invalid DNS search domain"),
    ("dns_options", "", "invalid DNS resolver option ''"),
])
def test_the_agent_refuses_resolver_words_that_would_break_resolv_conf(
        field: str, word: str, says: str) -> None:
    from boxlite_agent.errors import InvalidArgument
    from boxlite_agent.pb import agent_pb2 as agent_pb
    from boxlite_agent.service import net_setup

    msg = agent_pb.NetworkConfig(mode="nat", dns=["10.0.2.3"])
    getattr(msg, field).append(word)
    with pytest.raises(InvalidArgument, match=re.escape(says)):
        net_setup(msg)
    ok = agent_pb.NetworkConfig(mode="nat", dns_search=["example.com"], dns_options=["ndots:2"])
    assert net_setup(ok).dns_search == ("example.com",)


def test_guest_ioctl_structs() -> None:
    req = netconf.ifreq_addr("eth0", "10.0.2.15")
    assert len(req) == 40 and req[:5] == b"eth0\0"
    assert struct.unpack_from("H", req, 16)[0] == socket.AF_INET
    assert req[20:24] == socket.inet_aton("10.0.2.15")
    rt = netconf.rtentry_default("10.0.2.2")
    assert len(rt) == 120  # sizeof(struct rtentry) on x86_64
    assert rt[24 + 4:24 + 8] == socket.inet_aton("10.0.2.2")  # rt_gateway's sin_addr
    assert struct.unpack_from("H", rt, 56)[0] == netconf.RTF_UP | netconf.RTF_GATEWAY


def test_guest_interfaces_skip_loopback(tmp_path: Path) -> None:
    for name in ("lo", "eth1", "eth0"):
        (tmp_path / name).mkdir()
    assert netconf.interfaces(str(tmp_path)) == ["eth0", "eth1"]
    assert netconf.interfaces(str(tmp_path / "missing")) == []


def test_guest_checks_the_network_config_it_is_sent() -> None:
    from boxlite_agent.errors import InvalidArgument
    from boxlite_agent.pb import agent_pb2 as pb
    from boxlite_agent.service import net_setup

    ok = pb.NetworkConfig(mode="nat", address="10.0.2.15/24", gateway="10.0.2.2",
                          dns=["10.0.2.3"], hosts=[pb.HostEntry(name="db", ip="192.0.2.7")])
    assert net_setup(ok) == netconf.NetSetup("nat", "10.0.2.15/24", "10.0.2.2", ("10.0.2.3",),
                                             (("db", "192.0.2.7"),))
    assert net_setup(pb.NetworkConfig()).mode == "none"
    for bad in (pb.NetworkConfig(address="10.0.2.999/24"), pb.NetworkConfig(dns=["x"]),
                pb.NetworkConfig(hosts=[pb.HostEntry(name="a\nb", ip="1.2.3.4")])):
        with pytest.raises(InvalidArgument):
            net_setup(bad)


def test_publish_all_adds_the_exposed_ports_that_p_does_not_publish() -> None:
    config = {"ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "80": {}}}
    assert exposed_ports(config) == [PortMapping(53, "udp"), PortMapping(80, "tcp"),
                                     PortMapping(8080, "tcp")]
    given = NetworkConfig(ports=[PortMapping(80, "tcp", "127.0.0.1", 8000)])
    ports = publish_exposed(given, config).ports
    assert ports == [PortMapping(80, "tcp", "127.0.0.1", 8000), PortMapping(53, "udp"),
                     PortMapping(8080, "tcp")]
    assert publish_exposed(NetworkConfig(), {}).ports == []
    assert publish_exposed(NetworkConfig(mode="none"), {}).ports == []
    with pytest.raises(UsageError, match="-P"):
        publish_exposed(NetworkConfig(mode="none"), config)


def test_expose_adds_ports_for_p_to_publish_as_the_images_expose_does() -> None:
    assert parse_expose(["8080", "53/UDP", "9000-9002/tcp", "8080/tcp"]) == [
        "8080/tcp", "53/udp", "9000/tcp", "9001/tcp", "9002/tcp"]
    config = with_exposed({"Cmd": ["x"], "ExposedPorts": {"80/tcp": {}}}, ["53/udp"])
    assert config == {"Cmd": ["x"], "ExposedPorts": {"80/tcp": {}, "53/udp": {}}}
    assert publish_exposed(NetworkConfig(), config).ports == [PortMapping(53, "udp"),
                                                             PortMapping(80, "tcp")]
    assert with_exposed({}, []) == {}
    # a box's own (docker's Config.ExposedPorts): the image's and --expose's, in order
    assert image_exposed({"ExposedPorts": {"80/tcp": {}, "53/UDP": {}}}, ["8080/tcp"]) == [
        "53/udp", "80/tcp", "8080/tcp"]
    assert image_exposed({"ExposedPorts": {"http": {}}}, ["8080/tcp"]) == ["8080/tcp"]


@pytest.mark.parametrize(("spec", "says"), [
    ("80/sctp", "the protocol must be tcp or udp"), ("http", "'http' is not a number"),
    ("0", "port 0 is not in 1-65535"), ("90-80", "runs backwards"),
    ("1-300", "more than 256 ports"), ("", "'' is not a number")])
def test_a_bad_expose_is_refused(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_expose([spec])


@pytest.mark.parametrize("exposed", [{"http/tcp": {}}, {"0/tcp": {}}, {"80/sctp": {}},
                                     {"70000": {}}, ["80/tcp"]])
def test_bad_exposed_ports_are_an_image_error(exposed: object) -> None:
    with pytest.raises(ImageError):
        exposed_ports({"ExposedPorts": exposed})


def test_inspect_says_publish_all_as_asked() -> None:
    """(docker's HostConfig.PublishAllPorts was always false, for a box made with -P too)"""
    from boxlite_cli.cli.dockerview import docker_view

    for publish_all in (False, True):
        state = BoxState(id="a" * 64, name="web", config=BoxConfig(
            image="i", image_id="sha256:x", rootfs_base="", process=ProcessSpec(argv=["true"]),
            publish_all=publish_all))
        view = docker_view(state, 0, lambda name: Path("/v") / name, Path("/log"))
        assert view["HostConfig"]["PublishAllPorts"] is publish_all


def test_inspect_ports_has_an_exposed_port_not_published_as_null() -> None:
    """docker's NetworkSettings.Ports: `"7000/tcp": null` beside the published ones (a
    script that loops over that map saw other ports)."""
    from boxlite_cli.cli.dockerview import docker_view
    from boxlite_cli.state.records import Status

    state = BoxState(id="a" * 64, name="web", status=Status.RUNNING, config=BoxConfig(
        image="i", image_id="sha256:x", rootfs_base="", process=ProcessSpec(argv=["true"]),
        exposed=["7000/tcp"], network=NetworkConfig(ports=[PortMapping(80, host_port=8080)])),
        ports=[PortMapping(80, host_port=8080)])
    ports = docker_view(state, 0, lambda name: Path("/v") / name, Path("/log"))[
        "NetworkSettings"]["Ports"]
    assert ports == {"7000/tcp": None,
                     "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
