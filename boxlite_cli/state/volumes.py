"""Volumes: the `-v` mounts a box records, and the named volumes of a home.

A named (or anonymous) volume is a host directory `<data>/volumes/<name>/_data`
with its record next to it in `volume.json`. Creating and removing volumes, and
registering a box's use of one, hold `<data>/volumes/volumes.lock`.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from boxlite_cli.errors import NoSuchVolume, NotFound, UsageError
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.flock import FileLock

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
BIND = "bind"
VOLUME = "volume"


@dataclass(frozen=True)
class Mount:
    """One `-v` of a box: a host path (bind) or a volume, on `target` in the box."""

    kind: str  # BIND | VOLUME
    source: str  # absolute host path, or volume name
    target: str
    readonly: bool = False
    anonymous: bool = False
    nocopy: bool = False  # (a volume) not filled from the image while empty

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mount:
        return cls(str(data["kind"]), str(data["source"]), str(data["target"]),
                   bool(data.get("readonly", False)), bool(data.get("anonymous", False)),
                   bool(data.get("nocopy", False)))


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    mountpoint: str
    created_at: float
    anonymous: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "driver": "local", "mountpoint": self.mountpoint,
                "created_at": self.created_at, "anonymous": self.anonymous}


def validate_volume_name(name: str, new: bool = False) -> None:
    """`new`: a name for a volume to be made, two characters at least as docker's (one
    made before that rule still works)."""
    if new and len(name) < 2:
        raise UsageError(f"invalid volume name {name!r}: two characters at least, as docker's")
    if not NAME_RE.match(name):
        raise UsageError(f"invalid volume name {name!r}: use letters, digits and _.- "
                         "(starting with a letter or digit)")


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return FileLock(str(self.root / "volumes.lock"), timeout=30)

    def data_dir(self, name: str) -> Path:
        return self.root / name / "_data"

    def _record(self, name: str) -> Path:
        return self.root / name / "volume.json"

    def get(self, name: str) -> VolumeInfo:
        validate_volume_name(name)
        try:
            data = json.loads(self._record(name).read_text())
        except FileNotFoundError:
            raise NoSuchVolume(f"no such volume: {name}") from None
        except (OSError, ValueError) as e:
            raise NotFound(f"volume {name} is unreadable: {e}") from None
        return VolumeInfo(name, str(self.data_dir(name)), float(data.get("created_at", 0)),
                          bool(data.get("anonymous", False)))

    def exists(self, name: str) -> bool:
        return self._record(name).is_file()

    def create(self, name: str, anonymous: bool = False) -> tuple[VolumeInfo, bool]:
        """The volume `name`, made if missing (call under lock()); (info, made now)."""
        validate_volume_name(name, new=not self.exists(name))
        if self.exists(name):
            return self.get(name), False
        self.data_dir(name).mkdir(parents=True, exist_ok=True, mode=0o755)
        write_json_atomic(self._record(name), {"created_at": time.time(), "anonymous": anonymous})
        return self.get(name), True

    def all(self) -> list[VolumeInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and (entry / "volume.json").is_file():
                try:
                    out.append(self.get(entry.name))
                except (NotFound, UsageError):
                    continue
        return out

    def remove(self, name: str) -> None:
        """Delete the volume and its data (call under lock())."""
        self.get(name)
        shutil.rmtree(self.root / name)


def remove_unused(store: VolumeStore, names: list[str],
                  in_use: Callable[[], set[str]]) -> list[str]:
    """Remove the volumes `names` that no box uses (`in_use`: the volume names boxes
    mount, read under the volumes' lock); the names removed."""
    if not names:
        return []
    removed = []
    with store.lock():
        used = in_use()
        for name in names:
            if name not in used:
                with contextlib.suppress(NotFound):
                    store.remove(name)
                    removed.append(name)
    return removed
