"""A plain foreground `run` or `exec` (no -i, -t or -d): the shim writes the process's
output into the CLI's own stdout and stderr and reports how it ended (run: on a pipe;
exec: on the box's exec socket), so the CLI loads no gRPC. Signals to the CLI still
reach the process, a reader that goes away (`| head`) ends only the writer (SIGPIPE),
as on a host, and a killed CLI's terminal gets no more output."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx, interruptible, vm_processes

pytestmark = pytest.mark.e2e


def signalled(args: list[str], sig: signal.Signals) -> tuple[int, bytes, bytes]:
    """Run `boxlite ARGS` running a shell that traps `sig`; once it says "ready",
    signal the CLI; (exit code, stdout after "ready", stderr)."""
    script = (f'trap "echo got {sig.name}; exit 42" {sig.name[3:]}; echo ready; '
              "while :; do sleep 0.1; done")
    proc = subprocess.Popen([boxlite_bin(), *args, "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        assert ready and proc.stdout.readline() == b"ready\n"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize(("args", "sig"), [
    (["run", "--rm"], signal.SIGTERM),
    # Ctrl-Z: the process gets it (it stopped this command, the shim writing on)
    (["run", "--rm"], signal.SIGTSTP),
    (["run", "--rm", "-i"], signal.SIGTSTP),  # (a session, not the shim's direct output)
])
def test_a_signal_to_the_cli_reaches_the_main_process(args: list[str], sig: signal.Signals
                                                      ) -> None:
    code, out, err = signalled([*args, IMAGE], sig)
    assert code == 42, err
    assert out == f"got {sig.name}\n".encode()


def test_run_without_sig_proxy_ends_the_cli_and_the_box_runs_on(tmp_path: Path) -> None:
    """docker's --sig-proxy=false: a signal to the CLI ends it (128 + the signal), not
    the process, which goes on in its box."""
    out = tmp_path / "out"
    script = 'trap "echo got INT; exit 42" INT; echo ready; while :; do sleep 0.1; done'
    with out.open("wb") as sink:
        proc = subprocess.Popen([boxlite_bin(), "run", "--sig-proxy=false", "--name",
                                 "unproxied", IMAGE, "sh", "-c", script], stdout=sink,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while b"ready" not in out.read_bytes():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
        time.sleep(1)
        assert out.read_bytes() == b"ready\n"  # (the process never got it)
        assert bx("inspect", "-f", "{{.State.Status}}", "unproxied").stdout == b"running\n"
    finally:
        proc.kill()
        bx("rm", "-f", "unproxied")


def _signal_while_starting(args: list[str], name: str, sig: signal.Signals
                           ) -> tuple[int, bytes]:
    """`boxlite ARGS`, signalled once its box (NAME) shows as starting: its exit code
    and stdout."""
    proc = subprocess.Popen([boxlite_bin(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=interruptible)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            boxes = json.loads(bx("ps", "-a", "--format", "json").stdout)
            if [b for b in boxes if b["name"] == name and b["status"] == "starting"]:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the box was never seen starting")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_the_box_starts_ends_the_start(sig: signal.Signals, e2e_home: Path,
                                                      tmp_path: Path) -> None:
    """A CI step's timeout (SIGTERM) or a closed terminal (SIGHUP) while the box still
    boots cancels it, as Ctrl-C does: the command never runs (a cancelled job leaves no
    side effect), the box is not left to run unattended, the CLI exits 128 + N."""
    name = f"early-{sig.name.lower()}"
    failed = e2e_home / "failed"
    kept_before = set(failed.iterdir()) if failed.exists() else set()
    code, _ = _signal_while_starting(["run", "--rm", "--cold", "--name", name, "-v",
                                      f"{tmp_path}:/out", IMAGE, "sh", "-c",
                                      "touch /out/ran; sleep 600"], name, sig)
    assert code == 128 + sig
    names = [b["name"] for b in json.loads(bx("ps", "-a", "--format", "json").stdout)]
    assert name not in names
    assert not [p for p in vm_processes(e2e_home) if name in p]
    assert not (tmp_path / "ran").exists()
    # (a cancelled start is not filed with the failed ones' logs)
    assert (set(failed.iterdir()) if failed.exists() else set()) == kept_before


def test_a_signal_to_run_d_while_its_box_starts_stops_the_box(e2e_home: Path) -> None:
    """`run -d` has no process to give it to: the start ends (143, no id printed) and
    the box is stopped, not left running with an id nobody got."""
    code, out = _signal_while_starting(["run", "-d", "--cold", "--name", "early-d", IMAGE,
                                        "sleep", "600"], "early-d", signal.SIGTERM)
    try:
        assert (code, out) == (143, b"")
        [box] = [b for b in json.loads(bx("ps", "-a", "--format", "json").stdout)
                 if b["name"] == "early-d"]
        assert (box["status"], box["exit_code"]) == ("exited", 143), box
        assert not [p for p in vm_processes(e2e_home) if "early-d" in p]
    finally:
        bx("rm", "-f", "early-d")


@pytest.mark.parametrize("command", [["run", "--cold", "--name", "early-int", IMAGE],
                                     ["start", "--cold", "early-int"]])
def test_ctrl_c_while_the_box_starts_stops_it(e2e_home: Path, command: list[str]) -> None:
    """Ctrl-C of a foreground run (or a start) while the box boots gives up on it: the
    CLI exits 130 and the box is stopped, not left to come up and run unseen."""
    if command[0] == "start":
        assert bx("create", "--name", "early-int", IMAGE, "sleep", "600").returncode == 0
    else:
        command = [*command, "sleep", "600"]
    try:
        code, _ = _signal_while_starting(command, "early-int", signal.SIGINT)
        assert code == 130
        [box] = [b for b in json.loads(bx("ps", "-a", "--format", "json").stdout)
                 if b["name"] == "early-int"]
        # (ended as its caller did, Exited (130), not as a SIGKILL of a command: tester AQ)
        assert (box["status"], box["exit_code"]) == ("exited", 130), box
        assert box["error"] == "its start was interrupted"
        assert not [p for p in vm_processes(e2e_home) if "early-int" in p]
    finally:
        bx("rm", "-f", "early-int")


def test_a_reader_that_goes_away_ends_only_the_writer() -> None:
    # `| head -c 5`: head leaves early. As in a host pipeline, `seq` (the writer into
    # the closed pipe) dies of SIGPIPE, the shell goes on, and its exit status is the
    # CLI's (pipefail shows it).
    cmd = (f"{boxlite_bin()} run --name early-close {IMAGE} sh -c "
           "'seq 1 2000000; echo \"seq: $?\" >&2; exit 3' | head -c 5")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout == b"1\n2\n3"
        assert proc.returncode == 3, proc.stderr
        assert b"seq: 141\n" in proc.stderr
        box = json.loads(bx("inspect", "early-close").stdout)
        box = box[0] if isinstance(box, list) else box
        assert box["exit_code"] == 3 and box["status"] == "exited"
        logs = bx("logs", "early-close")
        assert logs.stdout.startswith(b"1\n2\n3\n") and logs.stderr == b"seq: 141\n"
        assert not logs.stdout.endswith(b"2000000\n")  # seq did not run to its end
    finally:
        bx("rm", "-f", "early-close")


def _into_head(command: str) -> tuple[bytes, int]:
    """`COMMAND | head -2` in bash: head's output, and COMMAND's exit status."""
    proc = subprocess.run(["bash", "-c", f"{command} | head -2; exit ${{PIPESTATUS[0]}}"],
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    return proc.stdout, proc.returncode


def test_a_pipe_closed_by_its_reader_ends_the_writer_with_sigpipe() -> None:
    """`boxlite run IMAGE yes | head -2` ends as `yes | head -2` does: `yes` gets
    SIGPIPE (141), instead of running on with nobody reading. So does an exec, plain
    or through gRPC (-i). With -t the terminal is hung up (SIGHUP)."""
    assert _into_head(f"{boxlite_bin()} run --rm {IMAGE} yes") == (b"y\ny\n", 141)
    # a tty is hung up, as when a terminal goes away: SIGHUP
    assert _into_head(f"{boxlite_bin()} run --rm -t {IMAGE} yes") == (b"y\r\ny\r\n", 129)
    # ... and its writes fail (EIO) once it is hung up, for a process that ignores SIGHUP
    ignores = f"""{boxlite_bin()} run --rm -t {IMAGE} sh -c 'trap "" HUP; yes'"""
    assert _into_head(ignores) == (b"y\r\ny\r\n", 1)
    run = bx("run", "-d", "--name", "piped", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        assert _into_head(f"{boxlite_bin()} exec piped yes") == (b"y\ny\n", 141)
        assert _into_head(f"{boxlite_bin()} exec -i piped yes < /dev/null") == (b"y\ny\n", 141)
        assert bx("exec", "piped", "true").returncode == 0  # the box is fine
    finally:
        bx("rm", "-f", "piped")


def _first_line_of(command: str) -> subprocess.CompletedProcess[bytes]:
    """`boxlite COMMAND | head -1` in bash, with the CLI's exit status."""
    return subprocess.run(["bash", "-c", f"{boxlite_bin()} {command} < /dev/null | head -1; "
                                         "exit ${PIPESTATUS[0]}"],
                          capture_output=True, timeout=300)


