"""Each box's own MAC address: derived on the host, set by the guest agent at Init."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from boxlite_cli.runtime.network import box_mac, guest_network
from boxlite_cli.state.network import NetworkConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.errors import InvalidArgument
from boxlite_agent.netconf import ARPHRD_ETHER, ifreq_hwaddr
from boxlite_agent.pb import agent_pb2 as pb
from boxlite_agent.service import net_setup


def test_box_macs_are_stable_unicast_and_locally_administered() -> None:
    mac = box_mac("a" * 64)
    assert mac == box_mac("a" * 64) and mac != box_mac("b" * 64)
    first = int(mac[:2], 16)
    assert first & 1 == 0 and first & 2 == 2  # unicast, locally administered
    assert len(bytes.fromhex(mac.replace(":", ""))) == 6


def test_nat_boxes_get_their_mac_in_init_and_none_boxes_none() -> None:
    assert guest_network(NetworkConfig(), "c" * 64).mac == box_mac("c" * 64)
    assert guest_network(NetworkConfig(mode="none"), "c" * 64).mac == ""


def test_the_ifreq_for_siocsifhwaddr_is_laid_out_as_the_kernel_reads_it() -> None:
    raw = ifreq_hwaddr("eth0", "02:11:22:33:44:55")
    assert len(raw) == 40
    name, family, data = struct.unpack("16sH14s8x", raw)
    assert name.rstrip(b"\0") == b"eth0" and family == ARPHRD_ETHER
    assert data[:6] == bytes.fromhex("021122334455") and data[6:] == b"\0" * 8


@pytest.mark.parametrize("mac", ["03:11:22:33:44:55", "02:11:22:33:44", "zz:11:22:33:44:55",
                                 "02-11-22-33-44-55"])
def test_the_agent_refuses_bad_macs(mac: str) -> None:
    with pytest.raises(InvalidArgument, match="MAC"):
        net_setup(pb.NetworkConfig(mode="nat", address="10.0.2.15/24", mac=mac))
    assert net_setup(pb.NetworkConfig(mode="nat", mac="02:11:22:33:44:55")).mac == "02:11:22:33:44:55"
