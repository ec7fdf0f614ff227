"""Spare VMs: when they are made, found and taken (the spare itself: shim/spare.py).

A box started warm from a primed template (a fresh box: `run`, or `create` then
`start`) leaves a spare of that template behind it: a VM restored from it, warmed up
and paused, so that the next such box needs no restore and no translation of the
guest's first code (under TCG most of a warm start). The next box of the template
takes it and leaves a new one. At most one spare per template; it uses the host's
idle time to get ready (nice 19, where its priority can be raised again), and goes
away when nobody took it within BOXLITE_SPARE_IDLE_S seconds (default 60), or when
its template goes. A box that publishes ports or has volumes, or any start while no
spare of its template is ready, starts the usual way. BOXLITE_SPARES=0 makes none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.envswitch import env_switch
from boxlite_cli.shim.spareclaim import (
    SPARE_FLAG,
    SPARE_META,
    ClaimedSpare,
    adopt_socket,
    claim_spare,
    lock_path,
)
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.flock import FileLock, Timeout
from boxlite_cli.state.pidfile import ProcessRecord, read_pidfile, write_pidfile

SPARES_ENV = "BOXLITE_SPARES"
SPARE_IDLE_ENV = "BOXLITE_SPARE_IDLE_S"
DEFAULT_SPARE_IDLE_S = 60.0
MAX_SPARE_IDLE_S = 24 * 3600.0
# A spare directory whose process is gone (killed) is removed once it is this old: a
# new one has no process record for the first moments.
STALE_AFTER_S = 60.0
SPARE_ID_LEN = 63  # one shorter than a box id: "spares" is one longer than "boxes"
SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def spares_enabled() -> bool:
    """BOXLITE_SPARES: 1 (the default) or 0; anything else is refused."""
    return env_switch(SPARES_ENV)


def spare_idle_s() -> float:
    """BOXLITE_SPARE_IDLE_S: how long an unused spare waits (seconds, > 0)."""
    value = os.environ.get(SPARE_IDLE_ENV, "").strip()
    if not value:
        return DEFAULT_SPARE_IDLE_S
    try:
        seconds = float(value) if SECONDS.fullmatch(value) else -1.0
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_SPARE_IDLE_S:
        raise UsageError(f"invalid {SPARE_IDLE_ENV}={value!r}",
                         hint=f"a number of seconds, above 0 and at most {MAX_SPARE_IDLE_S:.0f}")
    return seconds


@dataclasses.dataclass(frozen=True)
class SpareInfo:
    directory: Path
    key: str  # "" when its spare.json is missing or unreadable: it is never taken
    process: ProcessRecord | None  # None: its process is gone (or not started yet)
    ready: bool

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class Spares:
    """The spares of one home, under `<data>/spares/`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self) -> list[SpareInfo]:
        try:
            entries = sorted(p for p in self.root.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []
        found = []
        for directory in entries:
            try:
                key = str(json.loads((directory / SPARE_META).read_text())["key"])
            except (OSError, ValueError, KeyError, TypeError):
                key = ""  # (still listed: stop_all and sweep see to it)
            record = read_pidfile(BoxFiles(directory).shim_pid)
            if record is not None and not record.alive():
                record = None
            found.append(SpareInfo(directory, key, record,
                                   ready=record is not None and adopt_socket(directory).exists()))
        return found

    def claim(self, key: str) -> ClaimedSpare | None:
        """Take a ready spare of template `key` (None when there is none to take)."""
        for spare in self.list():
            if key and spare.key == key and spare.ready and spare.pid is not None:
                claimed = claim_spare(spare.directory, spare.pid)
                if claimed is not None:
                    return claimed
        return None

    def replenish_meanwhile(self, key: str, template: Path, launch: Launch) -> threading.Thread:
        """replenish() in a thread of its own, so that it overlaps the box's command
        instead of delaying it (~15 ms of files and a process start). Not a daemon:
        the interpreter waits for it before this process exits."""
        thread = threading.Thread(target=self._replenish_quietly, args=(key, template, launch),
                                  name="boxlite-replenish")
        thread.start()
        return thread

    def _replenish_quietly(self, key: str, template: Path, launch: Launch) -> None:
        # (a thread's traceback would land on the user's stderr, after the command's
        # output: a spare is never worth a failure, nor a word)
        with contextlib.suppress(Exception):
            self.replenish(key, template, launch)

    def replenish(self, key: str, template: Path, launch: Launch) -> None:
        """Start a spare of template `key` (the box `launch` started from it) unless
        one is there or being made. Best effort: a spare is never worth a failure."""
        with contextlib.suppress(OSError, Timeout, UsageError):
            if not spares_enabled():
                return
            idle_s = spare_idle_s()
            with FileLock(lock_path(self.root, key), timeout=0):
                pass  # free: no spare of this template (its spare holds the lock)
            self.sweep()
            directory = self.root / secrets.token_hex(32)[:SPARE_ID_LEN]
            self.root.mkdir(mode=0o700, exist_ok=True)
            directory.mkdir(mode=0o700)
            write_json_atomic(directory / SPARE_META, {"key": key, "template": str(template),
                                                       "idle_s": idle_s})
            (directory / "disks").mkdir(mode=0o700)
            files = BoxFiles(directory)
            vm = dataclasses.replace(
                launch.vm, rootfs_disk=files.rootfs_disk, console_log=files.console_log,
                agent_socket=files.vm_socket, control_socket=files.control_socket,
                net_socket=str(files.sockets / "net.sock"), port_forwards=(),
                restore_from=str(template))
            Launch(driver=launch.driver, vm=vm, boot_timeout_s=launch.boot_timeout_s,
                   network=launch.network).save(directory / "vm.json")
            home = os.environ.get("BOXLITE_HOME", "")  # (in the command line, as every shim's)
            spare = subprocess.Popen([sys.executable, "-m", "boxlite_cli.shim", SPARE_FLAG,
                                      str(directory), home],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
            record = ProcessRecord.of(spare.pid)  # (the spare writes its own too)
            if record is not None:
                write_pidfile(files.shim_pid, record)

    def sweep(self) -> None:
        """Remove what spares killed on the way left (directory, sockets)."""
        for spare in self.list():
            if spare.pid is None and _age_s(spare.directory) > STALE_AFTER_S:
                _remove(spare.directory)

    def stop_all(self, wait_s: float = 10.0) -> int:
        """Stop every spare (SIGTERM: each powers off and removes itself), remove what
        dead ones left, and wait up to `wait_s` for them to go. How many there were."""
        spares = self.list()
        for spare in spares:
            if spare.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(spare.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        pending = spares
        while pending:
            for spare in pending:
                if spare.process is None or not spare.process.alive():
                    _remove(spare.directory)  # (one killed before its handler was set)
            pending = [s for s in pending if s.directory.exists()
                       or (s.process is not None and s.process.alive())]
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        self._remove_free_locks()
        return len(spares)

    def _remove_free_locks(self) -> None:
        """The templates' lock files that no spare holds (one may be made again: then
        its lock file is made again)."""
        with contextlib.suppress(OSError):
            for path in self.root.glob("*.lock"):
                with contextlib.suppress(OSError, Timeout), FileLock(path, timeout=0):
                    path.unlink()


def _remove(directory: Path) -> None:
    shutil.rmtree(BoxFiles(directory).sockets, ignore_errors=True)
    shutil.rmtree(directory, ignore_errors=True)


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0
