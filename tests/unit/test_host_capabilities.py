"""--cap-add and --cap-drop: the names docker takes, and the mask the guest drops."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.state.capabilities import ALL_MASK, CAPABILITIES, drop_mask, normalize


def test_names_are_taken_as_docker_takes_them() -> None:
    assert normalize(["net_admin", "CAP_SYS_PTRACE", "all", " Chown ", "NET_ADMIN"],
                     "--cap-drop") == ["NET_ADMIN", "SYS_PTRACE", "ALL", "CHOWN"]
    assert CAPABILITIES["CHOWN"] == 0 and CAPABILITIES["NET_RAW"] == 13
    assert CAPABILITIES["CHECKPOINT_RESTORE"] == 40 and ALL_MASK == (1 << 41) - 1


@pytest.mark.parametrize("name", ["NET_FOO", "", "CAP_", "ALL_", "0"])
def test_an_unknown_name_is_a_usage_error_naming_the_option(name: str) -> None:
    with pytest.raises(UsageError, match=r"invalid --cap-add .*no such capability") as e:
        normalize([name], "--cap-add")
    assert e.value.hint and "NET_ADMIN" in e.value.hint


@pytest.mark.parametrize(("add", "drop", "mask"), [
    ([], [], 0),
    ([], ["CHOWN", "NET_RAW"], 1 << 0 | 1 << 13),
    ([], ["ALL"], ALL_MASK),
    (["NET_BIND_SERVICE"], ["ALL"], ALL_MASK & ~(1 << 10)),
    (["CHOWN"], ["CHOWN"], 0),  # (what is added back wins)
    (["ALL"], ["ALL"], 0),
    (["ALL"], ["NET_RAW"], 1 << 13),  # (all but the ones dropped by name: docker's)
    (["NET_ADMIN"], [], 0),  # (every capability is there already)
])
def test_the_mask_is_what_drop_takes_less_what_add_gives_back(
        add: list[str], drop: list[str], mask: int) -> None:
    assert drop_mask(add, drop) == mask
