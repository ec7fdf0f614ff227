"""The box store: one directory per box, names reserved atomically, locked updates."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from boxlite_cli.errors import Conflict, NoSuchBox, NotFound, StateCorrupt, UsageError
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.flock import FileLock, Timeout
from boxlite_cli.state.paths import Paths
from boxlite_cli.state.records import BoxState, load_state
from boxlite_cli.state.volumes import VOLUME

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}\Z")  # docker's: two at least
STATE_FILE = "state.json"
LOCK_FILE = "box.lock"
RESTART_LOCK_FILE = "restart.lock"  # held across a restart's stop and start
STATELESS_GRACE_S = 10.0  # a box directory without its state file longer: a broken box


def new_box_id() -> str:
    return secrets.token_hex(32)


def validate_name(name: str) -> None:
    if len(name) > 128:
        raise UsageError(f"invalid box name {name[:20]!r}...: at most 128 characters")
    if not NAME_RE.match(name):
        raise UsageError(
            f"invalid box name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            + (", two characters at least" if len(name) < 2 else "")
        )


class BoxLock(FileLock):
    """A box's lock, which tells a removed box (NoSuchBox) from a failure to lock."""

    def acquire(self, timeout: float | None = None) -> FileLock:
        box_id = Path(self.lock_file).parent.name
        try:
            return super().acquire(timeout)
        except FileNotFoundError:
            raise NoSuchBox(f"no such box: {box_id[:12]}") from None
        except Timeout as e:
            raise Conflict(f"box {box_id[:12]} is busy: another boxlite command has held it "
                           f"for {e.timeout:g} s", hint="try again once it is done") from None


