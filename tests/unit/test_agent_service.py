"""The real agent (``python -m boxlite_agent --local``: the gRPC service with execs
chrooted to ``/``) in a process of its own, as in the VM, driven over its unix socket.

A separate process, because an agent that forks execs must run with grpc's fork
handlers off (init sets GRPC_ENABLE_FORK_SUPPORT=0); in the pytest process they can
stall a fork for seconds. Needs root (chroot, setuid); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

import grpc
from boxlite_agent import console
from boxlite_agent.bridge import PortBridge, connect_unix
from boxlite_agent.pb import agent_pb2 as pb
from boxlite_agent.pb import agent_pb2_grpc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, setuid)")

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
T = 30  # seconds: deadline of every RPC


AGENT_DIR = str(Path(__file__).resolve().parents[2] / "guest-agent")


class Agent:
    """A client of an agent process."""

    def __init__(self, sock: Path, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.channel = grpc.insecure_channel(f"unix:{sock}")
        grpc.channel_ready_future(self.channel).result(timeout=T)
        self.stub: Any = agent_pb2_grpc.AgentStub(self.channel)  # type: ignore[no-untyped-call]

    def exec(self, argv: list[str], **kw: object) -> pb.ExecResponse:
        kw.setdefault("hold_output", True)
        r: pb.ExecResponse = self.stub.Exec(pb.ExecRequest(argv=argv, **kw), timeout=T)  # type: ignore[arg-type]
        return r

    def attach(self, exec_id: str) -> tuple[bytes, bytes]:
        out, err = bytearray(), bytearray()
        for chunk in self.stub.Attach(pb.AttachRequest(exec_id=exec_id), timeout=T):
            (out if chunk.stream == pb.OutputChunk.STDOUT else err).extend(chunk.data)
        return bytes(out), bytes(err)

    def wait(self, exec_id: str) -> pb.WaitResponse:
        w: pb.WaitResponse = self.stub.Wait(pb.WaitRequest(exec_id=exec_id), timeout=T)
        return w

    def run(self, argv: list[str], **kw: object) -> tuple[bytes, bytes, pb.WaitResponse]:
        r = self.exec(argv, **kw)
        assert not r.error, r.error
        out, err = self.attach(r.exec_id)
        return out, err, self.wait(r.exec_id)

    def input(self, exec_id: str, *chunks: bytes, close: bool = False) -> None:
        def gen() -> Iterator[pb.InputChunk]:
            yield pb.InputChunk(exec_id=exec_id)
            for c in chunks:
                yield pb.InputChunk(data=c)
            if close:
                yield pb.InputChunk(close=True)

        self.stub.Input(gen(), timeout=T)

    def close(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def start_agent_process(sock: Path, poll_max_ms: int | None = None) -> subprocess.Popen[bytes]:
    """`poll_max_ms`: the agent process's process.POLL_MAX_MS (set before it serves)."""
    env = dict(os.environ, PYTHONPATH=AGENT_DIR)
    serve = ["-m", "boxlite_agent"]
    if poll_max_ms is not None:
        serve = ["-c", f"from boxlite_agent import process; process.POLL_MAX_MS = {poll_max_ms:d}; "
                 "import runpy; runpy.run_module('boxlite_agent', run_name='__main__', "
                 "alter_sys=True)"]
    argv = [sys.executable, *serve, "--local", "--listen", f"unix:{sock}"]
    proc = subprocess.Popen(argv, env=env, cwd="/")
    deadline = time.monotonic() + T
    while not sock.exists():
        assert proc.poll() is None, "the agent exited"
        assert time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.01)
    return proc


def start_agent(sock: Path, poll_max_ms: int | None = None) -> Agent:
    return Agent(sock, start_agent_process(sock, poll_max_ms))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    a = start_agent(tmp_path_factory.mktemp("agent") / "agent.sock")
    yield a
    a.close()


