"""A box's disk chain and its snapshots.

The box writes to `disks/rootfs.qcow2` (the active overlay), always at that path. A
snapshot of a stopped box freezes the active overlay as `disks/snapshots/<id>.qcow2`
(a rename, so it costs nothing) and puts a new, empty active overlay on top of it
(a running box's overlay is copied there instead, see runtime/snapshots.py):

    image base (ext4) <- snapshots/a.qcow2 <- snapshots/b.qcow2 <- rootfs.qcow2

An internal snapshot (a clone's base, an export's instant copy: see
runtime/snapshots.py) is always a copy, never a layer under the active overlay, and
records the process that made it (`owner`).

Snapshots are never written again. Restoring one replaces the active overlay with a
fresh overlay on it. Removing one that disks of the same (stopped) box are built on
merges it into them; one that another box's disk (e.g. of a box made with `run
--from`) is built on cannot be removed. `snapshots.json` names
them; a memory checkpoint also has a directory with the VM's saved RAM.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from boxlite_cli.disks.qcow2 import QCOW2_MAGIC, create_overlay
from boxlite_cli.disks.tools import disk_locked, run_tool
from boxlite_cli.errors import Conflict, DiskError, NotFound, UsageError
from boxlite_cli.state.atomic import write_json_atomic

INDEX = "snapshots.json"
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
MAX_CHAIN_DEPTH = 256  # (a loop in a corrupt chain ends the walk)


def reads(box_dir: Path, layer: Path) -> bool:
    """Whether the box's disk is built on `layer`, at any depth of its backing chain."""
    current: str | None = str(box_dir / "disks" / "rootfs.qcow2")
    for _ in range(MAX_CHAIN_DEPTH):
        if current is None:
            return False
        if current == str(layer):
            return True
        current = qcow2_backing(Path(current))
    return False