class BoxStore:
    """Box directories under `<home>/boxes`, names under `<home>/names`."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.names = paths.data / "names"

    @classmethod
    def for_data_dir(cls, data: Path) -> BoxStore:
        """The store of a home given only its data directory (as the shim knows it)."""
        return cls(Paths(data=data, config=data / "config", cache=data / "cache"))

    def box_dir(self, box_id: str) -> Path:
        return self.paths.box_dir(box_id)

    def lock(self, box_id: str, timeout: float = 30) -> FileLock:
        """The box's lock; NoSuchBox once its directory is gone (it is not made again)."""
        return BoxLock(self.box_dir(box_id) / LOCK_FILE, timeout=timeout, create_parents=False)

    def restart_lock(self, box_id: str, timeout: float) -> FileLock:
        """Held across one `restart`'s stop and start: restarts from many shells take
        turns, each a whole stop and start (docker's), instead of finding the box
        started by another ("already running") or stopped under their start."""
        return BoxLock(self.box_dir(box_id) / RESTART_LOCK_FILE, timeout=timeout,
                       create_parents=False)

    # names -------------------------------------------------------------------------

    def reserve_name(self, name: str, box_id: str) -> None:
        """Atomically bind `name` to `box_id`; Conflict if another live box has it."""
        validate_name(name)
        self.names.mkdir(parents=True, exist_ok=True)
        link = self.names / name
        # One reserver at a time: checking a stale link and replacing it must be atomic.
        with FileLock(str(self.paths.data / "names.lock"), timeout=30):
            self._reserve_locked(name, box_id, link)

    def _reserve_locked(self, name: str, box_id: str, link: Path) -> None:
        for _ in range(3):
            try:
                os.symlink(box_id, link)
                return
            except FileExistsError:
                owner = os.readlink(link)
                if (self.box_dir(owner) / STATE_FILE).exists() or self.box_dir(owner).exists():
                    raise Conflict(
                        f'the name "{name}" is already in use by box {owner[:12]}',
                        hint="remove (or rename) that box to reuse the name, or choose another",
                    ) from None
                # A stale reservation of a box that no longer exists.
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
        raise Conflict(f'could not reserve the name "{name}"')

    def release_name(self, name: str, box_id: str) -> None:
        link = self.names / name
        with contextlib.suppress(OSError):
            if os.readlink(link) == box_id:
                link.unlink()

    def rename(self, box_id: str, old: str, new: str) -> None:
        self.reserve_name(new, box_id)
        self.release_name(old, box_id)

    # state -------------------------------------------------------------------------

    def create_dir(self, box_id: str) -> Path:
        d = self.box_dir(box_id)
        d.mkdir(parents=True, mode=0o700)
        (d / "disks").mkdir(mode=0o700)
        return d

    def write(self, state: BoxState) -> None:
        """Write state.json atomically (durably, but for a `--rm` box's). The caller
        holds the box lock."""
        write_json_atomic(self.box_dir(state.id) / STATE_FILE, state.to_json(),
                          durable=not state.config.auto_remove)

    def read(self, box_id: str) -> BoxState:
        path = self.box_dir(box_id) / STATE_FILE
        try:
            return load_state(path)
        except StateCorrupt as e:
            e.box_id = box_id
            raise
        except FileNotFoundError:
            if self._stateless(box_id):
                error = StateCorrupt(f"box {box_id[:12]} has no state file ({path})",
                                     hint=f"remove what is left of it with: boxlite rm -f "
                                          f"{box_id[:12]}")
                error.box_id = box_id
                raise error from None
            raise NoSuchBox(f"no such box: {box_id[:12]}") from None

    def _stateless(self, box_id: str) -> bool:
        """The box's directory is there without its state file, and not for the moment
        a create takes to write it: what a create killed at that moment, or a hand that
        deleted the file, left (a removal renames the whole directory away first). Its
        age is its disks directory's, which the create made just before (its own
        directory's changes with every lock and write in it)."""
        box_dir = self.box_dir(box_id)
        try:
            changed = (box_dir / "disks").stat().st_mtime
        except FileNotFoundError:
            try:
                changed = box_dir.stat().st_mtime
            except OSError:
                return False
        except OSError:
            return False
        return time.time() - changed > STATELESS_GRACE_S

    def ids(self) -> list[str]:
        try:
            return sorted(p.name for p in self.paths.boxes.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def all(self) -> Iterator[BoxState | StateCorrupt]:
        """Every box, or the error that its state file gives, in id order."""
        for box_id in self.ids():
            try:
                yield self.read(box_id)
            except StateCorrupt as e:
                yield e
            except NotFound:
                continue  # removed while we listed, or still being made

    def mounted_volumes(self) -> set[str]:
        """The names of the volumes that the readable boxes mount."""
        return {m.source for s in self.all() if not isinstance(s, StateCorrupt)
                for m in s.config.mounts if m.kind == VOLUME}

    def resolve(self, ref: str) -> str:
        """Box id for a full id, a unique id prefix or a name (docker's rules)."""
        if not ref:
            raise UsageError("empty box name or id")
        ids = self.ids()
        if ref in ids:
            return ref
        link = self.names / ref
        with contextlib.suppress(OSError):
            owner = os.readlink(link)
            if owner in ids:
                return owner
        matches = [i for i in ids if i.startswith(ref)] if re.fullmatch(r"[0-9a-f]+", ref) else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise Conflict(f"box id prefix {ref!r} is ambiguous: it matches {len(matches)} boxes")
        raise NoSuchBox(f"no such box: {ref}")

    def remove_dir(self, box_id: str) -> None:
        d = self.box_dir(box_id)
        # Rename first so a half-removed box never looks like a box.
        trash_root = self.paths.data / "trash"
        trash_root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            try:
                os.rename(d, trash_root / box_id)
            except OSError as e:  # (what a killed removal of this very box left there)
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(trash_root / box_id, ignore_errors=True)
                os.rename(d, trash_root / box_id)
        # This box's, and what removals killed midway left here (nothing else reads
        # the trash: two removals emptying it at once is harmless)
        with contextlib.suppress(FileNotFoundError):
            for entry in list(trash_root.iterdir()):
                shutil.rmtree(entry, ignore_errors=True)

    def name_of(self, box_id: str) -> str | None:
        """The reserved name of a box, from the names directory (works when state is corrupt)."""
        with contextlib.suppress(FileNotFoundError):
            for link in self.names.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(link) == box_id:
                        return link.name
        return None
