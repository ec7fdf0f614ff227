"""Init's --sysctl in the guest agent (boxlite_agent/sysctls.py): written under
/proc/sys only; a parameter the kernel lacks, or a value it refuses, says which."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.errors import InvalidArgument
from boxlite_agent.sysctls import apply_sysctls, check_sysctls, sysctl_path


def test_names_map_to_files_under_proc_sys_and_never_out(tmp_path: Path) -> None:
    assert sysctl_path("net.core.somaxconn") == "/proc/sys/net/core/somaxconn"
    assert sysctl_path("net/ipv4/conf/eth0.1/rp_filter") == (
        "/proc/sys/net/ipv4/conf/eth0.1/rp_filter")
    for bad in ("net/../../etc/shadow", "a/./b", "single", "net..x", "/net/core", "a b.c"):
        with pytest.raises(InvalidArgument, match="invalid sysctl name"):
            sysctl_path(bad)
    with pytest.raises(InvalidArgument, match="invalid sysctl value"):
        check_sysctls({"kernel.hostname": "a\nb"})


def test_values_are_written_in_order_and_a_missing_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "net" / "core").mkdir(parents=True)
    (tmp_path / "net" / "core" / "somaxconn").write_text("4096\n")
    (tmp_path / "vm").mkdir()
    (tmp_path / "vm" / "overcommit_memory").write_text("0\n")
    apply_sysctls({"net.core.somaxconn": "1024", "vm/overcommit_memory": "1"}, str(tmp_path))
    assert (tmp_path / "net" / "core" / "somaxconn").read_text() == "1024"
    assert (tmp_path / "vm" / "overcommit_memory").read_text() == "1"
    with pytest.raises(InvalidArgument, match=r"--sysctl kernel\.nosuch: the guest's kernel "
                                              "has no such parameter"):
        apply_sysctls({"kernel.nosuch": "1"}, str(tmp_path))
    with pytest.raises(InvalidArgument, match=r"--sysctl net\.core: a group of parameters"):
        apply_sysctls({"net.core": "1"}, str(tmp_path))
