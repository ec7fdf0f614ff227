"""Where boxlite keeps things on disk.

`BOXLITE_HOME` puts all per-user state (boxes, images, config) under one directory.
The guest payload is content-addressed and immutable, so it lives in the XDG cache
dir shared by every home (`BOXLITE_PAYLOAD_CACHE` overrides it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from boxlite_cli.errors import BoxliteError

APP = "boxlite"
# sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Paths:
    """The directories of one boxlite home."""

    data: Path
    config: Path
    cache: Path

    @property
    def boxes(self) -> Path:
        return self.data / "boxes"

    @property
    def images(self) -> Path:
        return self.data / "images"

    @property
    def lock(self) -> Path:
        return self.data / "home.lock"

    def box_dir(self, box_id: str) -> Path:
        return self.boxes / box_id

    def ensure(self) -> None:
        """Make the home's directories; a home that cannot be one says which and why."""
        for d in (self.data, self.boxes, self.images, self.config, self.cache):
            try:
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as e:
                where = ("$BOXLITE_HOME" if os.environ.get("BOXLITE_HOME")
                         else "the XDG data, config and cache directories")
                why = ("it, or a directory above it, is a file" if isinstance(
                    e, FileExistsError | NotADirectoryError) else e.strerror or str(e))
                raise BoxliteError(f"cannot use {d} for boxlite ({where}): {why}",
                                   hint="set BOXLITE_HOME to a directory of yours that can "
                                        "be written") from e


def xdg_dir(variable: str, default: str) -> Path:
    """An XDG base directory: `$variable` when it is an absolute path (the spec says
    to ignore relative ones), else `default` under the home directory."""
    value = os.environ.get(variable, "")
    if os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def home_paths() -> Paths:
    """Paths of the current home: `$BOXLITE_HOME` or the XDG user dirs."""
    home = os.environ.get("BOXLITE_HOME")
    if home:
        root = Path(home).expanduser().absolute()
        return Paths(data=root, config=root / "config", cache=root / "cache")
    return Paths(
        data=xdg_dir("XDG_DATA_HOME", ".local/share") / APP,
        config=xdg_dir("XDG_CONFIG_HOME", ".config") / APP,
        cache=xdg_dir("XDG_CACHE_HOME", ".cache") / APP,
    )


def payload_cache() -> Path:
    """Root of the shared, content-addressed guest payload cache."""
    override = os.environ.get("BOXLITE_PAYLOAD_CACHE")
    if override:
        return Path(override).expanduser().absolute()
    return xdg_dir("XDG_CACHE_HOME", ".cache") / APP / "payload"


def socket_dir(box_dir: Path) -> Path:
    """A directory for a box's unix sockets whose paths fit in sun_path.

    The box directory itself when short enough; otherwise a private directory
    under /tmp named by a hash of the box directory (created 0700).
    """
    longest = "console.sock"
    if len(str(box_dir / "run" / longest)) <= MAX_SOCKET_PATH - 8:
        return box_dir / "run"
    digest = hashlib.sha256(str(box_dir).encode()).hexdigest()[:20]
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/bl-{os.getuid()}")
    return base / digest


def ensure_private_socket_base(sockets: Path) -> None:
    """The shared parent of socket directories outside the box (/tmp/bl-UID), made 0700
    if missing, and refused unless it is a real directory of ours that no one else could
    write in: another user who made it first could otherwise swap a box's sockets."""
    if sockets.name == "run":  # (inside the box's own directory: see socket_dir)
        return
    base = sockets.parent
    with contextlib.suppress(FileExistsError):
        os.mkdir(base, 0o700)
    st = os.lstat(base)
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o022 == 0:
        if st.st_mode & 0o077:  # (ours, made by an older boxlite: no one else wrote in it)
            os.chmod(base, 0o700)
        return
    raise BoxliteError(f"{base} is not a private directory of this user (owner uid "
                       f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})",
                       hint="remove it, or set XDG_RUNTIME_DIR to a private directory")
