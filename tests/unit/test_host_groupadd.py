"""docker's --group-add on the host (state/groupadd.py): checked before anything is made."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.state.groupadd import check_group_add


def test_names_and_gids_are_kept_in_order_once() -> None:
    assert check_group_add(["audio", "1234", "audio"]) == ["audio", "1234"]
    assert check_group_add([]) == []


@pytest.mark.parametrize("bad", ["", "a:b", " staff", "x\n", "a\0"])
def test_a_value_that_is_no_group_is_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="invalid --group-add"):
        check_group_add([bad])
    with pytest.raises(UsageError, match="at most 64"):
        check_group_add([str(n) for n in range(65)])
