"""The disk space a shim keeps for the box's state on a full disk (state/reserve.py)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from boxlite_cli.state.reserve import RESERVE_BYTES, keep_reserve, written_with_reserve


def test_the_reserve_is_kept_once_and_given_to_a_write_the_full_disk_refused(
        tmp_path: Path) -> None:
    reserve = tmp_path / "space.reserve"
    keep_reserve(reserve)
    assert reserve.stat().st_blocks * 512 >= RESERVE_BYTES  # (allocated, not a hole)
    keep_reserve(reserve)  # (there: kept as it is)
    tries: list[int] = []

    def write() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")

    written_with_reserve(write, reserve)
    assert len(tries) == 2 and not reserve.exists()
    with pytest.raises(OSError) as e:  # (no reserve left: the error stands)
        written_with_reserve(lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")),
                             reserve)
    assert e.value.errno == errno.ENOSPC


def test_other_errors_keep_the_reserve(tmp_path: Path) -> None:
    reserve = tmp_path / "space.reserve"
    keep_reserve(reserve)

    def denied() -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        written_with_reserve(denied, reserve)
    assert reserve.exists()