def code_of(e: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return e.value.code()


# -- basics ---------------------------------------------------------------------------


def test_ping(agent: Agent) -> None:
    before = time.time_ns()
    r = agent.stub.Ping(pb.PingRequest(), timeout=T)
    after = time.time_ns()
    assert r.agent_version and r.kernel == os.uname().release and r.uptime_s > 0
    assert before <= r.clock_ns <= after  # (its wall clock: this host's, here)


def test_a_resume_init_steps_the_clock_and_sets_nothing_else() -> None:
    """clocksync's step (an Init with resume, nothing but clock_step_ns): the guest
    steps its clock by that much; it sets no clock and mixes no entropy in."""
    from boxlite_agent.guest import LocalGuest
    from boxlite_agent.service import AgentService

    guest = LocalGuest()
    AgentService(guest).Init(pb.InitRequest(resume=True, clock_step_ns=-12_345),
                             cast(grpc.ServicerContext, None))
    assert (guest.clock_steps, guest.resync_calls) == ([-12_345], [(0, b"")])


def test_a_warm_up_ping_answers_without_a_helper(agent: Agent) -> None:
    """PingRequest.warm_up (a spare VM's) is best effort: no exec helper here, no error."""
    r = agent.stub.Ping(pb.PingRequest(warm_up=True), timeout=T)
    assert r.agent_version


def test_init_sets_the_hostname_execs_see(agent: Agent) -> None:
    init = pb.InitRequest(hostname="box-test", clock_ns=1, entropy=b"x", rootfs_serial="s")
    agent.stub.Init(init, timeout=T)  # LocalGuest: only the hostname is used
    assert agent.run(["sh", "-c", "echo $HOSTNAME"])[0] == b"box-test\n"
    with pytest.raises(grpc.RpcError) as e:
        agent.stub.Init(pb.InitRequest(hostname="bad host!"), timeout=T)
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT


def test_init_starts_the_main_process_once(agent: Agent) -> None:
    main = pb.ExecRequest(argv=["sh", "-c", "echo from main; exit 3"], exec_id="main",
                          hold_output=True)
    first = agent.stub.Init(pb.InitRequest(hostname="box-main", main=main), timeout=T)
    assert first.main.exec_id == "main" and first.main.pid > 0
    # an Init sent again (its answer lost on the way) gets that same process
    again = agent.stub.Init(pb.InitRequest(hostname="box-main", main=main), timeout=T)
    assert (again.main.exec_id, again.main.pid) == ("main", first.main.pid)
    assert agent.attach("main") == (b"from main\n", b"")
    assert agent.wait("main").exit_code == 3
    # a main process that cannot start is answered like Exec's
    missing = pb.ExecRequest(argv=["no-such-program"], exec_id="other")
    r = agent.stub.Init(pb.InitRequest(main=missing), timeout=T)
    assert r.main.error_exit_code == 127 and "no-such-program" in r.main.error
    assert not agent.stub.Init(pb.InitRequest(), timeout=T).HasField("main")


def test_the_boxs_limits_stay_once_its_init_is_done(tmp_path: Path) -> None:
    """A process of the box that reaches the agent cannot lift its --cap-drop,
    --pids-limit, --cpus, --read-only or --tmpfs with an Init of its own; the shim's
    Init sent again is answered."""
    agent = start_agent(tmp_path / "agent.sock")
    try:
        main = pb.ExecRequest(argv=["sleep", "30"], exec_id="main")
        box = pb.InitRequest(hostname="limited", main=main, cap_drop=1 << 13, pids_limit=50,
                             cpu_limit=0.5, read_only=True,
                             tmpfs=[pb.TmpfsMount(target="/tmp", mode=0o1777)])
        for bad in (pb.InitRequest(cpu_limit=-1.0), pb.InitRequest(cpu_limit=float("nan")),
                    pb.InitRequest(cpu_limit=float("inf")),
                    pb.InitRequest(tmpfs=[pb.TmpfsMount(target="/proc/sys")])):
            with pytest.raises(grpc.RpcError) as e:
                agent.stub.Init(bad, timeout=T)
            assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT
        agent.stub.Init(box, timeout=T)  # (LocalGuest: no helper, the main cannot drop)
        agent.stub.Init(box, timeout=T)  # the same again: fine
        tmp = [pb.TmpfsMount(target="/tmp", mode=0o1777)]
        same = {"cap_drop": 1 << 13, "pids_limit": 50, "cpu_limit": 0.5, "read_only": True,
                "tmpfs": tmp}
        for lifted in (pb.InitRequest(hostname="limited", **dict(same, cap_drop=0)),
                       pb.InitRequest(**dict(same, pids_limit=0)),
                       pb.InitRequest(**dict(same, cpu_limit=0)),
                       pb.InitRequest(**dict(same, read_only=False)),
                       pb.InitRequest(**dict(same, tmpfs=[pb.TmpfsMount(target="/usr")])),
                       pb.InitRequest(main=main, cap_drop=0, pids_limit=0)):
            with pytest.raises(grpc.RpcError) as e:
                agent.stub.Init(lifted, timeout=T)
            assert code_of(e) == grpc.StatusCode.FAILED_PRECONDITION
            assert "its limits stay" in (e.value.details() or "")
        agent.stub.Init(pb.InitRequest(clock_ns=1, resume=True), timeout=T)  # a checkpoint's
    finally:
        agent.close()


def test_processes_lists_what_runs_with_its_argv(agent: Agent) -> None:
    started = agent.exec(["sleep", "30"])
    try:
        listed = agent.stub.Processes(pb.ProcessesRequest(), timeout=T).processes
        mine = [p for p in listed if p.pid == started.pid]
        assert len(mine) == 1 and list(mine[0].argv) == ["sleep", "30"]
        assert mine[0].name == "sleep" and mine[0].state in "RS"
        assert [p.pid for p in listed] == sorted(p.pid for p in listed)
    finally:
        agent.stub.Signal(pb.SignalRequest(exec_id=started.exec_id, signal=9), timeout=T)
        agent.wait(started.exec_id)


@pytest.mark.parametrize("code", [0, 1, 7])
def test_exit_codes_and_streams(agent: Agent, code: int) -> None:
    out, err, w = agent.run(["sh", "-c", f"echo out; echo err >&2; exit {code}"])
    assert (out, err) == (b"out\n", b"err\n")
    assert (w.exit_code, w.signal, w.timed_out) == (code, 0, False)


def test_merged_streams_are_one_pipe_in_the_order_written(agent: Agent) -> None:
    """merge_stderr (the client's stdout and stderr are one file): what the process
    writes to either comes as STDOUT, in its order, however fast it writes."""
    script = ("for i in $(seq 200); do echo out$i; echo err$i >&2; done; "
              "readlink /proc/self/fd/1 /proc/self/fd/2")
    out, err, w = agent.run(["sh", "-c", script], merge_stderr=True)
    lines = out.decode().splitlines()
    assert lines[:400] == [f"{s}{i}" for i in range(1, 201) for s in ("out", "err")]
    assert err == b"" and w.exit_code == 0
    one, two = lines[400:402]
    assert one == two and one.startswith("pipe:"), lines[400:]  # (what `2>&1` gives)
    out, err, _ = agent.run(["sh", "-c", "echo o; echo e >&2"], merge_stderr=True, tty=True)
    assert b"o" in out and b"e" in out and err == b""  # (a tty is one stream anyway)


def test_not_found_is_127(agent: Agent) -> None:
    r = agent.exec(["no-such-command-xyz"])
    assert r.error_exit_code == 127
    assert r.error == 'exec: "no-such-command-xyz": executable file not found in $PATH'
    assert r.pid == 0
    # the failed exec is still known: Attach ends at once, Wait reports the code
    assert agent.attach(r.exec_id) == (b"", b"")
    assert agent.wait(r.exec_id).exit_code == 127
    r = agent.exec(["/no/such/path"])
    assert r.error_exit_code == 127 and "no such file or directory" in r.error


def test_not_executable_is_126(agent: Agent) -> None:
    r = agent.exec(["/etc/passwd"])
    assert (r.error_exit_code, r.error) == (126, 'exec: "/etc/passwd": permission denied')
    r = agent.exec(["/tmp"])
    assert (r.error_exit_code, r.error) == (126, 'exec: "/tmp": is a directory')
    r = agent.exec(["sh"], cwd="/etc/passwd")
    assert r.error_exit_code == 126 and "not a directory" in r.error


def test_killed_is_128_plus_signal(agent: Agent) -> None:
    r = agent.exec(["sleep", "100"])
    agent.stub.Signal(pb.SignalRequest(exec_id=r.exec_id, signal=9), timeout=T)
    w = agent.wait(r.exec_id)
    assert (w.exit_code, w.signal, w.timed_out) == (137, 9, False)
    r = agent.exec(["sleep", "100"])
    agent.stub.Signal(pb.SignalRequest(exec_id=r.exec_id, signal=15), timeout=T)
    assert agent.wait(r.exec_id).exit_code == 143
    # signalling a finished process is not an error
    agent.stub.Signal(pb.SignalRequest(exec_id=r.exec_id, signal=9), timeout=T)
    with pytest.raises(grpc.RpcError) as e:
        agent.stub.Signal(pb.SignalRequest(exec_id=r.exec_id, signal=0), timeout=T)
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("group", [True, False])
def test_a_group_signal_reaches_what_the_process_started(agent: Agent, tmp_path: Path,
                                                          group: bool) -> None:
    """An exec's client ended by SIGTERM (`timeout 600 boxlite exec box make test`):
    the shell and the job it runs end, as `timeout` ends a host job; to the process
    alone (a box's main, as docker's run), its children live on."""
    pid_file = tmp_path / "child"
    r = agent.exec(["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"])
    deadline = time.monotonic() + T
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child = int(pid_file.read_text())
    agent.stub.Signal(pb.SignalRequest(exec_id=r.exec_id, signal=15, group=group), timeout=T)
    assert agent.wait(r.exec_id).exit_code == 143
    time.sleep(0.2)
    try:
        alive = _alive(child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, 9)
    assert alive is not group


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_is_124(agent: Agent) -> None:
    # (Not killed, it would outlive the calls' deadline T: the Attach would fail.)
    out, _, w = agent.run(["sh", "-c", "echo started; sleep 3600"], timeout_s=0.5)
    assert out == b"started\n"
    assert (w.exit_code, w.signal, w.timed_out) == (124, 9, True)


def test_a_timeout_longer_than_one_poll_still_waits_and_kills(tmp_path: Path) -> None:
    """poll() takes at most 2**31-1 ms (~24.8 days): a longer --timeout is waited out in
    several polls (here each made 0.1 s, in an agent of its own), not an OverflowError in
    the watcher."""
    agent = start_agent(tmp_path / "agent.sock", poll_max_ms=100)
    try:
        # It outlives a few polls and is not killed at the end of one: it exits itself.
        _, _, quick = agent.run(["sh", "-c", "sleep 0.5; exit 3"], timeout_s=3600)
        assert (quick.exit_code, quick.timed_out) == (3, False)
        # (Not killed, it would outlive the calls' deadline T: the Attach would fail.)
        _, _, slow = agent.run(["sleep", "3600"], timeout_s=0.5)
        assert (slow.exit_code, slow.timed_out) == (124, True)
    finally:
        agent.close()


def test_user_cwd_and_environment(agent: Agent, tmp_path: Path) -> None:
    cwd = tmp_path / "new" / "dir"
    os.chmod(tmp_path, 0o755)
    script = 'echo "$(id -u):$(id -g):$(id -G)|$(pwd)|$HOME|$HOSTNAME|$FOO|${TERM-unset}"'
    agent.stub.Init(pb.InitRequest(hostname="box-env"), timeout=T)
    # An exec's missing working directory fails it (`docker exec -w`), creating nothing.
    r = agent.exec(["true"], cwd=str(cwd))
    assert (r.error_exit_code, r.error) == (126, f'exec: cwd "{cwd}": no such file or directory')
    assert not (tmp_path / "new").exists()
    # A box's main process creates it (`docker run -w`).
    out, err, w = agent.run(["sh", "-c", script], cwd=str(cwd), env=["FOO=bar"], make_cwd=True)
    assert w.exit_code == 0, err
    assert cwd.is_dir()
    assert out.decode().startswith(f"0:0:0|{cwd}|/root|box-env|bar|unset")
    out, _, _ = agent.run(["sh", "-c", "echo $(id -u):$(id -g):$(id -G)"], user="1234:5678")
    assert out == b"1234:5678:5678\n"
    out, _, _ = agent.run(["sh", "-c", "id -un; echo $HOME"], user="nobody")
    assert out.decode().split() == ["nobody", pwd.getpwnam("nobody").pw_dir]
    # An exec as a user the box does not have cannot start (docker's 126).
    r = agent.exec(["true"], user="no-such-user-xyz")
    assert (r.error_exit_code, r.error) == (
        126, "unable to find user no-such-user-xyz: no matching entries in passwd file")
    r = agent.exec(["true"], user="root:no-such-group")
    assert (r.error_exit_code, r.error) == (
        126, "unable to find group no-such-group: no matching entries in group file")


def test_children_do_not_inherit_the_agents_oom_protection(agent: Agent) -> None:
    # The agent writes -1000 in the VM; lowering needs CAP_SYS_RESOURCE, raising not.
    with open(f"/proc/{agent.proc.pid}/oom_score_adj", "w") as f:
        f.write("500")
    out, _, _ = agent.run(["cat", "/proc/self/oom_score_adj"])
    assert out == b"0\n"


def test_stdin_false_reads_dev_null(agent: Agent) -> None:
    out, _, w = agent.run(["cat"])
    assert (out, w.exit_code) == (b"", 0)
    r = agent.exec(["true"])
    with pytest.raises(grpc.RpcError) as e:
        agent.input(r.exec_id, b"x")
    assert code_of(e) == grpc.StatusCode.FAILED_PRECONDITION


# -- stdin, tty -----------------------------------------------------------------------


def test_stdin_round_trip_with_eof(agent: Agent) -> None:
    data = os.urandom(1 << 20)
    r = agent.exec(["cat"], stdin=True)
    agent.input(r.exec_id, data[:1000], data[1000:])  # the end of the stream is EOF
    out, _ = agent.attach(r.exec_id)
    assert out == data
    assert agent.wait(r.exec_id).exit_code == 0
    r = agent.exec(["sh", "-c", "cat; echo after-eof"], stdin=True)
    agent.input(r.exec_id, b"x", close=True)
    assert agent.attach(r.exec_id)[0] == b"xafter-eof\n"
    # writing to a process that has exited is not an error
    r = agent.exec(["true"], stdin=True)
    agent.wait(r.exec_id)
    agent.input(r.exec_id, b"late data", close=True)


def test_tty_reports_its_size(agent: Agent) -> None:
    code = "import os,sys; print(os.isatty(0), os.get_terminal_size(), os.environ['TERM'])"
    out, err, w = agent.run([PY, "-c", code], tty=True, rows=30, cols=100)
    assert out == b"True os.terminal_size(columns=100, lines=30) xterm\r\n"
    assert err == b"" and w.exit_code == 0


def test_a_tty_process_that_exits_at_once_keeps_the_end_of_its_output(agent: Agent) -> None:
    """What is still in the pty's flip buffers when the process exits (FIONREAD does
    not count it) is its output too: `exec -t` lost the last KiB of one in three."""
    code = "import os; os.write(1, b'z' * 65536 + b'END'); os._exit(0)"
    for _ in range(8):
        out, _, w = agent.run([PY, "-c", code], tty=True, rows=24, cols=80)
        assert (len(out), out[-3:], w.exit_code) == (65539, b"END", 0)


def test_tty_input_and_ctrl_d(agent: Agent) -> None:
    r = agent.exec(["cat"], tty=True, stdin=True, rows=24, cols=80)
    agent.input(r.exec_id, b"hello\n", close=True)  # close on a tty types ^D
    out, _ = agent.attach(r.exec_id)
    assert out == b"hello\r\nhello\r\n"  # the echo, then cat's copy
    assert agent.wait(r.exec_id).exit_code == 0


def test_resize_sends_sigwinch(agent: Agent) -> None:
    code = (
        "import os, signal, time\n"
        "seen = []\n"
        "signal.signal(signal.SIGWINCH, lambda *a: seen.append(1))\n"
        "print('ready', flush=True)\n"
        "while not seen: time.sleep(0.01)\n"
        "print(os.get_terminal_size())\n"
    )
    r = agent.exec([PY, "-c", code], tty=True, rows=24, cols=80)
    stream = agent.stub.Attach(pb.AttachRequest(exec_id=r.exec_id), timeout=T)
    got = b""
    for chunk in stream:
        got += chunk.data
        if b"ready" in got:
            break
    agent.stub.Resize(pb.ResizeRequest(exec_id=r.exec_id, rows=40, cols=120), timeout=T)
    for chunk in stream:
        got += chunk.data
    assert got.endswith(b"os.terminal_size(columns=120, lines=40)\r\n")
    assert agent.wait(r.exec_id).exit_code == 0
    r = agent.exec(["true"])
    with pytest.raises(grpc.RpcError) as e:
        agent.stub.Resize(pb.ResizeRequest(exec_id=r.exec_id, rows=1, cols=1), timeout=T)
    assert code_of(e) == grpc.StatusCode.FAILED_PRECONDITION


# -- output buffering -----------------------------------------------------------------

PRODUCER = (
    "import hashlib, os, sys\n"
    "h = hashlib.sha256()\n"
    "for _ in range({n}):\n"
    "    b = os.urandom(65536); h.update(b); sys.stdout.buffer.write(b)\n"
    "sys.stdout.flush(); sys.stderr.write(h.hexdigest())\n"
)


def test_50mb_output_is_byte_exact(agent: Agent) -> None:
    r = agent.exec([PY, "-c", PRODUCER.format(n=800)])
    h = hashlib.sha256()
    size = 0
    err = b""
    for chunk in agent.stub.Attach(pb.AttachRequest(exec_id=r.exec_id), timeout=T):
        assert len(chunk.data) <= 65536
        if chunk.stream == pb.OutputChunk.STDOUT:
            h.update(chunk.data)
            size += len(chunk.data)
        else:
            err += chunk.data
    assert size == 800 * 65536
    assert h.hexdigest() == err.decode()
    assert agent.wait(r.exec_id).exit_code == 0


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_hold_output_blocks_the_process_until_attached(agent: Agent) -> None:
    r = agent.exec([PY, "-c", PRODUCER.format(n=320)])  # 20 MiB, far over the buffer
    time.sleep(1.0)
    assert _state(r.pid) == "S"  # blocked writing: backpressure, nothing dropped
    wait = ThreadPoolExecutor(1).submit(agent.wait, r.exec_id)
    time.sleep(0.2)
    assert not wait.done()
    out, err = agent.attach(r.exec_id)
    assert len(out) == 320 * 65536 and hashlib.sha256(out).hexdigest() == err.decode()
    assert wait.result(T).exit_code == 0


def test_output_before_attach_is_not_lost(agent: Agent) -> None:
    r = agent.exec(["sh", "-c", "echo one; echo two >&2; echo three"], hold_output=False)
    assert agent.wait(r.exec_id).exit_code == 0  # done before anybody attached
    assert agent.attach(r.exec_id) == (b"one\nthree\n", b"two\n")
    assert agent.attach(r.exec_id) == (b"", b"")  # drained


def test_without_hold_a_detached_process_never_blocks(agent: Agent) -> None:
    r = agent.exec([PY, "-c", PRODUCER.format(n=80)], hold_output=False)  # 5 MiB
    assert agent.wait(r.exec_id).exit_code == 0
    out, err = agent.attach(r.exec_id)
    assert 0 < len(out) <= (1 << 20) + 65536  # only the newest bytes were kept
    assert len(err) == 64  # the digest, written last, is kept


def test_one_attacher_at_a_time_and_reattach(agent: Agent) -> None:
    r = agent.exec([PY, "-c", PRODUCER.format(n=320)])
    first = agent.stub.Attach(pb.AttachRequest(exec_id=r.exec_id), timeout=T)
    got1 = bytearray(next(first).data)
    with pytest.raises(grpc.RpcError) as e:
        agent.attach(r.exec_id)
    assert code_of(e) == grpc.StatusCode.FAILED_PRECONDITION, e.value
    for chunk in first:
        got1 += chunk.data
        if len(got1) > 1 << 20:
            break
    first.cancel()
    time.sleep(0.2)
    out, err = agent.attach(r.exec_id)  # the rest, for the next attacher
    assert agent.wait(r.exec_id).exit_code == 0
    total = 320 * 65536
    # What was in flight when the first client left may be lost; nothing else is.
    assert len(got1) + len(out) <= total
    assert len(out) >= total - len(got1) - (8 << 20)
    assert len(err) == 64


def test_background_child_holding_stdout_does_not_hang_wait(agent: Agent) -> None:
    # (Waited for, the child would outlive the calls' deadline T: they would fail.)
    r = agent.exec(["sh", "-c", "sleep 3600 & echo done"])
    try:
        out, _ = agent.attach(r.exec_id)
        assert out == b"done\n"
        assert agent.wait(r.exec_id).exit_code == 0
    finally:
        os.killpg(r.pid, signal.SIGKILL)


# -- the exec table -------------------------------------------------------------------


def test_unknown_exec_is_not_found(agent: Agent) -> None:
    calls: list[Callable[[], object]] = [
        lambda: agent.wait("nope"),
        lambda: agent.attach("nope"),
        lambda: agent.stub.Signal(pb.SignalRequest(exec_id="nope", signal=9), timeout=T),
        lambda: agent.stub.Resize(pb.ResizeRequest(exec_id="nope", rows=1, cols=1), timeout=T),
        lambda: agent.input("nope", b"x"),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert code_of(e) == grpc.StatusCode.NOT_FOUND


def test_caller_chosen_ids(agent: Agent) -> None:
    r = agent.exec(["sleep", "100"], exec_id="main")
    assert r.exec_id == "main"
    with pytest.raises(grpc.RpcError) as e:
        agent.exec(["true"], exec_id="main")
    assert code_of(e) == grpc.StatusCode.ALREADY_EXISTS
    agent.stub.Signal(pb.SignalRequest(exec_id="main", signal=9), timeout=T)
    assert agent.wait("main").exit_code == 137
    out, _, w = agent.run(["echo", "reused"], exec_id="main")  # a finished id can be reused
    assert (out, w.exit_code) == (b"reused\n", 0)


def test_many_waiters(agent: Agent) -> None:
    r = agent.exec(["sh", "-c", "sleep 0.3; exit 3"])
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: agent.wait(r.exec_id).exit_code, range(8)))
    assert codes == [3] * 8


