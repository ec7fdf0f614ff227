"""`boxlite pause` / `unpause`: a running box's VM stopped and continued (QEMU's `stop`
and `cont`), as docker's cgroup freezer stops a container's processes.

A paused box keeps its memory and its processes; it uses no CPU. What needs its guest
(exec, cp, snapshots, export, clone, signals other than SIGKILL) is refused with the
fix; `stop`, `restart`, `kill -s KILL` and `rm -f` continue it first (or kill it)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from boxlite_cli.errors import BoxliteError, Conflict, DiskError, NoSuchBox
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.state.flock import Timeout
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.vmm.drivers import get_driver

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime
    from boxlite_cli.vmm.base import VmControl

GUEST_READERS = "guest-readers.lock"  # (in the box's directory)


def _readers_lock(box_dir: Path) -> int:
    return os.open(box_dir / GUEST_READERS, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextlib.contextmanager
def reading_through_guest(box_dir: Path) -> Iterator[None]:
    """Held (a shared lock) while a command reads or writes the box's files through its
    guest (cp, commit, diff): `pause` is refused meanwhile, as the guest would stop
    answering under it and the command wait for the unpause. Take it before checking
    that the box is not paused (refuse_paused), so the two cannot cross."""
    fd = _readers_lock(box_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def no_guest_readers(state: BoxState, box_dir: Path) -> Iterator[None]:
    """Within: no command reads the box through its guest, nor starts to; a Conflict
    when one does."""
    fd = _readers_lock(box_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(f"box {state.name} is being read through its guest (a commit, "
                           "cp or diff): it cannot be paused under it",
                           hint="pause it once that is done") from None
        yield
    finally:
        os.close(fd)


def refuse_paused(state: BoxState, doing: str) -> None:
    """Conflict, with the fix, when `state`'s box is paused, or its VM stands stopped
    (a full host disk): its guest would answer nothing."""
    if state.is_paused:
        raise Conflict(f"box {state.name} is paused: cannot {doing}",
                       hint=f"unpause it first: boxlite unpause {state.name}")
    if state.is_held:
        raise Conflict(f"box {state.name}'s VM is stopped: its disk could not be written "
                       f"(the host's disk is full): cannot {doing}",
                       hint=f"free space there, then: boxlite unpause {state.name}")


def _set_paused(rt: Runtime, ref: str, paused: bool) -> BoxState:
    box_id = rt.resolve(ref)
    with rt.boxes.lock(box_id):
        state = rt.observe(rt.boxes.read(box_id))
        if state.status != Status.RUNNING:
            raise Conflict(f"box {state.name} is not running",
                           hint=None if state.status in (Status.STARTING, Status.STOPPING)
                           else f"start it: boxlite start {state.name}")
        if state.is_paused == paused and (paused or not _vm_stopped(rt, box_id)):
            raise Conflict(f"box {state.name} is {'already' if paused else 'not'} paused")
        if paused and rt.files(box_id).stop_requested.exists():
            # (a stop, restart or rm -f is under way: it continued the VM if it was
            # paused, and a pause now would leave its signal to a stopped guest)
            raise Conflict(f"box {state.name} is being stopped")
        launch = Launch.load(rt.files(box_id).dir / "vm.json")
        control = get_driver(launch.driver).control(launch.vm)
        if paused:
            with no_guest_readers(state, rt.files(box_id).dir):
                control.pause()
        else:
            control.resume()
            held = state.held
            state.held = None
            if held and _stopped_again(control):  # (the write it held is tried at once)
                raise DiskError(f"box {state.name}'s VM stopped again at once: the host's "
                                "disk is still full",
                                hint=f"free space there, then: boxlite unpause {state.name}")
        state.paused = paused
        rt.boxes.write(state)
    if not paused:
        _resync_clock(rt, state)
    return state


STOPPED_AGAIN_S = 1.0  # how long an unpaused VM held by a full disk is watched


def _stopped_again(control: VmControl) -> bool:
    """The VM QEMU continued stands stopped again (io-error) within STOPPED_AGAIN_S."""
    deadline = time.monotonic() + STOPPED_AGAIN_S
    while time.monotonic() < deadline:
        time.sleep(0.1)
        with contextlib.suppress(BoxliteError, OSError, ValueError):
            if str(control.info()["state"]).lower() == "io-error":
                return True
    return False


# QEMU's run states of a VM stopped though nobody paused the box: a snapshot worker
# killed while it held it ("paused"), a disk write the host's full disk refused
# ("io-error": QEMU's werror=enospc stops the VM, and continues it once asked)
STOPPED_STATES = frozenset({"paused", "io-error"})


def _vm_stopped(rt: Runtime, box_id: str) -> bool:
    """The box's VM stands stopped though the box is not paused: `unpause` continues it,
    as the fix for what would hang (after a full disk, once space is freed)."""
    with contextlib.suppress(BoxliteError, OSError, ValueError):
        launch = Launch.load(rt.files(box_id).dir / "vm.json")
        state = get_driver(launch.driver).control(launch.vm).info()["state"]
        return str(state).lower() in STOPPED_STATES
    return False


def _resync_clock(rt: Runtime, state: BoxState) -> None:
    """The guest's clock stood still while paused: set it to the host's again."""
    try:
        client = rt.connect(state)
        try:
            client.resync(entropy=os.urandom(64))
        finally:
            client.close()
    except BoxliteError as e:  # (the box runs again either way; its clock lags)
        rt.warn(f"box {state.name} runs again, but its clock could not be set: {e.message}")


def pause(rt: Runtime, ref: str) -> BoxState:
    """Stop a running box's VM where it is."""
    return _set_paused(rt, ref, True)


def unpause(rt: Runtime, ref: str) -> BoxState:
    """Continue a paused box's VM, its clock set to the host's."""
    return _set_paused(rt, ref, False)


def continue_if_paused(rt: Runtime, box_id: str) -> None:
    """For a stop or SIGKILL: a paused box's VM continued first (it cannot be shut down
    gracefully while stopped). A box not paused, or stopped meanwhile, is left alone.

    Read under the box's lock, so a pause under way is waited for; a stop marks itself
    (stop_requested) before this, and pause refuses after that mark."""
    with contextlib.suppress(Conflict, NoSuchBox, Timeout):  # (busy: go on as before)
        with rt.boxes.lock(box_id):
            paused = rt.observe(rt.boxes.read(box_id)).is_paused
        if paused:
            unpause(rt, box_id)
