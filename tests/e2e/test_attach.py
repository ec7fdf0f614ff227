"""boxlite attach: the output from now on and the exit code, piped input to a -i box,
and a tty box's own terminal with the detach keys (the box runs on)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx, interruptible

pytestmark = pytest.mark.e2e


def ok(*args: str) -> bytes:
    proc = bx(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def status(box: str) -> str:
    return ok("inspect", "-f", "{{.State.Status}}", box).decode().strip()


def test_output_from_now_and_the_exit_code() -> None:
    try:
        ok("run", "-d", "--name", "att-out", IMAGE, "sh", "-c",
           "echo early; sleep 3; echo late; echo oops >&2; exit 4")
        time.sleep(1)  # (the early line is in the log before we attach)
        attached = bx("attach", "att-out", timeout=120)
        assert (attached.returncode, attached.stdout, attached.stderr) == (4, b"late\n", b"oops\n")
    finally:
        bx("rm", "-f", "att-out")


def test_an_attach_whose_box_is_removed_ends_killed_not_well() -> None:
    """rm -f under an attach: 137, as docker's (a pipeline must not see a success)."""
    ok("run", "-d", "--name", "att-rm", IMAGE, "sleep", "600")
    proc = subprocess.Popen([boxlite_bin(), "attach", "att-rm"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2)  # (attached: its output stream is open)
        ok("rm", "-f", "att-rm")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 137, err
    finally:
        proc.kill()
        bx("rm", "-f", "att-rm")


def test_an_attach_without_sig_proxy_ends_of_a_signal_and_the_box_runs_on() -> None:
    """--no-sig-proxy: SIGTERM or SIGINT ends the attach with 128 + N (it said 0, a
    cancelled CI step looked done); the process never gets them."""
    try:
        ok("run", "-d", "--name", "att-sig", IMAGE, "sh", "-c",
           'trap "echo GOT; exit 9" INT TERM; while :; do echo tick; sleep 0.2; done')
        for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            proc = subprocess.Popen([boxlite_bin(), "attach", "--no-sig-proxy", "att-sig"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, preexec_fn=interruptible)
            try:
                assert proc.stdout is not None
                assert proc.stdout.readline() == b"tick\n"  # (attached: its output flows)
                time.sleep(0.3)
                proc.send_signal(sig)
                assert proc.wait(60) == code, proc.stderr.read() if proc.stderr else b""
            finally:
                proc.kill()
                proc.wait()
        assert status("att-sig") == "running"
        assert b"GOT" not in ok("logs", "att-sig")
    finally:
        bx("rm", "-f", "att-sig")


def test_piped_input_reaches_a_box_made_with_i() -> None:
    try:
        ok("run", "-d", "-i", "--name", "att-in", IMAGE, "sh", "-c",
           "while read l; do echo got $l; done; echo eof; exit 2")
        attached = bx("attach", "att-in", input=b"a\nb\n", timeout=120)
        assert (attached.returncode, attached.stdout) == (2, b"got a\ngot b\neof\n")
    finally:
        bx("rm", "-f", "att-in")


def read_until(fd: int, needle: bytes, timeout_s: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while needle not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    assert needle in seen, seen
    return seen


def typed_on_a_pty(argv: list[str], line: bytes, answer: bytes,
                   keys: bytes | None = b"\x10\x11") -> None:
    """Run `argv` on a terminal of its own, type `line`, see `answer`, then type the
    detach `keys` and expect it to say so, as docker's, and end with 0 (None: kill it
    instead)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        time.sleep(1)
        os.write(master, line)
        read_until(master, answer)
        if keys is not None:
            os.write(master, keys)
            read_until(master, b"read escape sequence")
            assert proc.wait(60) == 0
    finally:
        proc.kill()
        os.close(master)


def test_a_tty_box_detaches_on_ctrl_p_ctrl_q_and_runs_on() -> None:
    try:
        ok("run", "-dit", "--name", "att-tty", IMAGE, "sh")
        not_a_tty = bx("attach", "att-tty", input=b"")
        assert not_a_tty.returncode == 125
        assert b"the input device is not a TTY" in not_a_tty.stderr
        typed_on_a_pty([boxlite_bin(), "attach", "att-tty"], b"echo tty-$((6*7))\r",
                       b"tty-42")  # then Ctrl-P Ctrl-Q
        assert status("att-tty") == "running"  # detached, not ended
        out = bx("exec", "att-tty", "echo", "still")
        assert out.stdout == b"still\n"
        # docker's --detach-keys: Ctrl-A d detaches now
        typed_on_a_pty([boxlite_bin(), "attach", "--detach-keys", "ctrl-a,d", "att-tty"],
                       b"echo again-$((6*7))\r", b"again-42", keys=b"\x01d")
        assert status("att-tty") == "running"
    finally:
        bx("rm", "-f", "att-tty")


def test_exec_it_detaches_on_ctrl_p_ctrl_q_and_its_process_runs_on() -> None:
    """docker's exec -it: the detach keys end the CLI (0), not the process; the
    process is not paused by the output nobody reads any more (MBs of it)."""
    try:
        ok("run", "-d", "--name", "exec-det", IMAGE, "sleep", "600")
        typed_on_a_pty([boxlite_bin(), "exec", "-it", "exec-det", "sh"],
                       b"echo in-$((6*7)); sleep 2; seq 1 1000000; touch /tmp/done\r",
                       b"in-42")  # then Ctrl-P Ctrl-Q, while it sleeps
        typed_on_a_pty([boxlite_bin(), "exec", "-it", "--detach-keys", "ctrl-a,d", "exec-det",
                        "sh"], b"echo again-$((6*7))\r", b"again-42", keys=b"\x01d")
        deadline = time.monotonic() + 120  # (its 6.9 MB, more than the agent would hold)
        while ok("exec", "exec-det", "sh", "-c", "ls /tmp/done 2>/dev/null || true") == b"":
            assert time.monotonic() < deadline, "the detached process never finished"
            time.sleep(1)
        shells = ok("exec", "exec-det", "sh", "-c", "cat /proc/[0-9]*/comm").split().count(b"sh")
        assert shells == 3  # both detached shells run on (and this one)
    finally:
        bx("rm", "-f", "exec-det")


def test_attach_to_a_box_that_is_not_running_is_refused() -> None:
    try:
        ok("create", "--name", "att-no", IMAGE, "true")
        refused = bx("attach", "att-no")
        assert refused.returncode == 125
        assert refused.stderr.decode().splitlines()[0] == "boxlite: box att-no is not running"
    finally:
        bx("rm", "-f", "att-no")


def log_lines(box: str) -> int:
    return len(ok("logs", box).splitlines())


@pytest.mark.parametrize("leave", ["ctrl-p-ctrl-q", "kill-9"])
def test_a_run_it_whose_cli_leaves_runs_on_with_its_output_kept(leave: str) -> None:
    """run -it: Ctrl-P Ctrl-Q detaches (exit 0), as docker's; a CLI killed outright
    leaves the box too. Either way its shim takes the output over: the process is not
    held up by output nobody reads, and `logs` and `attach` show it from then on."""
    box = f"left-{leave[:4]}"
    master, slave = os.openpty()
    proc = subprocess.Popen([boxlite_bin(), "run", "-it", "--name", box, IMAGE, "sh", "-c",
                             "i=0; while :; do echo tick$i; i=$((i+1)); sleep 0.1; done"],
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        read_until(master, b"tick3")
        if leave == "kill-9":
            proc.kill()
            proc.wait(30)
        else:
            os.write(master, b"\x10\x11")
            read_until(master, b"read escape sequence")
            assert proc.wait(60) == 0
        assert status(box) == "running"
        time.sleep(1)
        before = log_lines(box)
        time.sleep(2)
        assert log_lines(box) > before + 5  # (~10 a second: it runs on, its output kept)
        attached = subprocess.run(["timeout", "-s", "INT", "3", boxlite_bin(), "attach",
                                   "--no-stdin", box], capture_output=True, timeout=60)
        assert b"tick" in attached.stdout, attached.stderr
    finally:
        proc.kill()
        os.close(master)
        bx("rm", "-f", box)


@pytest.mark.parametrize("how", ["run", "start"])
def test_a_detached_shell_reads_on(how: str) -> None:
    """Detaching from a shell (run -it, start -ai) sends it no end of input (^D): it
    runs on, and answers an attach again. (start's keys are docker's --detach-keys.)"""
    box = f"shell-{how}"
    keys = b"\x10\x11"
    if how == "start":
        ok("create", "-it", "--name", box, IMAGE, "sh")
        argv = [boxlite_bin(), "start", "-ai", "--detach-keys", "ctrl-a,d", box]
        keys = b"\x01d"
    else:
        argv = [boxlite_bin(), "run", "-it", "--name", box, IMAGE, "sh"]
    try:
        typed_on_a_pty(argv, b"echo first-$((6*7))\r", b"first-42", keys=keys)
        time.sleep(3)  # (a ^D would have ended the shell, and the box, by now)
        assert status(box) == "running"
        typed_on_a_pty([boxlite_bin(), "attach", box], b"echo again-$((6*7))\r", b"again-42",
                       keys=None)
    finally:
        bx("rm", "-f", box)
