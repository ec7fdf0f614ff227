"""A spare: a VM restored from a warm-start template ahead of time, warmed up and
paused, waiting for the next box of that template (see runtime/spares.py for when
spares are made).

Why: under emulation (TCG) a restored VM starts with no translated guest code, and
translating it is most of what a warm start costs: ~57,000 translation blocks of
kernel, Python and gRPC code on its first Init and exec. A spare has translated them
already (its warm-up: a connection to the agent, a Ping, a box-neutral Init), so the
box that takes it only pays for running them; and the restore, the shim's start-up
and the agent connection are off its path too. With KVM the gain is the restore and
the shim's start-up.

Layout: `<data>/spares/<id>/` has a box directory's layout (BoxFiles: vm.json,
disks/rootfs.qcow2, console.log, vmm.log, shim.log, the sockets), plus `spare.json`
(the template key and directory, the idle limit) and, once the spare is ready,
`adopt.sock` in its sockets directory. Its id is one character shorter than a box's,
so its sockets land where the box's do (in the directory, or both under /tmp).
`<data>/spares/<key>.lock` is held by the spare of that template from its start
until it is taken or gone: one spare per template at a time.

Taking one: a CLI connects to adopt.sock (SOCK_SEQPACKET). The spare accepts one
connection, answers "ok" and stops listening, then is handed the box as a prestarted
shim is (shim/prestart.py). It moves its disk, logs and sockets into the box's
directory (renames on one file system: QEMU's open files and listening sockets move
with them), resumes the VM and runs as that box's shim; Init then gives the guest
the box's clock, entropy, hostname and network, as after any restore.

A spare that nobody takes within its idle limit, whose template or directory goes,
or that gets SIGTERM, powers its VM off and removes its directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from boxlite_cli.shim.prestart import HandedBox, log_to, receive_box
from boxlite_cli.shim.spareclaim import CLAIMED, SPARE_META, adopt_socket, lock_path
from boxlite_cli.shim.vmmproc import VmmProcess, start_early
from boxlite_cli.shim.vmspec import ROOTFS_LAYER, Launch
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.flock import FileLock, Timeout
from boxlite_cli.state.paths import ensure_private_socket_base
from boxlite_cli.state.pidfile import ProcessRecord, write_pidfile

if TYPE_CHECKING:
    from boxlite_cli.shim.warmup import Adopted

HAND_OVER_TIMEOUT_S = 10.0  # a claimed spare waits this long for its box
WATCH_S = 0.2  # how often a waiting spare looks at its template, directory and VM
SPARE_NICE = 19  # a spare is made with the host's idle time (when it can go back to 0)

log = logging.getLogger("boxlite.spare")


# the spare itself ----------------------------------------------------------------------


class _Priority:
    """The spare is made at nice 19 when its processes' priority can be set back to 0
    when it is taken (as root, or with RLIMIT_NICE allowing it); else at 0."""

    def __init__(self) -> None:
        self.lowered = False

    def lower(self) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
        if os.geteuid() != 0 and soft != resource.RLIM_INFINITY and soft < 20:
            return
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, SPARE_NICE)
            self.lowered = True

    def restore(self, *pids: int) -> None:
        """Every thread of `pids` (nice is per thread) back to 0."""
        if not self.lowered:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError):
                        os.setpriority(os.PRIO_PROCESS, int(tid), 0)


class _Stop(Exception):
    """Why a waiting spare ends without a box."""


def _copy_disk(template: Path, files: BoxFiles) -> None:
    """The box's disk: a copy of the primed template's overlay (see runtime/templates.py)."""
    partial = files.rootfs_disk.with_name(files.rootfs_disk.name + ".partial")
    shutil.copyfile(template / ROOTFS_LAYER, partial)
    os.replace(partial, files.rootfs_disk)


def _move_into(spare: BoxFiles, box: BoxFiles) -> None:
    """The spare's disk, logs and sockets become the box's (renames: see the module doc)."""
    if box.sockets.exists():  # (an earlier start's leftovers)
        shutil.rmtree(box.sockets)
    ensure_private_socket_base(box.sockets)
    box.sockets.parent.mkdir(parents=True, exist_ok=True)
    os.rename(spare.sockets, box.sockets)
    for src, dst in ((spare.rootfs_disk, box.rootfs_disk), (spare.console_log, box.console_log),
                     (spare.dir / "vmm.log", box.dir / "vmm.log"), (spare.vmm_pid, box.vmm_pid)):
        os.replace(src, dst)


class Spare:
    def __init__(self, spare_dir: Path) -> None:
        self.files = BoxFiles(spare_dir)
        meta = json.loads((spare_dir / SPARE_META).read_text())
        self.key = str(meta["key"])
        self.template = Path(str(meta["template"]))
        self.idle_s = float(meta["idle_s"])
        self.lock = FileLock(lock_path(spare_dir.parent, self.key), timeout=0)
        self.priority = _Priority()
        self.stopping = threading.Event()
        self.vmm: VmmProcess | None = None
        self.adopted: Adopted | None = None

    def remove(self) -> None:
        """Power the VM off, then our directory and sockets go."""
        if self.adopted is not None:
            self.adopted.channel.close()
        if self.vmm is not None:
            self.vmm.process.kill()
            with contextlib.suppress(Exception):
                self.vmm.process.wait(10)
        shutil.rmtree(self.files.sockets, ignore_errors=True)
        shutil.rmtree(self.files.dir, ignore_errors=True)

    def serve(self) -> int:
        try:
            self.lock.acquire()
        except Timeout:  # another spare of this template is there already
            self.remove()
            return 0
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        logging.basicConfig(filename=self.files.shim_log, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(message)s")
        try:
            write_pidfile(self.files.shim_pid, ProcessRecord.current())
            self.priority.lower()
            early, adopted = self.prepare()
            handed = self.wait_for_box(early)
        except _Stop as e:
            log.info("spare done: %s", e)
            handed = None
        except Exception:
            log.exception("the spare failed")
            handed = None
        if handed is None:
            self.remove()
            logging.shutdown()
            os._exit(0)  # (no interpreter teardown: gRPC's threads would hold it up)
        return self.become_shim(handed, early, adopted)

    def prepare(self) -> tuple[VmmProcess, Adopted]:
        """Restore the template, warm the guest up, pause it."""
        _copy_disk(self.template, self.files)
        early = start_early(self.files.dir, restore=True)
        if isinstance(early, BaseException):
            raise early
        self.vmm = early
        if early.restore_error is not None:
            raise early.restore_error
        from boxlite_cli.shim.warmup import warm_up  # (gRPC: the slow import)

        launch = Launch.load(self.files.dir / "vm.json")
        self.adopted = warm_up(launch, early.process, self.stopping)
        return early, self.adopted

    def wait_for_box(self, early: VmmProcess) -> HandedBox | None:
        """Listen on adopt.sock until a CLI takes us (its box), or a reason to stop."""
        path = adopt_socket(self.files.dir)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            partial = path.with_name(path.name + ".partial")
            partial.unlink(missing_ok=True)
            listener.bind(str(partial))
            listener.listen(8)
            os.rename(partial, path)  # ready now: a CLI may take us
            listener.settimeout(WATCH_S)
            deadline = time.monotonic() + self.idle_s
            log.info("spare ready for %s", self.template.name)
            while True:
                self.check(early, deadline)
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with contextlib.suppress(OSError):
                    conn.sendall(CLAIMED)
                    break
                conn.close()
        finally:
            path.unlink(missing_ok=True)
            listener.close()
        self.lock.release()  # taken: another spare of this template may be made
        self.priority.restore(os.getpid(), early.process.pid)  # (the box's from now on)
        conn.settimeout(HAND_OVER_TIMEOUT_S)
        try:
            return receive_box(conn)
        except OSError:
            return None

    def check(self, early: VmmProcess, deadline: float) -> None:
        if self.stopping.is_set():
            raise _Stop("stopped by a signal")
        if time.monotonic() > deadline:
            raise _Stop(f"not taken within {self.idle_s:.0f} s")
        if not (self.template / ROOTFS_LAYER).exists():
            raise _Stop("its template is gone")
        if not (self.files.dir / SPARE_META).exists():
            raise _Stop("its directory is gone")
        if early.process.poll() is not None:
            raise _Stop("its VM stopped")

    def become_shim(self, handed: HandedBox, early: VmmProcess, adopted: Adopted) -> int:
        """Move into the box, then run as its shim (shim/main.py)."""
        from boxlite_cli.shim.main import main, report_failure

        box = BoxFiles(handed.box_dir)
        log.info("taken for the box in %s", box.dir)
        try:
            _move_into(self.files, box)
        except OSError as e:
            log.error("could not move into the box: %s", e)
            report_failure(handed.ready_fd, f"the spare VM could not be used ({e})")
            self.remove()
            return 1
        logging.root.handlers.clear()  # the box's shim log from here on
        log_to(handed.log_fd)
        shutil.rmtree(self.files.dir, ignore_errors=True)
        return main(["shim", str(box.dir), str(handed.ready_fd)], early,
                    output_fds=handed.output_fds, adopted=adopted)


def serve_spare(spare_dir: Path) -> int:
    """`python -m boxlite_cli.shim --spare DIR`."""
    try:
        spare = Spare(spare_dir)
    except (OSError, ValueError, KeyError, TypeError):  # removed already (stop_all)
        shutil.rmtree(spare_dir, ignore_errors=True)
        return 0
    return spare.serve()