def test_16_concurrent_execs_with_attach_input_wait(agent: Agent) -> None:
    def one(i: int) -> None:
        data = os.urandom(256 * 1024 + i)
        r = agent.exec(["cat"], stdin=True)
        with ThreadPoolExecutor(3) as pool:
            attached = pool.submit(agent.attach, r.exec_id)
            waited = pool.submit(agent.wait, r.exec_id)
            pool.submit(
                agent.input, r.exec_id, *[data[j : j + 65536] for j in range(0, len(data), 65536)]
            ).result(T)
            assert attached.result(T)[0] == data
            assert waited.result(T).exit_code == 0

    with ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(one, i) for i in range(16)]:
            f.result(60)


def test_shutdown_kills_running_execs(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "agent.sock")
    try:
        r = agent.exec(["sleep", "100"])
        agent.stub.Shutdown(pb.ShutdownRequest(), timeout=T)
        with pytest.raises(grpc.RpcError) as e:
            agent.exec(["true"])  # answered by the agent, or by grpc once it is gone
        assert code_of(e) in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE)
        assert agent.proc.wait(10) == 0  # LocalGuest: shutting down stops the server
        assert not os.path.exists(f"/proc/{r.pid}") or _state(r.pid) == "Z"
    finally:
        agent.close()


# -- the whole path: gRPC client → "chardev" socket → pty "port" → bridge → server -----


