"""Snapshots of a box: its disk (any time) and, on request, its memory (a checkpoint).

A stopped box's active overlay is frozen in place (renamed) under a new one. A running
box's file system is frozen (FIFREEZE) and its VM paused for the instant it takes to
copy its overlay (and, with `memory`, to save its RAM and device state).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from boxlite_cli.disks.chain import BoxDisks, Snapshot
from boxlite_cli.disks.tools import run_tool
from boxlite_cli.errors import (
    BoxliteError,
    Conflict,
    Interrupted,
    NoSuchBox,
    NotFound,
    PayloadError,
    UsageError,
    VmError,
)
from boxlite_cli.payload import PAYLOAD_NAME, Payload, payload_dir
from boxlite_cli.runtime.diskbase import check_disk_base
from boxlite_cli.runtime.pausing import refuse_paused
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.flock import Timeout
from boxlite_cli.state.pidfile import ProcessRecord
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.vmm.base import VmControl
from boxlite_cli.vmm.drivers import get_driver

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime

RUNNING = (Status.RUNNING,)
AUTO_THAW_S = 30.0  # the guest thaws by itself if the worker dies mid-snapshot
BUSY = (Status.STARTING, Status.STOPPING, Status.CREATING)
COLLECT_LOCK_WAIT_S = 2.0
# In a checkpoint's memory directory: the guest payload its VM ran on. The guest's page
# cache holds that payload's agent disk, so the memory resumes on that very disk only.
MEMORY_PAYLOAD = "payload.json"


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def record_payload(memdir: Path, agent_root: Path) -> None:
    """Note in a checkpoint which payload (`agent_root`'s) its memory runs on."""
    write_json_atomic(memdir / MEMORY_PAYLOAD, {"payload": agent_root.parent.name,
                                                "root": str(agent_root.parent),
                                                "agent_root": _identity(agent_root)})


def memory_payload(memdir: Path, current: Payload, box: str = "BOX",
                   name: str = "NAME") -> Payload:
    """The payload that the checkpoint memory in `memdir` resumes on: the one it was
    taken on, which need not be `current` (a boxlite upgrade builds another). PayloadError
    when that one is gone or was rebuilt. (A checkpoint without the record predates it.)"""
    try:
        data = json.loads((memdir / MEMORY_PAYLOAD).read_text())
        digest, root, identity = str(data["payload"]), str(data["root"]), list(data["agent_root"])
    except FileNotFoundError:
        return current
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PayloadError(f"the checkpoint's payload record {memdir / MEMORY_PAYLOAD} is "
                           f"unreadable ({e})") from None
    named: tuple[Payload, ...] = (Payload(payload_dir(digest)),) if PAYLOAD_NAME.fullmatch(digest) else ()
    for candidate in (current, Payload(Path(root)), *named):
        try:
            if _identity(candidate.agent_root) == identity:
                candidate.mark_used()
                return candidate
        except OSError:
            continue
    raise PayloadError(
        f"the checkpoint was taken on guest payload {digest}, which is no longer on this "
        f"machine (now {current.digest}); its memory cannot resume on another payload",
        hint=f"restore its disk instead: boxlite snapshot restore {box} {name}")


def box_disks(rt: Runtime, box_id: str) -> BoxDisks:
    try:
        label = f"box {rt.boxes.read(box_id).name}"
    except BoxliteError:
        label = f"box {box_id[:12]}"
    return BoxDisks(rt.files(box_id).rootfs_disk.parent, label)


def create(rt: Runtime, ref: str, name: str, memory: bool = False,
           internal: bool = False) -> Snapshot:
    """Snapshot a box's disk (and with `memory` its RAM: needs a running box).

    For a running box, the freeze-pause-copy-resume runs in a detached worker process,
    so that a CLI killed midway cannot leave the VM paused or its file system frozen.
    `internal`: a snapshot this process makes for itself (a clone's base, an export's
    copy). It is always a copy, so the box's own chain never grows, and it is owned by
    this process: collect_unused() removes it once that is gone and nothing uses it."""
    owner = ProcessRecord.current().to_json() if internal else None
    box_id = rt.resolve(ref)
    with rt.boxes.lock(box_id):
        state = rt.observe(rt.boxes.read(box_id))
        if state.status in BUSY:
            raise Conflict(f"box {state.name} is {state.status}; try again when it is settled")
        refuse_paused(state, "snapshot its disk (its guest cannot flush it)")
        if not internal:  # (a clone's or an export's: they check for themselves)
            check_disk_base(state)
        disks = box_disks(rt, box_id)
        frozen, _ = disks.plan(name)  # checks the name before anything happens
        if memory and state.config.mounts:
            # (QEMU refuses to migrate a mounted 9p export, and then leaves the VM paused)
            raise UsageError(f"box {state.name} has volumes, which a memory checkpoint cannot "
                             "carry (virtio-9p state does not migrate)",
                             hint=f"take a disk snapshot instead: boxlite snapshot create "
                                  f"{state.name} {name}")
        if memory and state.status in RUNNING:
            _refuse_pending_resize(rt, state)
        if state.status not in RUNNING:
            if memory:
                raise UsageError(f"box {state.name} is not running: a memory checkpoint needs "
                                 "a running box", hint="start it first, or drop --memory")
            if owner is not None:
                disks.copy_active(frozen)
            else:
                disks.freeze_active(frozen)
            return disks.record(name, frozen, owner=owner)
    return _run_worker(rt, box_id, name, memory, owner)


def _refuse_pending_resize(rt: Runtime, state: BoxState) -> None:
    """A box `update` resized runs with its old size until it starts again: its memory
    would be resumed into a VM of the new one, which QEMU refuses (the checkpoint could
    never be resumed, and update then refuses to size the box back)."""
    try:
        vm = Launch.load(rt.files(state.id).dir / "vm.json").vm
    except (OSError, ValueError, KeyError, TypeError):
        return  # (the worker says what is wrong with it)
    if (vm.cpus, vm.memory_mib) != (state.config.cpus, state.config.memory_mib):
        raise Conflict(f"box {state.name} runs with {vm.cpus} CPU(s) and {vm.memory_mib} MiB, "
                       f"but `update` gave it {state.config.cpus} and "
                       f"{state.config.memory_mib} MiB from its next start: a checkpoint "
                       "of it now could not be resumed",
                       hint=f"restart it first (boxlite restart {state.name}), or take a disk "
                            "snapshot (no --memory)")


def _run_worker(rt: Runtime, box_id: str, name: str, memory: bool,
                owner: dict[str, int] | None) -> Snapshot:
    """The worker, waited for to its end whatever comes: a Ctrl-C or SIGTERM meanwhile
    is held until it is done (killed midway, it would leave the VM paused). Then an
    internal snapshot is taken back and its maker (a clone, an export) gets the
    interrupt; a user's snapshot, made, is kept and said, with a warning."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "boxlite_cli.runtime.snapshots", box_id, name,
         "memory" if memory else "disk", json.dumps(owner)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # (not in the terminal's process group: no Ctrl-C of its own)
    interrupted: BaseException | None = None
    while True:
        try:
            out, err = proc.communicate()
            break
        except (KeyboardInterrupt, Interrupted) as e:  # (subprocess.run killed it here)
            interrupted = e
    try:
        reply = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise VmError(f"the snapshot worker failed: {err.strip()[-300:]}") from None
    if "error" in reply:
        raise _ended_meanwhile(rt, box_id) or VmError(str(reply["error"]),
                                                       hint=reply.get("hint"))
    snap = box_disks(rt, box_id).get(name)
    if interrupted is not None:
        if owner is not None:  # (a copy: nothing is built on it yet, it goes at once)
            with contextlib.suppress(BoxliteError, OSError):
                remove(rt, box_id, name)
            raise interrupted
        rt.warn(f"snapshot {name} was being taken when interrupted, and was finished (its "
                "VM cannot be left paused midway)")
    return snap


def _ended_meanwhile(rt: Runtime, box_id: str) -> BoxliteError | None:
    """Why a running box's snapshot failed, where the box went under it (rm -f, stop):
    that, not what its VM's vanished sockets said."""
    try:
        state = rt.observe(rt.boxes.read(box_id))
    except NotFound:
        return NoSuchBox(f"box {box_id[:12]} was removed while the snapshot was being taken")
    except BoxliteError:
        return None
    if state.status not in RUNNING:
        return Conflict(f"box {state.name} stopped while the snapshot was being taken")
    return None


def snapshot_running(rt: Runtime, box_id: str, name: str, memory: bool,
                     owner: dict[str, int] | None = None) -> Snapshot:
    """The critical section: freeze the file system (disk snapshots), pause, switch the
    disk or save the memory, resume, thaw."""
    from boxlite_cli.agent.client import AgentClient

    with rt.boxes.lock(box_id):
        state = rt.observe(rt.boxes.read(box_id))
        if state.status not in RUNNING:
            raise Conflict(f"box {state.name} is {state.status}, no longer running")
        refuse_paused(state, "snapshot its disk (its guest cannot flush it)")
        disks = box_disks(rt, box_id)
        frozen, memdir = disks.plan(name)
        launch = Launch.load(rt.files(box_id).dir / "vm.json")
        control = get_driver(launch.driver).control(launch.vm)
        client = None if memory else AgentClient.connect(f"unix:{rt.files(box_id).agent_socket}")
        try:
            if client is not None:
                client.quiesce(True, auto_thaw_s=AUTO_THAW_S)
            control.pause()  # QEMU drains and flushes the disk when the VM stops
            try:
                return _copy_at_pause(disks, control, name, frozen, memdir if memory else None,
                                      launch.vm.agent_root, owner)
            finally:
                control.resume()
        finally:
            if client is not None:
                with contextlib.suppress(BoxliteError):
                    client.quiesce(False)
                client.close()


def _copy_at_pause(disks: BoxDisks, control: VmControl, name: str, frozen: Path,
                   memdir: Path | None, agent_root: Path,
                   owner: dict[str, int] | None = None) -> Snapshot:
    """With the VM paused (its disk flushed, nothing in flight): save the memory when
    asked, and copy the active overlay as it stands; the box keeps writing to its own.

    (QEMU 7.2 can switch a running disk to a new layer, but a later migration then
    leaves it unable to re-lock its disks on resume; the overlay holds only the box's
    own writes, so a copy is cheap and always safe.)"""
    try:
        if memdir is not None:
            memdir.mkdir(parents=True)
            control.snapshot(memdir)
            record_payload(memdir, agent_root)
        disks.snapshot_dir.mkdir(parents=True, exist_ok=True)
        run_tool(["cp", "--sparse=always", str(disks.active), str(frozen)],
                 "copying the box's disk")
    except BaseException:
        if memdir is not None:
            shutil.rmtree(memdir, ignore_errors=True)
        frozen.unlink(missing_ok=True)
        raise
    return disks.record(name, frozen, memdir, owner)


def collect_unused(rt: Runtime) -> list[str]:
    """Remove the internal snapshots (see create()) whose maker is gone and that no disk
    is built on: the base of clones once the last of them is removed, or what a killed
    clone or export left. Boxes busy elsewhere are left for the next time."""
    box_dirs = [rt.boxes.box_dir(box_id) for box_id in rt.boxes.ids()]
    removed = []
    for box_dir in box_dirs:
        disks = BoxDisks(box_dir / "disks")
        try:
            garbage = [snap for snap in disks.all() if snap.owner is not None]
        except BoxliteError:
            continue
        for snap in garbage:
            maker = ProcessRecord.from_json(snap.owner)
            if (maker is not None and maker.alive()) or disks.dependents(snap.file, box_dirs):
                continue
            with contextlib.suppress(BoxliteError, Timeout, OSError), \
                    rt.boxes.lock(box_dir.name, timeout=COLLECT_LOCK_WAIT_S):
                disks.remove(snap.name, box_dirs)  # (which looks at the users again)
                removed.append(f"{box_dir.name[:12]}:{snap.name}")
    return removed


def list_all(rt: Runtime, ref: str) -> list[Snapshot]:
    return box_disks(rt, rt.resolve(ref)).all()


def _stopped(rt: Runtime, box_id: str) -> BoxState:
    state = rt.observe(rt.boxes.read(box_id))
    if state.status not in (Status.CREATED, Status.EXITED):
        raise Conflict(f"box {state.name} is {state.status}: stop it first",
                       hint=f"boxlite stop {state.name}")
    return state


def restore(rt: Runtime, ref: str, name: str) -> Snapshot:
    """Roll a stopped box's disk back to snapshot `name` (later snapshots stay)."""
    box_id = rt.resolve(ref)
    with rt.boxes.lock(box_id):
        _stopped(rt, box_id)
        return box_disks(rt, box_id).restore(name)


def remove(rt: Runtime, ref: str, name: str) -> None:
    """Delete a snapshot; a stopped box's own disks built on it take its data in."""
    box_id = rt.resolve(ref)
    with rt.boxes.lock(box_id):
        state = rt.observe(rt.boxes.read(box_id))
        stopped = state.status in (Status.CREATED, Status.EXITED)
        box_dirs = [rt.boxes.box_dir(s.id) for s in rt.boxes.all() if not isinstance(s, Exception)]
        box_disks(rt, box_id).remove(name, box_dirs, merge=stopped)


def checkpoint_memory(rt: Runtime, box_id: str, name: str) -> Path:
    """Roll the (stopped) box's disk back to checkpoint `name`; its memory directory."""
    state = _stopped(rt, box_id)
    disks = box_disks(rt, box_id)
    snap = disks.get(name)
    if not snap.memory:
        raise UsageError(f"snapshot {name!r} has no memory: it was taken without --memory",
                         hint=f"restore its disk with: boxlite snapshot restore BOX {name}")
    memory_payload(Path(snap.memory), rt.payload(), state.name, name)  # before the rollback
    disks.restore(name)
    return Path(snap.memory)


def main(argv: list[str]) -> int:
    """The detached worker: `python -m boxlite_cli.runtime.snapshots BOX NAME KIND OWNER`
    (OWNER: JSON, null for a user's snapshot), with the CLI's environment (the same home)."""
    from boxlite_cli.runtime.runtime import Runtime

    box_id, name, kind, owner = argv
    try:
        snapshot_running(Runtime(), box_id, name, kind == "memory", json.loads(owner))
        print(json.dumps({"ok": True}))
    except BoxliteError as e:
        print(json.dumps({"error": e.message, "hint": e.hint}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
