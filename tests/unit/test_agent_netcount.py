"""The agent's NET I/O: /proc/net/dev's counters of every interface but lo."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.netcount import net_bytes, parse_net_dev

NET_DEV = "\n".join([  # (the kernel's columns, squeezed)
    "Inter-|   Receive                            |  Transmit",
    " face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop "
    "fifo colls carrier compressed",
    "    lo: 999999 10 0 0 0 0 0 0 999999 10 0 0 0 0 0 0",
    "  eth0:   1500  3 0 0 0 0 0 0   2400  4 0 0 0 0 0 0",
    "  eth1:12345678901 9 0 0 0 0 0 0 7 1 0 0 0 0 0 0",
]) + "\n"


def test_every_interface_but_lo_is_counted() -> None:
    assert parse_net_dev(NET_DEV) == (1500 + 12345678901, 2400 + 7)


def test_no_interface_but_lo_and_odd_lines_count_nothing() -> None:
    assert parse_net_dev("\n".join(NET_DEV.splitlines()[:3])) == (0, 0)  # (--network none)
    assert parse_net_dev(NET_DEV.splitlines()[0] + "\nh\n eth0: x y\nno colon here\n") == (0, 0)


def test_an_unreadable_file_counts_nothing(tmp_path: Path) -> None:
    assert net_bytes(str(tmp_path / "missing")) == (0, 0)
    assert net_bytes() >= (0, 0)  # (this host's own: a pair of counts)
