"""`run -it` inside tmux: a real terminal, its size, and resizes (SIGWINCH)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def wait_for_screen(session: str, needle: str, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if needle in screen:
            return screen
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} never appeared; screen:\n{screen}")


def test_interactive_tty_in_tmux_follows_resizes() -> None:
    session = f"bx-{uuid.uuid4().hex[:8]}"
    script = "stty size | sed 's/^/size:/'; read line; echo got:$line; stty size | sed 's/^/size:/'"
    quoted = script.replace("$", "\\$")  # for the host shell that tmux runs it with
    command = f"{boxlite_bin()} run --rm -it {IMAGE} sh -c \"{quoted}\"; echo exit:$?; sleep 30"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command)
    try:
        wait_for_screen(session, "size:30 100")
        tmux("resize-window", "-t", session, "-x", "120", "-y", "40")
        time.sleep(1)  # let SIGWINCH reach the box before the next read ends
        tmux("send-keys", "-t", session, "hello", "Enter")
        screen = wait_for_screen(session, "exit:")
        assert "got:hello" in screen
        assert "size:40 120" in screen
        assert "exit:0" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