class FakeChardev:
    """QEMU's ``-chardev socket,server=on`` + virtserialport, emulated with a pty: a
    client connection opens the pty slave (the guest port sees the host connect),
    its end closes the slave (the port polls POLLHUP)."""

    def __init__(self, path: str) -> None:
        self.master, slave = os.openpty()
        self.name = os.ttyname(slave)
        os.close(slave)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen(1)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            slave = os.open(self.name, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(slave)
            try:
                self._pump(conn, slave)
            finally:
                os.close(slave)
                conn.close()

    @staticmethod
    def _pump(conn: socket.socket, slave: int) -> None:
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        poller.register(slave, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == slave:
                    conn.sendall(os.read(slave, 65536))
                    continue
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(slave, view) :]


def test_grpc_over_the_port_bridge_with_reconnects(tmp_path: Path) -> None:
    console.use_stderr()
    sock = tmp_path / "agent.sock"
    proc = start_agent_process(sock)
    chardev = FakeChardev(str(tmp_path / "chardev.sock"))
    bridge = PortBridge(lambda: chardev.master, connect_unix(str(sock)))
    stop = threading.Event()
    bridge_thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    bridge_thread.start()
    try:
        for round_ in range(3):  # each round is a new host connection (a new shim)
            # Without a subchannel pool of its own a new channel may reuse the old connection.
            channel = grpc.insecure_channel(
                f"unix:{tmp_path / 'chardev.sock'}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            stub: Any = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]
            assert stub.Ping(pb.PingRequest(), timeout=T).agent_version
            r = stub.Exec(pb.ExecRequest(argv=[PY, "-c", PRODUCER.format(n=16)], hold_output=True))
            out, err = bytearray(), bytearray()
            for chunk in stub.Attach(pb.AttachRequest(exec_id=r.exec_id), timeout=T):
                (out if chunk.stream == pb.OutputChunk.STDOUT else err).extend(chunk.data)
            assert len(out) == 16 * 65536 and hashlib.sha256(out).hexdigest() == err.decode()
            assert stub.Wait(pb.WaitRequest(exec_id=r.exec_id), timeout=T).exit_code == 0
            channel.close()
            assert bridge.upstreams_opened == round_ + 1  # a new HTTP/2 session per host
    finally:
        stop.set()
        bridge_thread.join(3)
        proc.kill()
        proc.wait(10)


# -- a host reader that went away (CloseOutput) ---------------------------------------


def _first_chunk(agent: Agent, exec_id: str) -> tuple[Any, bytes]:
    """The Attach stream of `exec_id`, once its first stdout bytes came."""
    stream = agent.stub.Attach(pb.AttachRequest(exec_id=exec_id), timeout=T)
    for chunk in stream:
        if chunk.stream == pb.OutputChunk.STDOUT and chunk.data:
            return stream, chunk.data
    raise AssertionError("no output")


def test_close_output_gives_the_writer_sigpipe_and_only_it(agent: Agent) -> None:
    """As `yes | head`: the writer into the closed pipe dies of SIGPIPE; the shell
    that started it goes on, and its stderr still arrives."""
    r = agent.exec(["sh", "-c", "yes; echo \"yes: $?\" >&2; exit 3"], hold_output=True)
    stream, first = _first_chunk(agent, r.exec_id)
    assert first.startswith(b"y\n")
    agent.stub.CloseOutput(pb.CloseOutputRequest(exec_id=r.exec_id,
                                                 stream=pb.OutputChunk.STDOUT), timeout=T)
    err = b"".join(c.data for c in stream if c.stream == pb.OutputChunk.STDERR)
    assert err == b"yes: 141\n"  # 128 + SIGPIPE, seen by the shell
    assert agent.wait(r.exec_id).exit_code == 3


def test_close_output_of_an_idle_writer_fails_its_next_write(agent: Agent) -> None:
    code = ("import os, sys, time\n"
            "print('ready', flush=True)\n"
            "time.sleep(1.5)\n"
            "try:\n"
            "    print('late', flush=True)\n"
            "except BrokenPipeError:\n"
            "    sys.stderr.write('EPIPE'); sys.stderr.flush(); os._exit(5)\n")
    r = agent.exec([PY, "-c", code])
    stream, first = _first_chunk(agent, r.exec_id)
    assert first == b"ready\n"
    agent.stub.CloseOutput(pb.CloseOutputRequest(exec_id=r.exec_id,
                                                 stream=pb.OutputChunk.STDOUT), timeout=T)
    rest = [(c.stream, c.data) for c in stream]
    assert rest == [(pb.OutputChunk.STDERR, b"EPIPE")]  # its first write failed
    assert agent.wait(r.exec_id).exit_code == 5


def test_close_output_of_an_ended_process_changes_nothing(agent: Agent) -> None:
    ended = agent.exec(["true"]).exec_id
    agent.wait(ended)
    agent.stub.CloseOutput(pb.CloseOutputRequest(exec_id=ended), timeout=T)
    assert agent.wait(ended).exit_code == 0
    with pytest.raises(grpc.RpcError) as e:
        agent.stub.CloseOutput(pb.CloseOutputRequest(exec_id="nosuch"), timeout=T)
    assert code_of(e) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        agent.stub.CloseOutput(pb.CloseOutputRequest(exec_id=ended, stream=7), timeout=T)  # type: ignore[arg-type]
    assert code_of(e) == grpc.StatusCode.INVALID_ARGUMENT


def test_close_output_of_a_tty_hangs_it_up(agent: Agent) -> None:
    r = agent.exec(["sh", "-c", "echo ready; exec sleep 30"], tty=True, rows=24, cols=80)
    stream, first = _first_chunk(agent, r.exec_id)
    assert first.startswith(b"ready")
    agent.stub.CloseOutput(pb.CloseOutputRequest(exec_id=r.exec_id), timeout=T)
    assert b"".join(c.data for c in stream).strip() == b""  # (its output is dropped)
    w = agent.wait(r.exec_id)
    assert (w.exit_code, w.signal) == (128 + signal.SIGHUP, signal.SIGHUP)


def test_a_hung_up_tty_fails_the_writes_of_a_process_that_ignores_sighup(agent: Agent) -> None:
    script = 'trap "" HUP; echo ready; while echo x; do sleep 0.01; done; exit 7'
    r = agent.exec(["sh", "-c", script], tty=True, rows=24, cols=80)
    stream, first = _first_chunk(agent, r.exec_id)
    assert first.startswith(b"ready")
    agent.stub.CloseOutput(pb.CloseOutputRequest(exec_id=r.exec_id), timeout=T)
    for _ in stream:
        pass
    assert agent.wait(r.exec_id).exit_code == 7  # its echo failed (EIO): the loop ended


def test_a_background_child_writing_on_does_not_keep_an_exec_running(agent: Agent) -> None:
    """Once the process exited, its output is what it left in the pipe: a background
    child that keeps the pipe open and writes on does not hold Attach and Wait."""
    script = "(while :; do echo bg; sleep 0.01; done) & echo main; exit 3"
    r = agent.exec(["sh", "-c", script])
    try:
        out, _ = agent.attach(r.exec_id)  # (ends: else DEADLINE_EXCEEDED after T)
        assert b"main\n" in out
        assert agent.wait(r.exec_id).exit_code == 3
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(r.pid, signal.SIGKILL)  # the child writes on, in its group


def test_a_background_child_of_an_exec_may_write_on_after_it(agent: Agent,
                                                               tmp_path: Path) -> None:
    """`exec sh -c 'server &'`: once the exec's process exited, what its background
    child writes goes nowhere, but its writes succeed (no SIGPIPE, no EPIPE): closing
    the pipe under it would kill it at its first log line."""
    mark = tmp_path / "after"
    script = (f"(sleep 1; echo late; echo late >&2; echo alive > {mark}; sleep 1; "
              f"echo later > {mark}) & echo main")
    r = agent.exec(["sh", "-c", script])
    try:
        out, _ = agent.attach(r.exec_id)
        assert out == b"main\n"
        assert agent.wait(r.exec_id).exit_code == 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (mark.exists()
                                                   and mark.read_text() == "later\n"):
            time.sleep(0.1)
        assert mark.read_text() == "later\n"  # it wrote (twice) and lived on
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(r.pid, signal.SIGKILL)
