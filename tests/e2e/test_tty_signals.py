"""Signals to a CLI whose process has a tty (-t): keys reach the box through its pty,
so a SIGINT this command gets (Ctrl-C on a terminal not made raw: -t without -i) ends
this command, and --no-sig-proxy ends it on any signal; the process runs on."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx

pytestmark = pytest.mark.e2e

SCRIPT = "echo ready; sleep 777"


def on_a_pty_until_ready(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """`boxlite ARGS`, its stdio a new pty, once the process printed "ready"."""
    master, slave = os.openpty()
    proc = subprocess.Popen([boxlite_bin(), *args], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 240
    while b"ready" not in seen:
        ready, _, _ = select.select([master], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"no 'ready' from the box; it wrote {seen!r}"
        seen += os.read(master, 4096)
    return proc, master


def still_sleeping(box: str) -> bool:
    time.sleep(1)
    return b"sleep 777" in bx("top", box).stdout


def test_ctrl_c_to_exec_t_without_i_ends_the_cli_and_the_process_runs_on() -> None:
    assert bx("run", "-d", "--name", "ttysig", IMAGE, "sleep", "600").returncode == 0
    try:
        proc, master = on_a_pty_until_ready(["exec", "-t", "ttysig", "sh", "-c", SCRIPT])
        try:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 130
            assert still_sleeping("ttysig")
        finally:
            proc.kill()
            os.close(master)
    finally:
        bx("rm", "-f", "ttysig")


def test_run_t_without_sig_proxy_ends_the_cli_on_sigterm_and_the_box_runs_on() -> None:
    proc, master = on_a_pty_until_ready(["run", "-t", "--no-sig-proxy", "--name", "ttynoproxy",
                                         IMAGE, "sh", "-c", SCRIPT])
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
        assert still_sleeping("ttynoproxy")
        assert bx("inspect", "-f", "{{.State.Status}}", "ttynoproxy").stdout == b"running\n"
    finally:
        proc.kill()
        os.close(master)
        bx("rm", "-f", "ttynoproxy")


@pytest.mark.parametrize("hang_up", [False, True])
def test_a_tty_process_ignoring_sigterm_or_a_hang_up_does_not_keep_the_cli(
        hang_up: bool) -> None:
    """`exec -it BOX bash` (which ignores SIGTERM at its prompt) under `timeout`, or its
    terminal closed: the signal is forwarded, and the CLI ends after a grace all the same
    (128 + N), the process running on (tester AQ: the CLI waited for good)."""
    assert bx("run", "-d", "--name", "ttyterm", IMAGE, "sleep", "600").returncode == 0
    ignoring = "trap '' TERM HUP; echo ready; sleep 777"
    try:
        proc, master = on_a_pty_until_ready(["exec", "-it", "ttyterm", "sh", "-c", ignoring])
        try:
            if hang_up:
                os.close(master)  # (a closed window, a dropped ssh)
            else:
                proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 128 + (signal.SIGHUP if hang_up else signal.SIGTERM)
            assert still_sleeping("ttyterm")
        finally:
            proc.kill()
            if not hang_up:
                os.close(master)
    finally:
        bx("rm", "-f", "ttyterm")


def test_run_it_whose_process_ignores_sigterm_ends_after_the_grace_too() -> None:
    """The same for a box's main process (`run -it`; `start -ai` goes the same way): it
    waited for good (tester AT), the box running on."""
    ignoring = "trap '' TERM HUP; echo ready; sleep 777"
    try:
        proc, master = on_a_pty_until_ready(["run", "-it", "--name", "ttyrun", IMAGE, "sh",
                                             "-c", ignoring])
        try:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 128 + signal.SIGTERM
            assert still_sleeping("ttyrun")
        finally:
            proc.kill()
            os.close(master)
    finally:
        bx("rm", "-f", "ttyrun")


@pytest.mark.parametrize("flags", [[], ["-i"]])
def test_an_exec_whose_process_ignores_sigterm_ends_after_the_grace(flags: list[str]) -> None:
    """`timeout 8 boxlite exec BOX CMD` with CMD ignoring TERM: the CLI ends 3 s after
    forwarding it (143, as docker's exec CLI ends), the process running on (it waited
    for CMD's end: tester AT). Plain exec and exec -i (gRPC) alike."""
    assert bx("run", "-d", "--name", "execterm", IMAGE, "sleep", "600").returncode == 0
    try:
        proc = subprocess.Popen([boxlite_bin(), "exec", *flags, "execterm", "sh", "-c",
                                 "trap '' TERM; echo ready; sleep 777"],
                                stdin=subprocess.PIPE if flags else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 128 + signal.SIGTERM, err
            assert err == (b"boxlite: the process did not end on SIGTERM within 3 s: it runs "
                           b"on in the box\n")
            assert still_sleeping("execterm")
        finally:
            proc.kill()
    finally:
        bx("rm", "-f", "execterm")
