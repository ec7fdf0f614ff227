"""The guest's file-system freeze around snapshots: thaw on request or by itself."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent import quiesce
from boxlite_agent.quiesce import FIFREEZE, FITHAW, Freezer


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(Freezer, "_ioctl", lambda self, path, request: seen.append((path, request)))
    return seen


def test_freeze_then_thaw(calls: list[tuple[str, int]]) -> None:
    freezer = Freezer()
    freezer.freeze("/run/rootfs", 5)
    freezer.freeze("/run/rootfs", 5)  # a second freeze only extends the timer
    assert freezer.frozen
    freezer.thaw()
    freezer.thaw()  # idempotent
    assert calls == [("/run/rootfs", FIFREEZE), ("/run/rootfs", FITHAW)]
    assert not freezer.frozen


def test_a_freeze_nobody_thaws_thaws_by_itself(calls: list[tuple[str, int]]) -> None:
    freezer = Freezer()
    freezer.freeze("/run/rootfs", 0.05)
    deadline = time.monotonic() + 5
    while freezer.frozen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [("/run/rootfs", FIFREEZE), ("/run/rootfs", FITHAW)]


def test_the_auto_thaw_is_bounded(calls: list[tuple[str, int]]) -> None:
    freezer = Freezer()
    freezer.freeze("/x", 10_000)
    assert freezer._timer is not None and freezer._timer.interval == quiesce.MAX_AUTO_THAW_S
    freezer.thaw()
