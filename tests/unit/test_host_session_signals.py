"""Where a foreground session (runtime/session.py) sends the signals this command gets:
to the process, or ending this command (the process running on); and that a tty
session gives the box's pty the terminal's size once it runs (a resize while the
process started is not lost). A fake agent client stands in for the box."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import termios
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from boxlite_cli.agent.client import AgentClient, ExecResult
from boxlite_cli.errors import Interrupted
from boxlite_cli.runtime.session import Session

HANG_GUARD_S = 30.0


class FakeClient:
    """The agent calls a Session makes: its output ends once `finish` is set."""

    def __init__(self) -> None:
        self.finish = threading.Event()
        self.resizes: list[tuple[int, int]] = []
        self.signals: list[int] = []

    def wait(self, exec_id: str) -> ExecResult:
        self.finish.wait(HANG_GUARD_S)
        return ExecResult(exit_code=0, signal=0, timed_out=False)

    def attach(self, exec_id: str, took_call: Callable[[Any], None]) -> Iterator[tuple[int, bytes]]:
        self.finish.wait(HANG_GUARD_S)
        yield from ()

    def resize(self, exec_id: str, rows: int, cols: int) -> None:
        self.resizes.append((rows, cols))
        self.finish.set()

    def signal(self, exec_id: str, signum: int, group: bool = False) -> None:
        self.signals.append(signum)

    def close_output(self, exec_id: str, stream: int) -> None:
        pass


def session(tty: bool, sig_proxy: bool = True) -> Session:
    return Session(cast(AgentClient, FakeClient()), "e1", tty=tty, sig_proxy=sig_proxy)


def test_without_a_tty_every_signal_goes_to_the_process_ctrl_z_too() -> None:
    s = session(tty=False)
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGTSTP, signal.SIGCONT} <= set(s._forwarded())
    for signum in (signal.SIGINT, signal.SIGTSTP):
        s._on_signal(signum)
    assert [s._control.get_nowait(), s._control.get_nowait()] == [
        ("signal", signal.SIGINT), ("signal", signal.SIGTSTP)]


def test_without_sig_proxy_a_signal_ends_this_command_and_ctrl_z_stops_it() -> None:
    for tty in (False, True):
        s = session(tty=tty, sig_proxy=False)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with pytest.raises(Interrupted):
                s._on_signal(signum)
        assert s._control.empty()  # (nothing reached the process)
    # (Ctrl-Z is left to stop this command, as docker's --sig-proxy=false leaves it)
    assert signal.SIGTSTP not in session(tty=False, sig_proxy=False)._forwarded()


def test_with_a_tty_sigterm_and_sighup_reach_the_process_and_ctrl_c_ends_this_command() -> None:
    """`exec -t` without -i: the terminal is not raw, so Ctrl-C is a SIGINT here; it
    ends this command (130), the process runs on (it was held forever before)."""
    s = session(tty=True)
    assert {signal.SIGWINCH, signal.SIGINT, signal.SIGTERM, signal.SIGHUP} <= set(s._forwarded())
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
        with pytest.raises(Interrupted):
            s._on_signal(signum)
    assert s._control.empty()
    s._on_signal(signal.SIGTERM)
    s._on_signal(signal.SIGWINCH)
    assert [s._control.get_nowait(), s._control.get_nowait()] == [
        ("signal", signal.SIGTERM), ("resize", signal.SIGWINCH)]


def test_a_tty_session_gives_the_process_the_terminal_size_once_it_runs() -> None:
    """A window resized while the box started (before this session took SIGWINCH):
    the pty in the box gets the size it has now, not the one it started with."""
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 41, 123, 0, 0))
        client = FakeClient()
        s = Session(cast(AgentClient, client), "e1", tty=True, stdin_fd=slave,
                    stdout_fd=slave, stderr_fd=slave)
        assert s.run().exit_code == 0
        assert client.resizes == [(41, 123)]
    finally:
        os.close(master)
        os.close(slave)


class _IgnoringClient(FakeClient):
    """A process that ignores what it is sent, whose output is over (its terminal gone)."""

    def attach(self, exec_id: str, took_call: Callable[[Any], None]) -> Iterator[tuple[int, bytes]]:
        yield from ()

    def resize(self, exec_id: str, rows: int, cols: int) -> None:
        self.resizes.append((rows, cols))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_tty_process_that_ignores_an_ending_signal_does_not_keep_this_command(
        signum: int) -> None:
    """`timeout` to `exec -it BOX bash`, or its terminal closed: forwarded, and after the
    grace this command ends all the same, 128 + N (it waited for good: tester AQ)."""
    from boxlite_cli.errors import SignalEndedWait

    client = _IgnoringClient()
    s = Session(cast(AgentClient, client), "e1", tty=True, held_signals=[signum],
                ending_grace_s=0.1)
    try:
        with pytest.raises(SignalEndedWait) as e:
            s.run()
    finally:
        client.finish.set()
    assert e.value.exit_code == 128 + signum and client.signals == [signum]
    assert e.value.message == (f"the process did not end on {signal.Signals(signum).name} "
                               "within 0.1 s: it runs on in the box")