def test_a_reader_that_leaves_ends_the_writer_at_its_next_write() -> None:
    """`| head -1` exits after the first line: the next write (b) gets SIGPIPE, as on
    a host; the shell never reaches its last line. Through the shim's sink (run) and
    the CLI's own (exec -i)."""
    script = "'echo a; sleep 2; echo b; sleep 30; echo survived >&2'"
    run = _first_line_of(f"run --rm {IMAGE} sh -c {script}")
    assert (run.stdout, run.returncode) == (b"a\n", 141), run.stderr
    assert b"survived" not in run.stderr
    assert bx("run", "-d", "--name", "piped2", IMAGE, "sleep", "600").returncode == 0
    try:
        exe = _first_line_of(f"exec -i piped2 sh -c {script}")
        assert (exe.stdout, exe.returncode) == (b"a\n", 141), exe.stderr
        assert b"survived" not in exe.stderr
    finally:
        bx("rm", "-f", "piped2")


def test_output_that_cannot_be_written_is_an_error() -> None:
    """Into a full disk (/dev/full): one line, and a writer that goes on gets SIGPIPE;
    the box is fine."""
    def into_full(command: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(["bash", "-c", f"{boxlite_bin()} {command} > /dev/full"],
                              capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
        done.stderr = b"".join(line for line in done.stderr.splitlines(keepends=True)
                               if b"KVM is not usable" not in line)  # (once per boot)
        return done

    error = b"boxlite: the output could not be written: No space left on device\n"
    # (run -i and -t said nothing and exited 0, or 129: taken for the VM's loss)
    for flags, ended in (("", 141), ("-i", 141), ("-t", 129)):  # (-t: the tty's hang-up)
        done = into_full(f"run --rm {flags} {IMAGE} echo hi")
        assert (done.returncode, done.stderr) == (125, error), flags
        endless = into_full(f"run --rm {flags} {IMAGE} yes")
        assert (endless.returncode, endless.stderr) == (ended, error), flags
    assert bx("run", "-d", "--name", "full", IMAGE, "sleep", "600").returncode == 0
    try:
        assert (into_full("exec full echo hi").returncode, into_full("exec full yes").returncode
                ) == (125, 141)
        assert into_full("exec full echo hi").stderr == error
        # (its hint was the data directory's: the full disk was the user's, not boxlite's)
        copied = into_full("cp full:/etc/os-release -")
        assert (copied.returncode, copied.stderr) == (
            125, b"boxlite: cannot write to standard output: No space left on device\n")
        assert bx("exec", "full", "true").returncode == 0
    finally:
        bx("rm", "-f", "full")


def test_a_detached_box_keeps_none_of_the_callers_descriptors() -> None:
    # `$(...)` ends when every holder of its pipe is gone; fd 9 is one more copy of it
    # that the CLI inherits. The box's shim lives on: it must not hold that copy.
    cmd = f"box=$({boxlite_bin()} run -d {IMAGE} sleep 300 9>&1); echo \"$box\""
    # (A leak makes bash wait for the box's 300 s: the timeout fails the test.)
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    box = proc.stdout.decode().strip()
    try:
        assert proc.returncode == 0 and box, proc.stderr
        assert bx("inspect", "--format", "{{.Status}}", box).stdout.strip() == b"running"
    finally:
        if box:
            bx("rm", "-f", box)


def test_a_killed_cli_gets_no_more_output(tmp_path: Path, e2e_home: Path) -> None:
    out = tmp_path / "out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [boxlite_bin(), "run", "--name", "ticker", IMAGE, "sh", "-c",
             "while :; do echo tick; sleep 0.2; done"],
            stdout=sink, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while b"tick" not in out.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert b"tick" in out.read_bytes()
        proc.kill()
        proc.wait()
        time.sleep(1.0)  # a chunk already in flight may still land
        size = out.stat().st_size
        time.sleep(2.0)
        assert out.stat().st_size == size, "output kept coming after the CLI died"
        # Like a docker container whose client went away: it runs on, logging.
        logged = bx("logs", "ticker").stdout.count(b"tick")
        time.sleep(1.0)
        assert bx("logs", "ticker").stdout.count(b"tick") > logged
    finally:
        assert bx("rm", "-f", "ticker").returncode == 0
    assert not [p for p in vm_processes(e2e_home) if "ticker" in p]


def test_exec_streams_separately_and_forwards_signals() -> None:
    assert bx("run", "-d", "--name", "sigexec", IMAGE, "sleep", "600").returncode == 0
    try:
        both = bx("exec", "sigexec", "sh", "-c", "echo out; echo err >&2; exit 9")
        assert (both.returncode, both.stdout, both.stderr) == (9, b"out\n", b"err\n")
        for sig in (signal.SIGINT, signal.SIGTSTP):
            code, out, err = signalled(["exec", "sigexec"], sig)
            assert code == 42, err
            assert out == f"got {sig.name}\n".encode()
        assert bx("exec", "sigexec", "true").returncode == 0  # the box is fine
        # `timeout 600 boxlite exec box make test`: SIGTERM ends the job the exec
        # started too, as `timeout` ends a host job (its children were left running)
        job = subprocess.Popen([boxlite_bin(), "exec", "sigexec", "sh", "-c",
                                "sleep 555; echo never"], stdout=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while b"sleep 555" not in bx("top", "sigexec").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        job.send_signal(signal.SIGTERM)
        assert job.wait(60) == 143
        time.sleep(1)
        assert b"sleep 555" not in bx("top", "sigexec").stdout
    finally:
        bx("rm", "-f", "sigexec")


INTERLEAVED = "for i in $(seq 100); do echo out$i; echo err$i >&2; done"
IN_ORDER = "".join(f"out{i}\nerr{i}\n" for i in range(1, 101)).encode()


def merged(*args: str) -> bytes:
    """The output of `boxlite ARGS 2>&1` (stdin: a line for -i), less boxlite's own
    warnings (a first boot's "KVM is not usable")."""
    proc = subprocess.run([boxlite_bin(), *args], input=b"in\n", stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout
    return b"".join(line for line in proc.stdout.splitlines(keepends=True)
                    if not line.startswith(b"boxlite: warning: "))


def test_output_to_one_file_keeps_the_order_it_was_written_in() -> None:
    """`boxlite ... 2>&1` (a CI log): the process writes stdout and stderr to one pipe,
    as a shell's 2>&1 gives it, so the lines come in the order written (run --rm, exec:
    nothing is kept of it); apart, each stream goes to its own place. A kept box's log
    keeps the two apart, as docker's (`logs 2>/dev/null`)."""
    assert merged("run", "--rm", IMAGE, "sh", "-c", INTERLEAVED) == IN_ORDER
    assert merged("run", "--rm", "-i", IMAGE, "sh", "-c", "read l; " + INTERLEAVED) == IN_ORDER
    kept = merged("run", "--name", "merged", IMAGE, "sh", "-c", "echo out; echo err >&2")
    assert sorted(kept.split()) == [b"err", b"out"]
    logged = bx("logs", "merged")
    assert (logged.stdout, logged.stderr) == (b"out\n", b"err\n")
    assert bx("rm", "merged").returncode == 0
    assert bx("run", "-d", "--name", "merged", IMAGE, "sleep", "600").returncode == 0
    try:
        assert merged("exec", "merged", "sh", "-c", INTERLEAVED) == IN_ORDER
        assert merged("exec", "-i", "merged", "sh", "-c", "read l; " + INTERLEAVED) == IN_ORDER
        apart = bx("exec", "merged", "sh", "-c", "echo out; echo err >&2")
        assert (apart.stdout, apart.stderr) == (b"out\n", b"err\n")
    finally:
        bx("rm", "-f", "merged")


@pytest.mark.parametrize(("hangup", "command", "ready", "code"), [
    ("signal", ["sh", "-c", 'trap "exit 7" HUP; echo ready; while :; do sleep 0.1; done'],
     b"ready", 7),
    # (a shell at its prompt: a hangup, not the ^D of a clean exit, 0)
    ("closed terminal", ["bash", "--norc"], b"# ", 128 + signal.SIGHUP),
])
def test_a_tty_session_passes_a_hangup_to_its_process(e2e_home: Path, hangup: str,
                                                       command: list[str], ready: bytes,
                                                       code: int) -> None:
    """`run -it` whose terminal goes away (SIGHUP to the CLI; or the terminal itself
    closed, a dropped ssh: then its reads and writes fail too): the process gets the
    hangup, as on a host, instead of running on alone on a pty nobody reads; the CLI
    exits with the process's code (it was 125 on a closed terminal, and a shell got a
    ^D and exited 0)."""
    pid, master = pty.fork()
    if pid == 0:  # the child: the CLI, on the pty
        os.execv(boxlite_bin(), [boxlite_bin(), "run", "--rm", "-it", "--name", "hup", IMAGE,
                                 *command])
    try:
        seen = b""
        deadline = time.monotonic() + 240
        while ready not in seen and time.monotonic() < deadline:
            ready_fds, _, _ = select.select([master], [], [], 1)
            if ready_fds:
                seen += os.read(master, 4096)
        assert ready in seen, seen
        if hangup == "signal":
            os.kill(pid, signal.SIGHUP)
        else:
            os.close(master)
            master = -1
        deadline = time.monotonic() + 120
        status = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # (drain: the CLI may write on)
                if master >= 0 and select.select([master], [], [], 0.2)[0]:
                    os.read(master, 4096)
            if master < 0:
                time.sleep(0.2)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        else:
            pytest.fail("the CLI did not end")
        assert os.waitstatus_to_exitcode(status) == code
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if master >= 0:
            os.close(master)
        bx("rm", "-f", "hup")
    assert not [p for p in vm_processes(e2e_home) if "hup" in p]


def test_stop_does_not_wait_for_a_reader_that_stopped_reading(e2e_home: Path) -> None:
    """`boxlite run IMAGE yes | sleep 300`: the pipe fills and stays full. A stop still
    ends the box as any stop does (its shim gives up on that reader), and records it."""
    r, w = os.pipe()  # (read by no one: what `| sleep 300` is)
    proc = subprocess.Popen([boxlite_bin(), "run", "--name", "stalled", IMAGE, "yes"],
                            stdout=w, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(w)
    try:
        deadline = time.monotonic() + 240
        while bx("inspect", "-f", "{{.Status}}", "stalled").stdout != b"running\n":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.5)
        time.sleep(2)  # (the pipe is full by now)
        stopped = bx("stop", "-t", "1", "stalled", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        record = json.loads(bx("inspect", "stalled").stdout)[0]
        assert record["status"] == "exited", record
        assert record["exit_code"] == 143 and record["error"] is None, record
        assert record["finished_at"] is not None
        proc.wait(60)  # (the CLI hears the box ended; what it could not write is lost)
    finally:
        os.close(r)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        bx("rm", "-f", "stalled")


@pytest.mark.parametrize("how", ["run", "exec", "cp"])
def test_input_on_a_non_blocking_pipe_arrives_whole(how: str, tmp_path: Path) -> None:
    """A CI runner's stdin left O_NONBLOCK, fed slowly: all of it reaches the box (it
    was cut at the first EAGAIN, with exit 0 and not a word)."""
    import hashlib
    import io
    import tarfile

    data = os.urandom(100_000) * 8
    if how == "cp":
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as archive:
            member = tarfile.TarInfo("fed")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
        data = tar.getvalue()
    argv = {"run": ["run", "--rm", "-i", IMAGE, "sha256sum"],
            "exec": ["exec", "-i", "nonblock", "sha256sum"],
            "cp": ["cp", "-", "nonblock:/tmp"]}[how]
    if how != "run":
        assert bx("run", "-d", "--name", "nonblock", IMAGE, "sleep", "600").returncode == 0
    try:
        r, w = os.pipe()
        os.set_blocking(r, False)
        proc = subprocess.Popen([boxlite_bin(), *argv], stdin=r, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        os.close(r)
        for start in range(0, len(data), 100_000):  # (in pieces, with pauses between)
            os.write(w, data[start:start + 100_000])
            time.sleep(0.1)
        os.close(w)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        if how == "cp":
            out = bx("exec", "nonblock", "sha256sum", "/tmp/fed").stdout
            data = data[512:512 + 800_000]  # (the member's own bytes, after its header)
        assert out.split()[0].decode() == hashlib.sha256(data).hexdigest()
    finally:
        bx("rm", "-f", "nonblock")


def _killed_cli_pipes_end(args: list[str]) -> None:
    """`boxlite ARGS sh -c ...` on pipes, killed (SIGKILL) once its process says ready:
    both pipes' readers see their end while that process still runs in the box, as
    when docker's client dies (`| tee` in a CI step that timed out does not hang)."""
    proc = subprocess.Popen([boxlite_bin(), *args, "sh", "-c", "echo ready; exec sleep 600"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 240)
        assert ready and proc.stdout.readline() == b"ready\n"
        proc.kill()
        proc.wait(30)
        assert _rest_until_end(proc.stdout.fileno()) == b""
        _rest_until_end(proc.stderr.fileno())  # (what it said before: warnings)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
        proc.wait()


def _rest_until_end(fd: int, wait_s: float = 60) -> bytes:
    """What a pipe has left, read until its end (failing if that does not come)."""
    rest = b""
    deadline = time.monotonic() + wait_s
    while select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        if not (chunk := os.read(fd, 65536)):
            return rest
        rest += chunk
    raise AssertionError(f"the pipe did not end (it had {rest!r})")


def test_a_killed_run_or_exec_cli_lets_its_pipes_end_and_the_box_runs_on() -> None:
    try:
        _killed_cli_pipes_end(["run", "--name", "cli-killed", IMAGE])
        assert bx("inspect", "-f", "{{.State.Status}}", "cli-killed").stdout == b"running\n"
        _killed_cli_pipes_end(["exec", "cli-killed"])
        top = bx("top", "cli-killed").stdout.decode()
        assert top.count("sleep 600") == 2  # (both processes run on)
    finally:
        bx("rm", "-f", "cli-killed")