@dataclass(frozen=True)
class Snapshot:
    name: str
    file: str  # the frozen overlay
    created: float
    memory: str = ""  # directory of the memory checkpoint, if it has one
    # An internal snapshot (the base of clones, an export's consistent copy): the process
    # that made it. Once that process is gone and no disk is built on it, it is garbage.
    owner: dict[str, int] | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def validate_snapshot_name(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= _NAME_OK or name[0] in ".-":
        raise UsageError(f"invalid snapshot name {name!r}: use 1-64 letters, digits, '_', '.' "
                         "or '-', not starting with '.' or '-'")
    return name


def qcow2_backing(path: Path) -> str | None:
    """The backing file a qcow2 header names (None for none, or not a qcow2)."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
            if len(header) < 20 or header[:4] != QCOW2_MAGIC:
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if not offset or not size or size > 4096:
                return None
            f.seek(offset)
            return f.read(size).decode("utf-8", "surrogateescape")
    except OSError:
        return None


class BoxDisks:
    """The disk chain of one box (callers hold the box's lock)."""

    def __init__(self, disks_dir: Path, label: str = "this box") -> None:
        self.dir = disks_dir
        self.label = label  # for messages: "box NAME"
        self.active = disks_dir / "rootfs.qcow2"
        self.snapshot_dir = disks_dir / "snapshots"
        self.index = disks_dir / INDEX

    # index -------------------------------------------------------------------------

    def all(self) -> list[Snapshot]:
        try:
            data = json.loads(self.index.read_text())
        except FileNotFoundError:
            return []
        except ValueError as e:
            raise DiskError(f"corrupt snapshot index {self.index}: {e}") from e
        return [Snapshot(**item) for item in data.get("snapshots", [])]

    def get(self, name: str) -> Snapshot:
        for snap in self.all():
            if snap.name == name:
                return snap
        named = self.label.removeprefix("box ")
        raise NotFound(f"no snapshot {name!r} of {self.label}",
                       hint=f"list them with: boxlite snapshot ls {named}"
                       if named != self.label else None)

    def _write(self, snaps: list[Snapshot]) -> None:
        write_json_atomic(self.index, {"snapshots": [s.to_json() for s in snaps]})

    def _add(self, snap: Snapshot) -> None:
        self._write([*self.all(), snap])

    # operations --------------------------------------------------------------------

    def plan(self, name: str) -> tuple[Path, Path]:
        """A new snapshot's overlay file and memory directory (not created yet)."""
        validate_snapshot_name(name)
        if any(s.name == name for s in self.all()):
            raise Conflict(f"the box already has a snapshot named {name!r}")
        sid = uuid.uuid4().hex[:16]
        return self.snapshot_dir / f"{sid}.qcow2", self.snapshot_dir / f"{sid}.memory"

    def copy_active(self, frozen: Path) -> None:
        """Copy the (stopped) box's active overlay to `frozen`: the box's own chain stays
        as it is (its overlay holds only the box's own writes, so the copy is cheap)."""
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        partial = frozen.with_name(frozen.name + ".partial")
        try:
            run_tool(["cp", "--sparse=always", str(self.active), str(partial)],
                     "copying the box's disk")
            partial.rename(frozen)
        finally:
            partial.unlink(missing_ok=True)

    def freeze_active(self, frozen: Path) -> None:
        """Move the (stopped) box's active overlay to `frozen` and put a new empty one
        on top of it."""
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.active.rename(frozen)
        try:
            create_overlay(frozen, self.active, base_format="qcow2")
        except BaseException:
            self.active.unlink(missing_ok=True)
            frozen.rename(self.active)
            raise

    def record(self, name: str, frozen: Path, memory: Path | None = None,
               owner: dict[str, int] | None = None) -> Snapshot:
        snap = Snapshot(name, str(frozen), time.time(), str(memory) if memory else "", owner)
        self._add(snap)
        return snap

    def restore(self, name: str) -> Snapshot:
        """Make the active overlay a fresh one on snapshot `name` (the box is stopped)."""
        snap = self.get(name)
        fresh = self.dir / "rootfs.qcow2.new"
        fresh.unlink(missing_ok=True)
        create_overlay(Path(snap.file), fresh, base_format="qcow2")
        fresh.replace(self.active)
        return snap

    @staticmethod
    def _rebase_past(user: Path, layer: Path) -> None:
        """Make `user`, built on `layer`, built on what `layer` is built on instead, with
        the same contents (qemu-img copies into it what it read from `layer`)."""
        info = json.loads(run_tool(["qemu-img", "info", "-U", "--output=json", str(layer)],
                                   f"reading {layer.name}"))
        below = info.get("full-backing-filename") or info.get("backing-filename") or ""
        below_format = info.get("backing-filename-format") or ("raw" if below else "")
        run_tool(["qemu-img", "rebase", "-q", "-f", "qcow2",
                  *(["-F", below_format] if below else []), "-b", below, str(user)],
                 f"merging a snapshot into {user.name}")

    def dependents(self, file: str, box_dirs: list[Path]) -> list[str]:
        """Disks (of any box) whose backing file is `file`."""
        found = []
        for box in box_dirs:
            disks = box / "disks"
            for candidate in [disks / "rootfs.qcow2", *sorted((disks / "snapshots").glob("*.qcow2"))]:
                if candidate.is_file() and qcow2_backing(candidate) == file:
                    found.append(str(candidate))
        return found

    def remove(self, name: str, box_dirs: list[Path], merge: bool = False) -> None:
        """Delete a snapshot. The disks of this box built on it (its active overlay, its
        later snapshots) are rebased onto what it is built on, which copies its data into
        them, when `merge` (the box is stopped); other boxes' disks built on it refuse."""
        snap = self.get(name)
        users = self.dependents(snap.file, box_dirs)
        others = [u for u in users if not Path(u).is_relative_to(self.dir)]
        if others:
            boxes = sorted({Path(u).parent.parent.name[:12] for u in others})
            raise Conflict(f"snapshot {name!r} cannot be removed: the disks of "
                           f"{len(boxes)} other box(es) are built on it ({', '.join(boxes)})",
                           hint="remove the boxes made from it (clones, run --from) first")
        if users and not merge:
            raise Conflict(f"snapshot {name!r} cannot be removed while the box runs: its disk "
                           "is built on it", hint="stop the box first")
        for user in users:  # (killed midway: the user still reads the same data)
            try:
                self._rebase_past(Path(user), Path(snap.file))
            except DiskError as e:
                if not disk_locked(e):
                    raise
                readers = sorted(d.name[:12] for d in box_dirs
                                 if d != self.dir.parent and reads(d, Path(user)))
                raise Conflict(f"snapshot {name!r} cannot be removed now: a running box reads "
                               f"the disks built on it ({', '.join(readers) or 'another box'})",
                               hint="stop the boxes made from this one (clones, run --from), "
                                    "then remove it") from None
        self._write([s for s in self.all() if s.name != name])
        Path(snap.file).unlink(missing_ok=True)
        if snap.memory:
            shutil.rmtree(snap.memory, ignore_errors=True)
