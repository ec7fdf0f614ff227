"""Starting a box's VMM process: the first thing a shim does.

This module is light on purpose (no gRPC, no protobuf): `python -m boxlite_cli.shim`
starts the VMM through it before importing the rest of the shim, so a restore from
a memory snapshot loads while the shim's Python start-up goes on.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from boxlite_cli.childdeath import LIBC, die_with_parent
from boxlite_cli.errors import BoxliteError
from boxlite_cli.shim.child import ChildProcess, Process
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.paths import ensure_private_socket_base
from boxlite_cli.state.pidfile import ProcessRecord, write_pidfile
from boxlite_cli.vmm.base import NET_DNS, NET_GUEST, NET_HOST, NET_PASST, VmmDriver, VmSpec
from boxlite_cli.vmm.ramimage import shared_ram

PR_SET_THP_DISABLE = 41
PASST_START_TIMEOUT_S = 10.0


class BootFailed(BoxliteError):
    pass


def vmm_not_runnable(binary: str, error: OSError) -> BootFailed:
    """The one-line failure of a VMM executable that could not be run."""
    if isinstance(error, FileNotFoundError):
        return BootFailed(f"{os.path.basename(binary)} is not installed",
                          hint="run: boxlite doctor")
    return BootFailed(f"{binary} could not be run: {error.strerror or error}",
                      hint="run: boxlite doctor")


def _vmm_child_setup(parent: int) -> None:
    """In the VMM child, before its exec: die with the shim, and no transparent huge
    pages (kept across the exec). QEMU asks for them on guest RAM and on TCG's code
    buffer; then every page a restore loads, scattered over the RAM, costs the
    zeroing of a 2 MiB page (a warm start spent ~0.2 s in it), and the VM holds
    more memory than its guest uses. Like Firecracker's default: 4 KiB pages."""
    die_with_parent(parent)  # (no VM outlives its shim)
    LIBC.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)


@dataclass
class VmmProcess:
    """A started VMM. `restore_begun`: it loads its memory snapshot by itself (the
    file was named on its command line); the control channel only waits for the end.
    `ram_fd`: our descriptor of the memfd its RAM is shared in (a VM that will save a
    template; the save copies the RAM from it), else None. `restored`: its snapshot
    is loaded and it runs (finish_restore); `restore_error`: why that failed."""

    process: Process
    command: list[str]
    restore_begun: bool = False
    ram_fd: int | None = None
    restored: bool = False
    restore_error: BaseException | None = None


def start_passt(files: BoxFiles, spec: VmSpec) -> None:
    """The experimental passt backend: its process serves the VM's NIC on a socket."""
    sock = Path(spec.net_socket)
    sock.unlink(missing_ok=True)
    # As root passt would switch to nobody, who cannot bind in the 0700 socket dir.
    cmd = ["passt", "-f", "-q", "-1", "-4", "--runas", str(os.geteuid()),
           "--socket", str(sock), "-a", NET_GUEST,
           "-n", "24", "-g", NET_HOST, "-D", NET_DNS]
    for fwd in spec.port_forwards:
        cmd += ["-t" if fwd.proto == "tcp" else "-u",
                f"{fwd.host_ip}/{fwd.host_port}:{fwd.guest_port}"]
    with open(files.dir / "passt.log", "wb") as out:
        passt = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT,
                                 preexec_fn=functools.partial(die_with_parent, os.getpid()))
    deadline = time.monotonic() + PASST_START_TIMEOUT_S
    while not sock.exists():
        if passt.poll() is not None or time.monotonic() > deadline:
            raise BootFailed(f"passt did not start; see {files.dir / 'passt.log'}")
        time.sleep(0.01)


def _open_restore_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise BootFailed(f"cannot read the memory snapshot {path}: {e.strerror}") from e


