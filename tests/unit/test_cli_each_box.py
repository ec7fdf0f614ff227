"""each_box: docker's way with several boxes (each said, failures reported, the last
failure's code), one after the other or, for stop, at once and said in order."""

from __future__ import annotations

import threading
import time

import pytest

from boxlite_cli.cli.errors import each_box
from boxlite_cli.errors import Conflict, NoSuchBox


@pytest.mark.parametrize("parallel", [False, True])
def test_each_box_says_each_in_order_and_reports_failures(
        parallel: bool, capsys: pytest.CaptureFixture[str]) -> None:
    def action(ref: str) -> None:
        time.sleep({"a": 0.2, "b": 0.0, "c": 0.1}.get(ref, 0))
        if ref == "gone":
            raise NoSuchBox(f"no such box: {ref}")
        if ref == "busy":
            raise Conflict(f"box {ref} is stopping")

    code = each_box(("a", "gone", "b", "busy", "c"), action, parallel=parallel)
    out, err = capsys.readouterr()
    assert out.splitlines() == ["a", "b", "c"]
    assert err.splitlines() == ["boxlite: no such box: gone", "boxlite: box busy is stopping"]
    assert code == 125


def test_parallel_runs_them_at_once() -> None:
    started = threading.Barrier(3, timeout=5)  # (each waits for the other two)

    def action(ref: str) -> None:
        started.wait()

    assert each_box(("a", "b", "c"), action, parallel=True) == 0


def test_rm_f_of_a_missing_box_is_no_failure(capsys: pytest.CaptureFixture[str]) -> None:
    def action(ref: str) -> None:
        raise NoSuchBox(f"no such box: {ref}")

    assert each_box(("x",), action, missing_is_done=True) == 0
    assert capsys.readouterr() == ("", "")  # (docker's rm -f says nothing either)
