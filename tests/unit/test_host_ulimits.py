"""docker's --ulimit on the host (state/ulimits.py): names and values, checked before
anything is made."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.state.ulimits import normalize_ulimits, parse_ulimit


@pytest.mark.parametrize(("spec", "expected"), [
    ("nofile=1024", ("nofile", 1024, 1024)),  # (docker's: HARD defaults to SOFT)
    ("nofile=1024:2048", ("nofile", 1024, 2048)),
    ("core=0", ("core", 0, 0)),
    ("memlock=-1", ("memlock", -1, -1)),
    ("stack=8192:-1", ("stack", 8192, -1)),
])
def test_dockers_ulimit_values(spec: str, expected: tuple[str, int, int]) -> None:
    assert parse_ulimit(spec) == expected


@pytest.mark.parametrize(("spec", "says"), [
    ("nofile", "give NAME=SOFT[:HARD]"),
    ("files=1", "give NAME=SOFT[:HARD]"),
    ("as=1", "give NAME=SOFT[:HARD]"),  # (not one of docker's names)
    ("nofile=x", "'x' is not a count"),
    ("nofile=1:", "'' is not a count"),
    ("nofile=-2", "'-2' is not a count"),
    ("nofile=5:3", "the soft limit is above the hard one"),
    ("nofile=-1:3", "the soft limit is above the hard one"),
    ("nofile=99999999999999999999", "'99999999999999999999' is not a count"),
    ("nofile=+5", "'+5' is not a count"),
    ("nofile= 5", "' 5' is not a count"),
    ("nofile=1 :2", "'1 ' is not a count"),
    ("nofile=1_000", "'1_000' is not a count"),
])
def test_a_bad_ulimit_says_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_ulimit(spec)
    assert refused.value.message.startswith(f"invalid --ulimit '{spec}': {says}")


def test_the_last_of_a_name_wins_and_the_order_is_the_names() -> None:
    assert normalize_ulimits(["nproc=10", "core=0", "nproc=20:30"]) == ["core=0:0",
                                                                          "nproc=20:30"]
