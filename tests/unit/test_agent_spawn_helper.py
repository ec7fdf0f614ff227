"""The guest's exec helper (guest-agent/spawn/boxlite-spawn.c), compiled as the payload
build compiles it, driven by spawn() in a chroot of its own: what the started program
sees (root, working directory, user, groups, environment, session) and how each
failure comes back. Needs root (chroot, setuid), gcc and a static busybox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "guest-agent"))
sys.path.insert(0, str(REPO / "images"))

from boxlite_agent import spawn as spawn_mod  # noqa: E402
from boxlite_agent.errors import ExecFailure  # noqa: E402
from boxlite_agent.spawn import ExecSpec, spawn  # noqa: E402
from guestbuild.agentroot import CFLAGS, SPAWN_SOURCE  # noqa: E402

BUSYBOX = Path("/bin/busybox")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, setuid)"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is missing (make deps installs it)"),
    pytest.mark.skipif(not BUSYBOX.is_file(), reason="no static busybox (apt-get install busybox-static)"),
]


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("helper") / "boxlite-spawn"
    subprocess.run(["gcc", *CFLAGS, "-o", str(out), str(REPO / "guest-agent" / SPAWN_SOURCE)],
                   check=True)
    return out


@pytest.fixture
def root(tmp_path: Path, helper: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(spawn_mod, "HELPER", str(helper))
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "id", "pwd", "echo", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "app:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    (root / "bad").write_bytes(b"\x00not a program")
    (root / "bad").chmod(0o755)
    return root


def run(root: Path, spec: ExecSpec) -> tuple[int, str, str]:
    spawned = spawn(str(root), spec, "box")
    try:
        code = spawned.popen.wait(30)
        out = dict(spawned.outputs)
        return (code, os.read(out[spawn_mod.STDOUT], 65536).decode(),
                os.read(out[spawn_mod.STDERR], 65536).decode())
    finally:
        for _, fd in spawned.outputs:
            os.close(fd)


def test_the_program_runs_inside_the_root_as_the_user(root: Path) -> None:
    script = "pwd; id -u; id -g; id -G; echo $GREETING $HOME; cat /etc/group | head -c 4"
    code, out, err = run(root, ExecSpec(argv=["sh", "-c", script], env=["GREETING=hi"],
                                        cwd="/work/dir", user="app", make_cwd=True))
    assert (code, err) == (0, "")
    assert out.splitlines() == ["/work/dir", "1000", "1000", "1000 2000", "hi /home/app", "root"]
    assert (root / "work" / "dir").is_dir()  # a main process's missing cwd is created


def test_the_program_leads_a_session_of_its_own(root: Path) -> None:
    spawned = spawn(str(root), ExecSpec(argv=["sh", "-c", "exec cat"], stdin=True), "box")
    try:
        assert os.getsid(spawned.popen.pid) == spawned.popen.pid
    finally:
        spawned.popen.kill()
        spawned.popen.wait()
        for fd in [fd for _, fd in spawned.outputs] + [spawned.stdin or -1]:
            if fd >= 0:
                os.close(fd)


def test_an_exec_the_kernel_refuses_is_126_with_its_reason(root: Path) -> None:
    with pytest.raises(ExecFailure) as info:
        spawn(str(root), ExecSpec(argv=["/bad"]), "box")
    assert (info.value.exit_code, info.value.message) == (126, 'exec: "/bad": exec format error')


def helper_says(helper: Path, *args: str, capdrop: str = "0") -> tuple[int, bytes]:
    """Run the helper directly with ERRFD a pipe; its exit status and what it wrote there."""
    r, w = os.pipe()
    try:
        proc = subprocess.run([str(helper), *args[:6], capdrop, str(w), *args[6:]], pass_fds=(w,),
                              stdin=subprocess.DEVNULL, capture_output=True)
        os.close(w)
        w = -1
        return proc.returncode, os.read(r, 4096)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_a_failing_step_is_126_with_the_step(root: Path, helper: Path) -> None:
    # a tty exec whose stdin is no terminal
    assert helper_says(helper, str(root), "/", "0", "0", "", "1", "/bin/busybox", "true") == (
        126, b"set the controlling terminal: Inappropriate ioctl for device")
    assert helper_says(helper, str(root / "gone"), "/", "0", "0", "", "0", "/bin/busybox",
                       "true") == (126, b"chroot: No such file or directory")
    assert helper_says(helper, str(root), "/gone", "0", "0", "", "0", "/bin/busybox",
                       "true") == (126, b"chdir to /gone: No such file or directory")
    # the final exec: its errno, for the agent to word as docker does
    assert helper_says(helper, str(root), "/", "0", "0", "", "0", "/gone", "gone") == (
        127, b"exec:2")


def test_the_helper_checks_its_arguments(root: Path, helper: Path) -> None:
    assert helper_says(helper, str(root), "/", "x", "0", "", "0", "/bin/busybox", "true") == (
        126, b"uid: Invalid argument")
    assert helper_says(helper, str(root), "/", "0", "0", "1,x", "0", "/bin/busybox",
                       "true") == (126, b"group: Invalid argument")
    assert helper_says(helper, str(root), "/", "0", "0", "", "0", "/bin/busybox", "true",
                       capdrop="zz") == (126, b"capabilities: Invalid argument")
    proc = subprocess.run([str(helper)], capture_output=True)
    assert proc.returncode == 126 and b"usage: boxlite-spawn" in proc.stderr


CAP_CHOWN, CAP_NET_RAW = 0, 13


def test_the_capabilities_dropped_are_gone_from_the_program(root: Path) -> None:
    """--cap-drop: the helper takes them from the bounding set before the exec, so even
    a root program lacks them (chown to another user is refused without CAP_CHOWN)."""
    (root / "bin" / "chown").symlink_to("busybox")
    (root / "owned").write_text("x")
    code, _, err = run(root, ExecSpec(argv=["chown", "1000", "/owned"],
                                      cap_drop=1 << CAP_CHOWN | 1 << CAP_NET_RAW))
    assert code == 1 and "Operation not permitted" in err
    assert (root / "owned").stat().st_uid == 0
    code, _, err = run(root, ExecSpec(argv=["chown", "1000", "/owned"], cap_drop=1 << CAP_NET_RAW))
    assert (code, err) == (0, "")
    assert (root / "owned").stat().st_uid == 1000
    # every bit: the ones this kernel does not know are no error
    assert run(root, ExecSpec(argv=["echo"], cap_drop=(1 << 64) - 1))[0] == 0


def test_a_spare_warm_up_runs_the_helper_and_nothing_of_the_image(
        root: Path, helper: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """warm_spawn (a spare VM's warm-up) starts the helper as a box's first process is
    started; the program is the helper itself (fd 0, /proc/self/fd/0), which prints its
    usage and exits 126: a program of the image's would have left its mark."""
    from boxlite_agent import warmup
    (root / "bin" / "true").write_text("#!/bin/sh\necho ran > /ran\n")
    (root / "bin" / "true").chmod(0o755)
    (root / "proc").mkdir()
    mounted = subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount /proc in the test's root: {mounted.stderr.decode().strip()}")
    try:
        assert warmup.warm_spawn(str(root), "box") == 126
        assert warmup.warm_spawn(str(root / "missing"), "box") is None  # (no such root)
    finally:
        subprocess.run(["umount", str(root / "proc")], check=True)
    assert not (root / "ran").exists()


def test_the_program_joins_the_box_cgroup_before_it_runs(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helper writes "0" (itself) into the box cgroup's cgroup.procs it is handed
    (cgroups.py; a pipe stands in for it here) before it executes the program."""
    r, w = os.pipe()
    monkeypatch.setattr(spawn_mod.BOX_CGROUP, "procs_fd", lambda: os.dup(w))
    try:
        code, out, err = run(root, ExecSpec(argv=["echo", "in"]))
        assert (code, out, err) == (0, "in\n", "")
        os.close(w)
        w = -1
        assert os.read(r, 16) == b"0"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_the_box_cgroup_is_made_once_and_takes_the_limit(tmp_path: Path) -> None:
    from boxlite_agent.cgroups import BoxCgroup

    (tmp_path / "cgroup.subtree_control").write_text("")
    group = BoxCgroup(str(tmp_path))
    group.setup(mount=False)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory"  # (after +pids)
    assert (tmp_path / "box").is_dir()
    assert group.oom_kills() == 0  # (no memory.events: no memory controller)
    (tmp_path / "box" / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 1\n"
                                                    "oom_kill 2\noom_group_kill 0\n")
    assert group.oom_kills() == 2
    group.set_pids_limit(20)
    assert (tmp_path / "box" / "pids.max").read_text() == "20"
    group.set_pids_limit(0)
    assert (tmp_path / "box" / "pids.max").read_text() == "max"
    group.set_cpu_limit(0)  # (no limit asked: the cpu controller stays off)
    assert not (tmp_path / "box" / "cpu.max").exists()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory"
    group.set_cpu_limit(1.5)  # docker's --cpus 1.5: 150 ms of every 100 ms
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu"
    assert (tmp_path / "box" / "cpu.max").read_text() == "150000 100000"
    group.set_cpu_limit(0.001)  # (the kernel's least quota)
    assert (tmp_path / "box" / "cpu.max").read_text() == "1000 100000"
    group.set_cpu_limit(0)
    assert (tmp_path / "box" / "cpu.max").read_text() == "max 100000"
    # memory.max: what the guest has available at Init, less a margin for the agent
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  468548 kB\nMemFree:  359596 kB\n"
                       "MemAvailable:  398152 kB\n")
    group.set_memory_limit(str(meminfo))
    assert int((tmp_path / "box" / "memory.max").read_text()) == 398152 * 1024 - (24 << 20)
    # a small VM (-m 128m: ~21 MiB available): half of it is the margin, so the limit
    # binds below what is there (a floor above it never bound, and a full /dev/shm
    # deadlocked the guest; with a quarter, the guest still ran out first: the agent
    # thrashed, and the box's OOM kill took minutes)
    meminfo.write_text("MemAvailable:  21504 kB\n")
    group.set_memory_limit(str(meminfo))
    assert int((tmp_path / "box" / "memory.max").read_text()) == 21504 * 1024 // 2
    meminfo.write_text("MemAvailable:  1024 kB\n")  # (never below the least)
    group.set_memory_limit(str(meminfo))
    assert int((tmp_path / "box" / "memory.max").read_text()) == 4 << 20
    (tmp_path / "box" / "cgroup.procs").write_text("")
    fd = group.procs_fd()
    assert fd is not None
    os.close(fd)
    assert BoxCgroup(str(tmp_path / "none")).procs_fd() is None  # (not set up: no group)
