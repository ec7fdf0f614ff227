"""docker's --ulimit in the guest agent (boxlite_agent/ulimits.py): Init's limits,
checked as untrusted, as the exec helper takes them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.errors import InvalidArgument
from boxlite_agent.ulimits import helper_spec


@dataclass
class Limit:
    name: str
    soft: int
    hard: int


def test_the_agent_hands_the_helper_linux_resource_numbers() -> None:
    assert helper_spec([]) == ""
    assert helper_spec([Limit("nofile", 1024, 2048), Limit("core", 0, 0),
                        Limit("stack", 8192, -1)]) == "3=8192:-1,4=0:0,7=1024:2048"


@pytest.mark.parametrize("limit", [Limit("as", 1, 1), Limit("nofile", 5, 3),
                                   Limit("nofile", -2, 1), Limit("nofile", -1, 5)])
def test_the_agent_refuses_what_the_host_would_not_send(limit: Limit) -> None:
    with pytest.raises(InvalidArgument, match="invalid ulimit"):
        helper_spec([limit])
    with pytest.raises(InvalidArgument, match="invalid ulimit 'nofile'"):
        helper_spec([Limit("nofile", 1, 1), Limit("nofile", 2, 2)])


def test_more_open_files_than_the_guests_kernel_allows_is_refused_before_a_spawn(
        tmp_path: Path) -> None:
    """(the helper's setrlimit would fail every start with EPERM, as exit 126)"""
    nr_open = tmp_path / "nr_open"
    nr_open.write_text("1048576\n")
    assert helper_spec([Limit("nofile", 1024, 1048576)], str(nr_open)) == "7=1024:1048576"
    for soft, hard in ((2000000, 2000000), (-1, -1), (5, -1)):
        with pytest.raises(InvalidArgument, match="more than the 1048576 open files the guest"):
            helper_spec([Limit("nofile", soft, hard)], str(nr_open))
    assert helper_spec([Limit("nofile", 5, -1)], str(tmp_path / "none")) == "7=5:-1"
