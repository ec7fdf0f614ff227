"""Staging directories for export, import and clone: work happens in temp paths and is
committed by rename, so a CLI killed at any point (kill -9) leaves no half-made box.

Each operation gets `<data>/staging/<kind>-<random>/` holding `owner.json` (the
process, pid and start time). A later export, import or clone removes the staging
directories whose owner is gone, and the files they list as `extra` (a partial
output archive written outside the home, when the file system there has no O_TMPFILE).
The staging root is on the boxes' file system, so a staged box directory moves into
`<data>/boxes/` with one rename.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.diskuse import allocated_bytes
from boxlite_cli.state.paths import Paths
from boxlite_cli.state.pidfile import ProcessRecord

OWNER = "owner.json"
ORPHAN_GRACE_S = 60.0  # a directory without owner.json yet: its maker may still be writing it


def staging_root(paths: Paths) -> Path:
    return paths.data / "staging"


class Stage:
    """One operation's staging directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.extra: list[str] = []

    def _save(self) -> None:
        write_json_atomic(self.dir / OWNER, {"owner": ProcessRecord.current().to_json(),
                                             "extra": self.extra})

    def track(self, path: Path) -> None:
        """Also remove `path` (outside the staging directory) if this operation dies."""
        self.extra.append(str(path))
        self._save()

    def untrack(self, path: Path) -> None:
        with contextlib.suppress(ValueError):
            self.extra.remove(str(path))
            self._save()

    def discard(self) -> None:
        for extra in self.extra:
            Path(extra).unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def stage(paths: Paths, kind: str) -> Iterator[Stage]:
    """A fresh staging directory, removed (with what it tracks) when the block ends."""
    root = staging_root(paths)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = root / f"{kind}-{secrets.token_hex(8)}"
    directory.mkdir(mode=0o700)
    st = Stage(directory)
    try:
        st._save()
        yield st
    finally:
        st.discard()


def _stale(paths: Paths) -> Iterator[tuple[Path, list[Path]]]:
    """The staging directories of dead operations, each with the files it tracks."""
    try:
        entries = list(staging_root(paths).iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            data = json.loads((entry / OWNER).read_text())
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime > ORPHAN_GRACE_S:
                    yield entry, []
            continue
        except (OSError, ValueError):
            data = {}
        owner = ProcessRecord.from_json(data.get("owner") if isinstance(data, dict) else None)
        if owner is not None and owner.alive():
            continue
        extra = data.get("extra") if isinstance(data, dict) else None
        yield entry, [Path(i) for i in (extra if isinstance(extra, list) else [])
                      if isinstance(i, str)]


def clean_stale(paths: Paths) -> list[str]:
    """Remove the staging directories (and their tracked files) of dead operations."""
    removed: list[str] = []
    for entry, extra in _stale(paths):
        for item in extra:
            with contextlib.suppress(OSError):
                item.unlink()
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


def stale_bytes(paths: Paths) -> int:
    """What clean_stale would free: the space dead operations' leftovers take (system df)."""
    total = 0
    for entry, extra in _stale(paths):
        total += allocated_bytes(entry)
        for item in extra:
            with contextlib.suppress(OSError):
                total += item.lstat().st_blocks * 512
    return total