def _open_disk(path: Path) -> int:
    """The root disk, for the VMM to open by descriptor (see qemu.rootfs_args)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise BootFailed(f"cannot open the box's disk {path}: {e.strerror}") from e


def start_vmm(files: BoxFiles, launch: Launch, driver: VmmDriver) -> VmmProcess:
    """Start the VMM of `launch` as a child that dies with us; its PID is recorded."""
    spec = launch.vm
    ensure_private_socket_base(files.sockets)
    files.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
    for sock in (spec.agent_socket, spec.control_socket, files.agent_socket):
        sock.unlink(missing_ok=True)
    spec.console_log.write_bytes(b"")
    if spec.network == NET_PASST:
        start_passt(files, spec)
    restore_file = driver.restore_file(spec) if spec.restore_from else None
    restore_fd = _open_restore_file(restore_file) if restore_file is not None else None
    ram_fd = shared_ram(spec.memory_mib << 20) if launch.save_template else None
    disk_fd: int | None = None
    try:
        disk_fd = _open_disk(spec.rootfs_disk) if spec.mode == "agent" else None
        try:
            cmd = driver.command(spec, restore_fd, ram_fd=ram_fd, disk_fd=disk_fd)
        except BoxliteError as e:
            raise BootFailed(str(e), hint=e.hint) from e
        with open(files.dir / "vmm.log", "wb") as out:
            try:
                process = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    pass_fds=tuple(fd for fd in (restore_fd, ram_fd, disk_fd) if fd is not None),
                    preexec_fn=functools.partial(_vmm_child_setup, os.getpid()))
            except OSError as e:  # (the VMM itself: gone since the box was made, or not runnable)
                raise vmm_not_runnable(cmd[0], e) from e
    except BaseException:
        if ram_fd is not None:
            os.close(ram_fd)
        raise
    finally:
        for fd in (restore_fd, disk_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
    record = ProcessRecord.of(process.pid)
    if record is not None:
        write_pidfile(files.vmm_pid, record)
    return VmmProcess(process, cmd, restore_begun=restore_fd is not None, ram_fd=ram_fd)


def finish_restore(started: VmmProcess, launch: Launch, driver: VmmDriver) -> None:
    """A VMM started to restore a snapshot: wait for its control channel, load the
    snapshot (unless it loads it by itself), resume it. Raises BoxliteError."""
    spec = launch.vm
    control = driver.control(spec)
    control.wait_ready(min(launch.boot_timeout_s, 30.0),
                       alive=lambda: started.process.poll() is None)  # (gone: no 30 s wait)
    control.restore(Path(spec.restore_from), begun=started.restore_begun)
    control.resume()
    started.restored = True


def adopt_early(described: str) -> VmmProcess | BaseException:
    """The VMM this process started before it executed itself into the shim (see
    shim/launcher.py's describe_early), or why it could not."""
    try:
        data = json.loads(described)
        if "error" in data:
            return BootFailed(str(data["error"]), hint=data.get("hint"))
        command = [str(arg) for arg in data["command"]]
        ram_fd = data.get("ram_fd")
        return VmmProcess(ChildProcess(int(data["pid"]), command), command,
                          restore_begun=bool(data["restore_begun"]),
                          ram_fd=None if ram_fd is None else int(ram_fd))
    except (ValueError, KeyError, TypeError) as e:
        return BootFailed(f"the shim was launched with a bad VMM description ({e})")


def start_early(box_dir: Path, restore: bool = False) -> VmmProcess | BaseException:
    """`python -m boxlite_cli.shim`'s first step: the shim's PID file, then the VMM;
    with `restore`, a VMM that restores a template's RAM image is also restored and
    resumed (finish_restore: its devices' state only, ~15 ms). One that loads a whole
    memory stream (a checkpoint: seconds) is left to the shim proper, which handles a
    `stop` meanwhile. A failure is returned, to be reported by the shim once it is up."""
    files = BoxFiles(box_dir)
    try:
        launch = Launch.load(files.dir / "vm.json")
        write_pidfile(files.shim_pid, ProcessRecord.current())
        from boxlite_cli.vmm.drivers import get_driver

        driver = get_driver(launch.driver)
        started = start_vmm(files, launch, driver)
    except Exception as e:
        return e
    if restore and launch.vm.restore_from and not started.restore_begun:
        try:
            finish_restore(started, launch, driver)
        except Exception as e:
            started.restore_error = e  # (raised by the shim, which stops the VMM)
    return started
