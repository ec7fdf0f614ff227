"""The shim's first steps: the VMM starts before the heavy imports (shim/vmmproc.py),
a restore's memory file reaches it as an inherited fd, failures are handed on; the
first call to a booting agent waits for the connection, not for other errors."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from boxlite_cli.errors import BoxliteError, VmError
from boxlite_cli.shim.main import (
    GUEST_LINE_MAX,
    KEEP_FAILED_LOGS,
    Shim,
    agent_ended,
    console_tail,
    prune_kept_logs,
)
from boxlite_cli.shim.vmmproc import BootFailed, VmmProcess, start_early, start_vmm
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.pidfile import read_pidfile
from boxlite_cli.vmm.base import AgentChannel, VmSpec
from boxlite_cli.vmm.qmp import Qmp

# A stand-in VMM: copies what it reads from the fd named on its command line.
COPY_FD = "import os,sys; fd=int(sys.argv[1]); open(sys.argv[2],'wb').write(os.read(fd, 100))"


class FakeDriver:
    name = "fake"
    executable = "python3"

    def __init__(self, out: Path) -> None:
        self.out = out

    def binary(self) -> str | None:
        return sys.executable

    def check(self, spec: VmSpec) -> None:
        pass

    def restore_file(self, spec: VmSpec) -> Path | None:
        return Path(spec.restore_from) / "memory.state" if spec.restore_from else None

    def command(self, spec: VmSpec, restore_fd: int | None = None,
                ram_fd: int | None = None, disk_fd: int | None = None) -> list[str]:
        return [sys.executable, "-c", COPY_FD, str(restore_fd), str(self.out)]

    def agent_channel(self, spec: VmSpec) -> AgentChannel:
        raise NotImplementedError

    def control(self, spec: VmSpec, timeout_s: float = 10.0) -> Qmp:
        return Qmp(spec.control_socket, timeout_s)


def box(tmp_path: Path, restore_from: str = "") -> tuple[BoxFiles, Launch]:
    files = BoxFiles(tmp_path / "box")
    files.dir.mkdir()
    (tmp_path / "r").write_bytes(b"")  # (the disk: the VMM gets it open)
    vm = VmSpec(kernel=tmp_path / "k", initrd=tmp_path / "i", agent_root=tmp_path / "a",
                rootfs_disk=tmp_path / "r", console_log=files.console_log,
                agent_socket=files.dir / "run" / "vm.sock",
                control_socket=files.dir / "run" / "qmp.sock", restore_from=restore_from)
    launch = Launch(driver="qemu", vm=vm, boot_timeout_s=30)
    launch.save(files.dir / "vm.json")
    return files, launch


def test_the_memory_file_reaches_the_vmm_as_an_inherited_fd(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    (template / "memory.state").write_bytes(b"saved RAM")
    files, launch = box(tmp_path, restore_from=str(template))
    fds_before = set(os.listdir("/proc/self/fd"))
    started = start_vmm(files, launch, FakeDriver(tmp_path / "got"))
    assert started.process.wait(10) == 0
    assert (tmp_path / "got").read_bytes() == b"saved RAM"
    assert started.restore_begun
    assert set(os.listdir("/proc/self/fd")) <= fds_before | {"3"}, "our copy of the fd is closed"
    record = read_pidfile(files.vmm_pid)
    assert record is not None and record.pid == started.process.pid
    assert files.console_log.read_bytes() == b""


class StatusDriver(FakeDriver):
    """A stand-in VMM that copies its own /proc status."""

    def command(self, spec: VmSpec, restore_fd: int | None = None,
                ram_fd: int | None = None, disk_fd: int | None = None) -> list[str]:
        return ["cp", "/proc/self/status", str(self.out)]


def test_the_vmm_runs_without_transparent_huge_pages(tmp_path: Path) -> None:
    files, launch = box(tmp_path)
    started = start_vmm(files, launch, StatusDriver(tmp_path / "status"))
    assert started.process.wait(10) == 0
    status = (tmp_path / "status").read_text()
    assert "THP_enabled:\t0" in status
    assert "THP_enabled:\t1" in Path("/proc/self/status").read_text(), "ours is untouched"


def test_the_vmms_pre_exec_steps_load_no_library() -> None:
    """They run in a child forked from a shim that may be importing in another thread
    (a prestarted one): a dlopen there could wait forever on the loader's lock."""
    import subprocess

    script = ("import ctypes, sys\n"
              "from boxlite_cli.shim import vmmproc\n"
              "def no_dlopen(*args, **kwargs):\n"
              "    raise AssertionError('dlopen in a forked child')\n"
              "ctypes.CDLL = no_dlopen\n"
              "import os\n"
              "vmmproc._vmm_child_setup(os.getppid())\n"
              "from boxlite_cli.childdeath import die_with_parent\n"
              "die_with_parent(os.getppid())\n"
              "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_a_helper_child_whose_shim_died_before_it_was_set_up_ends() -> None:
    """(Its parent-death signal would never come: it was left to init already.)"""
    import subprocess

    script = ("import os\n"
              "from boxlite_cli.childdeath import die_with_parent\n"
              "die_with_parent(os.getppid() + 1)\n"
              "print('survived')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (1, "")


def test_a_cold_boot_passes_no_fd(tmp_path: Path) -> None:
    files, launch = box(tmp_path)
    started = start_vmm(files, launch, FakeDriver(tmp_path / "got"))
    assert started.process.wait(10) != 0  # int("None") fails: no fd was named
    assert not started.restore_begun


def test_a_missing_memory_file_fails_the_boot_before_any_vmm_starts(tmp_path: Path) -> None:
    files, launch = box(tmp_path, restore_from=str(tmp_path / "gone"))
    try:
        start_vmm(files, launch, FakeDriver(tmp_path / "got"))
    except BootFailed as e:
        assert "cannot read the memory snapshot" in str(e)
    else:
        raise AssertionError("no BootFailed")
    assert not files.vmm_pid.exists()


class GoneDriver(FakeDriver):
    """A VMM uninstalled since the box was checked (or never runnable)."""

    def command(self, spec: VmSpec, restore_fd: int | None = None,
                ram_fd: int | None = None, disk_fd: int | None = None) -> list[str]:
        return [str(self.out), "-version"]


def test_a_vmm_that_cannot_be_run_fails_the_boot_in_one_line(tmp_path: Path) -> None:
    files, launch = box(tmp_path)
    with pytest.raises(BootFailed) as raised:
        start_vmm(files, launch, GoneDriver(tmp_path / "qemu-system-x86_64"))
    assert (raised.value.message, raised.value.hint) == (
        "qemu-system-x86_64 is not installed", "run: boxlite doctor")
    (tmp_path / "qemu-system-x86_64").write_text("not a program")  # (not executable)
    with pytest.raises(BootFailed) as raised:
        start_vmm(files, launch, GoneDriver(tmp_path / "qemu-system-x86_64"))
    assert raised.value.message == (f"{tmp_path / 'qemu-system-x86_64'} could not be run: "
                                    "Permission denied")
    assert not files.vmm_pid.exists()


def test_start_early_hands_a_failure_on_instead_of_raising(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir()
    outcome = start_early(tmp_path / "box")  # no vm.json
    assert isinstance(outcome, FileNotFoundError)
    assert not (tmp_path / "box" / "shim.pid").exists()


class FakeControl:
    """A control channel that records what it is asked (and can refuse the restore)."""

    def __init__(self, calls: list[object], fail: str | None) -> None:
        self.calls, self.fail = calls, fail

    def wait_ready(self, timeout_s: float, alive: Callable[[], bool] | None = None) -> None:
        assert alive is not None and alive()  # (the VMM, asked about while waiting)
        self.calls.append("wait_ready")

    def restore(self, directory: Path, begun: bool = False) -> None:
        self.calls.append(("restore", directory.name, begun))
        if self.fail:
            raise VmError(self.fail)

    def resume(self) -> None:
        self.calls.append("resume")


class ControlDriver(FakeDriver):
    """A stand-in VMM that just waits; its control channel is a FakeControl. Its
    snapshots are a template's RAM image (only the devices' state goes over the
    control channel), or with `stream`, one memory stream that it reads itself."""

    def __init__(self, out: Path, fail: str | None = None, stream: bool = False) -> None:
        super().__init__(out)
        self.calls: list[object] = []
        self.fail = fail
        self.stream = stream

    def restore_file(self, spec: VmSpec) -> Path | None:
        return super().restore_file(spec) if self.stream else None

    def command(self, spec: VmSpec, restore_fd: int | None = None,
                ram_fd: int | None = None, disk_fd: int | None = None) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    def control(self, spec: VmSpec, timeout_s: float = 10.0) -> FakeControl:  # type: ignore[override]
        return FakeControl(self.calls, self.fail)


def restoring_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  driver: ControlDriver) -> BoxFiles:
    import boxlite_cli.shim.main
    import boxlite_cli.vmm.drivers

    template = tmp_path / "template"
    template.mkdir()
    (template / "memory.state").write_bytes(b"saved RAM")
    files, _ = box(tmp_path, restore_from=str(template))
    for module in (boxlite_cli.vmm.drivers, boxlite_cli.shim.main):
        monkeypatch.setattr(module, "get_driver", lambda name: driver)
    return files


def test_a_prestarted_shim_restores_and_resumes_the_vm_before_its_imports_are_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = ControlDriver(tmp_path / "got")
    files = restoring_box(tmp_path, monkeypatch, driver)
    started = start_early(files.dir, restore=True)
    assert isinstance(started, VmmProcess)
    try:
        assert driver.calls == ["wait_ready", ("restore", "template", False), "resume"]
        assert started.restored and started.restore_error is None
        Shim(files, ready_fd=-1, early=started).start_vmm()
        assert len(driver.calls) == 3, "the shim does not restore it a second time"
    finally:
        started.process.kill()
        started.process.wait()


def test_an_early_restore_that_fails_is_raised_by_the_shim_which_holds_the_vmm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = ControlDriver(tmp_path / "got", fail="restoring the VM failed (QEMU is failed)")
    files = restoring_box(tmp_path, monkeypatch, driver)
    started = start_early(files.dir, restore=True)
    assert isinstance(started, VmmProcess)
    try:
        assert not started.restored and isinstance(started.restore_error, VmError)
        assert started.process.poll() is None, "the VMM is not left unowned: the shim stops it"
        s = Shim(files, ready_fd=-1, early=started)
        with pytest.raises(VmError, match="QEMU is failed"):
            s.start_vmm()
        assert s.vmm is started.process
        assert "resume" not in driver.calls
    finally:
        started.process.kill()
        started.process.wait()


def test_a_checkpoints_stream_is_left_to_the_shim_proper(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds of loading: the shim proper waits for it, with its signal handlers."""
    driver = ControlDriver(tmp_path / "got", stream=True)
    files = restoring_box(tmp_path, monkeypatch, driver)
    started = start_early(files.dir, restore=True)
    assert isinstance(started, VmmProcess)
    try:
        assert started.restore_begun and not started.restored and driver.calls == []
        Shim(files, ready_fd=-1, early=started).start_vmm()
        assert driver.calls == ["wait_ready", ("restore", "template", True), "resume"]
    finally:
        started.process.kill()
        started.process.wait()


def test_a_launched_shim_restores_the_vm_itself(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    driver = ControlDriver(tmp_path / "got")
    files = restoring_box(tmp_path, monkeypatch, driver)
    started = start_early(files.dir)  # (shim/launcher.py's way: no early restore)
    assert isinstance(started, VmmProcess)
    try:
        assert driver.calls == [] and not started.restored
        Shim(files, ready_fd=-1, early=started).start_vmm()
        assert driver.calls == ["wait_ready", ("restore", "template", False), "resume"]
    finally:
        started.process.kill()
        started.process.wait()


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeFuture:
    def __init__(self, outcome: object) -> None:
        self.outcome = outcome

    def result(self, timeout: float | None = None) -> object:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self) -> None:
        pass


class FakeVmm:
    def __init__(self, rc: int | None = None) -> None:
        self.rc = rc

    def poll(self) -> int | None:
        return self.rc


def shim(tmp_path: Path, vmm_rc: int | None = None) -> Shim:
    files, _ = box(tmp_path)
    s = Shim(files, ready_fd=-1)
    s.vmm = FakeVmm(vmm_rc)  # type: ignore[assignment]
    return s


def test_the_first_call_is_retried_while_the_connection_is_not_there(tmp_path: Path) -> None:
    outcomes = [FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"), "answer"]
    calls: list[float] = []

    def start(timeout: float) -> FakeFuture:
        calls.append(timeout)
        return FakeFuture(outcomes.pop(0))

    assert shim(tmp_path).first_call(start, time.monotonic() + 30, "initialising") == "answer"
    assert len(calls) == 2 and all(0 < t <= 30 for t in calls)


def test_the_first_calls_own_error_is_raised_at_once(tmp_path: Path) -> None:
    calls = []

    def start(timeout: float) -> FakeFuture:
        calls.append(timeout)
        return FakeFuture(FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "no disk"))

    with pytest.raises(BoxliteError, match="initialising the guest: no disk"):
        shim(tmp_path).first_call(start, time.monotonic() + 30, "initialising the guest")
    assert len(calls) == 1


def test_the_first_call_gives_up_when_the_vm_is_gone(tmp_path: Path) -> None:
    s = shim(tmp_path, vmm_rc=1)
    s.files.dir.joinpath("vmm.log").write_text("qemu: load of migration failed\n")
    with pytest.raises(BootFailed, match="the VM stopped during boot"):
        s.first_call(lambda timeout: FakeFuture("never asked"), time.monotonic() + 30, "x")


def test_a_child_by_pid_is_polled_waited_for_and_killed() -> None:
    import subprocess

    from boxlite_cli.shim.child import ChildProcess

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    child = ChildProcess(proc.pid, ["x"])
    assert child.wait(30) == 3 and child.poll() == 3 and child.returncode == 3
    proc.returncode = 3  # (reaped by the child object, not by Popen)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child = ChildProcess(sleeper.pid, ["sleeper"])
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.05)
    child.kill()
    assert child.wait(30) == -9
    child.kill()  # a second kill of a reaped child is nothing
    sleeper.returncode = -9


def test_the_launcher_hands_the_vmm_or_its_failure_to_the_shim(tmp_path: Path) -> None:
    from boxlite_cli.shim.child import ChildProcess
    from boxlite_cli.shim.launcher import describe_early
    from boxlite_cli.shim.vmmproc import VmmProcess, adopt_early

    early = VmmProcess(ChildProcess(4242, ["qemu", "-incoming", "fd:7"]),
                       ["qemu", "-incoming", "fd:7"], restore_begun=True)
    adopted = adopt_early(describe_early(early))
    assert isinstance(adopted, VmmProcess)
    assert (adopted.process.pid, adopted.command, adopted.restore_begun) == (
        4242, ["qemu", "-incoming", "fd:7"], True)
    failed = adopt_early(describe_early(BootFailed("no VMM here", hint="install it")))
    assert isinstance(failed, BootFailed) and (str(failed), failed.hint) == (
        "no VMM here", "install it")
    assert isinstance(adopt_early("{not json"), BootFailed)


def test_the_shim_inherits_only_the_descriptors_it_is_given(tmp_path: Path) -> None:
    """The forked child closes what its parent inherited (a `$(boxlite run -d ...)`
    would otherwise wait for the detached shim)."""
    import subprocess
    import textwrap

    script = textwrap.dedent("""
        import os, sys
        from boxlite_cli.shim.launcher import _keep_only
        stray = os.open(os.devnull, os.O_RDONLY)
        os.set_inheritable(stray, True)
        kept = os.open(os.devnull, os.O_RDONLY)
        _keep_only({0, 1, 2, kept})
        def is_open(fd):
            try:
                os.fstat(fd)
                return True
            except OSError:
                return False
        print(is_open(stray), is_open(kept))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]


def test_the_logs_of_failed_starts_are_bounded(tmp_path: Path) -> None:
    """`<data>/failed/` keeps the newest logs only (a retry loop of failing `run --rm`)."""
    for i in range(KEEP_FAILED_LOGS + 10):
        log = tmp_path / f"{i:04d}-console.log"
        log.write_text("x")
        os.utime(log, ns=(i * 10**9, i * 10**9))
    prune_kept_logs(tmp_path, KEEP_FAILED_LOGS)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [f"{i:04d}-console.log" for i in range(10, KEEP_FAILED_LOGS + 10)]
    prune_kept_logs(tmp_path, 0)
    assert not any(tmp_path.iterdir())


def test_a_killed_agent_is_named_from_the_guests_last_words(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_bytes(b"boot noise\nboxlite-agent: ready\n"
                        b"boxlite-init: the agent exited (killed by signal 9); powering off\n"
                        b"[    5.370666] reboot: Power down\n")
    reason = agent_ended(console_tail(console))
    assert reason is not None and reason.startswith("the guest agent was killed by signal 9")
    assert "sysrq-trigger" in reason
    console.write_bytes(b"boxlite-init: the agent exited (exit status 1); powering off\n")
    assert agent_ended(console_tail(console)) == (
        "the guest agent ended (exit status 1) and the VM powered off")
    console.write_bytes(b"[    5.370666] reboot: Power down\n")
    assert agent_ended(console_tail(console)) is None  # a shutdown of another kind


def test_the_guests_console_lines_are_quoted_with_control_characters_escaped(
        tmp_path: Path) -> None:
    """Root in a box writes what it likes to the serial console: an error line quotes it
    escaped (no terminal sequences), and cut short."""
    console = tmp_path / "console.log"
    console.write_bytes(b"boot\nboxlite-init: the agent exited (\x1b]0;PWNED\x07ok \xe2\x80\xae)\n"
                        + b"z" * 1000 + b"\n")
    tail = console_tail(console)
    assert tail[-1] == "boxlite-init: the agent exited (\\x1b]0;PWNED\\x07ok \\u202e)"
    assert len(tail[1]) == GUEST_LINE_MAX + 3 and tail[1].endswith("...")
    assert agent_ended(tail) == ("the guest agent ended (\\x1b]0;PWNED\\x07ok \\u202e) "
                                 "and the VM powered off")



def test_a_guest_kernel_panic_is_named_as_such() -> None:
    tail = ["[   22.8] sysrq: Trigger a crash",
            "[   22.9] Kernel panic - not syncing: sysrq triggered crash"]
    assert agent_ended(tail) == ('the guest kernel panicked; its console says: '
                                 '"sysrq triggered crash"')


class SleepingVmm:
    """A VMM that runs until killed (a real process: the shim kills and waits for it)."""

    def __init__(self) -> None:
        import subprocess

        self.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        self.pid = self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        self.process.kill()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)


def test_a_stop_that_came_before_the_shim_had_the_box_keeps_it_from_starting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill_now of an interrupted `run -d` found no shim PID file yet (a prestarted shim
    or a spare was being handed the box): it left the stop-requested mark, which the
    shim reads once its PID file is written, and the box does not start."""
    import json

    from boxlite_cli.runtime.runtime import Runtime
    from boxlite_cli.state.paths import Paths
    from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status

    files, _ = box(tmp_path)
    state = BoxState(id="c" * 64, name="early", status=Status.STARTING,
                     config=BoxConfig(image="i", image_id="sha256:" + "a" * 64, rootfs_base="",
                                      process=ProcessSpec(argv=["sleep", "100"])))
    files.state.write_text(json.dumps(state.to_json()))
    rt = Runtime(Paths(data=tmp_path / "home", config=tmp_path / "c", cache=tmp_path / "k"))
    rt._kill_shim(files)  # (no PID file: nothing to signal, the mark is left)
    assert files.stop_requested.exists()
    s = Shim(files, ready_fd=-1)
    vmm = SleepingVmm()
    asked: list[float] = []

    def start(timeout: float) -> FakeFuture:
        asked.append(timeout)
        # (As a guest that never answers: the wait ends at once, not at the deadline.)
        return FakeFuture(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer"))

    monkeypatch.setattr(s, "boot", lambda: (s.__setattr__("vmm", vmm), s.first_call(
        start, time.monotonic() + 30, "initialising"))[1])
    assert s.run() == 1
    assert asked == []  # the boot stopped before it called the agent
    assert vmm.poll() is not None  # its VM is down
    after = json.loads(files.state.read_text())
    assert (after["status"], after["error"]) == ("exited", "the box was stopped while booting")
    assert after["exit_code"] == 137  # (as a killed box: docker's, not a failure's 125)
