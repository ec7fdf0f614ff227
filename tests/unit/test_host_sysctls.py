"""docker's --sysctl on the host (state/sysctls.py): names of /proc/sys levels, values
of one line, kept as docker's HostConfig.Sysctls map."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.state.sysctls import check_sysctls, sysctl_parts


def test_names_take_dots_or_slashes_and_a_later_value_wins() -> None:
    assert check_sysctls(["net.core.somaxconn=1024", "vm.overcommit_memory=1",
                          "net/ipv4/conf/eth0.1/forwarding=1", "net.core.somaxconn=4096",
                          "net.ipv4.ip_local_port_range=1024 65000", "kernel.domainname="]) == {
        "net.core.somaxconn": "4096", "vm.overcommit_memory": "1",
        "net/ipv4/conf/eth0.1/forwarding": "1",
        "net.ipv4.ip_local_port_range": "1024 65000", "kernel.domainname": ""}
    assert sysctl_parts("net/ipv4/conf/eth0.1/forwarding") == [
        "net", "ipv4", "conf", "eth0.1", "forwarding"]


@pytest.mark.parametrize(("spec", "says"), [
    ("net.core.somaxconn", "want NAME=VALUE"),
    ("somaxconn=1", "is not a kernel parameter name"),
    ("net..core=1", "is not a kernel parameter name"),
    ("net/../../etc/passwd=x", "is not a kernel parameter name"),
    ("/net/core=1", "is not a kernel parameter name"),
    ("net.core.some maxconn=1", "is not a kernel parameter name"),
    ("net.core.somaxconn=1\n2", "the value must be one line"),
    ("kernel.x=" + "9" * 4097, "at most 4096 characters"),
])
def test_what_is_not_a_parameter_is_refused_in_words(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match="invalid --sysctl") as refused:
        check_sysctls([spec])
    assert says in refused.value.message


def test_a_box_takes_at_most_64() -> None:
    with pytest.raises(UsageError, match="at most 64"):
        check_sysctls([f"net.core.p{i}=1" for i in range(65)])
