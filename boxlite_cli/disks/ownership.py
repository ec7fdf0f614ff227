"""Owners, modes, device nodes and xattrs that an unprivileged unpack could not apply.

Without root, unpacking a layer cannot chown, cannot make device nodes and cannot set
`security.*`/`trusted.*` xattrs. The unpack records what each path wanted instead
(`Ownership`), keeps the host tree readable by its own user, and once `mkfs.ext4 -d`
has made the image, one `debugfs -w -f CMDFILE IMAGE` run writes the recorded metadata
into it (`apply_ownership`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from boxlite_cli.errors import DiskError

# debugfs reads its command file with fgets() into a BUFSIZ (8 KiB) buffer.
MAX_LINE = 8000
DEFAULT_DIR_MODE = 0o755
_BANNER = re.compile(r"^debugfs \d")


@dataclass(frozen=True)
class Device:
    kind: str  # "c" or "b"
    major: int
    minor: int

    @property
    def type_bits(self) -> int:
        return stat.S_IFCHR if self.kind == "c" else stat.S_IFBLK


@dataclass(frozen=True)
class Wanted:
    """The metadata a layer wanted for one path."""

    uid: int
    gid: int
    mode: int  # permission bits with set-id and sticky bits (no file type)
    device: Device | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()


def ownership_for_unpack() -> Ownership | None:
    """A fresh record for an unpack, or None as root (the tree then takes owners itself)."""
    return None if os.geteuid() == 0 else Ownership()


def quote(arg: str) -> str:
    """One debugfs argument: debugfs (libss) splits on blanks, `"` quotes, `""` is a `"`."""
    if any(c in arg for c in "\n\r\0"):
        raise DiskError(f"cannot write metadata of {arg!r}: the name has a line break or NUL")
    return '"' + arg.replace('"', '""') + '"'


class Ownership:
    """What each path of an unpacked tree wanted: the last writer wins, removal forgets.

    Paths are the tree's own, absolute from its root (`/etc/passwd`), as the unpack
    placed them (symlinked parents already resolved).
    """

    def __init__(self) -> None:
        self._wanted: dict[str, Wanted] = {}

    def __len__(self) -> int:
        return len(self._wanted)

    def get(self, path: str) -> Wanted | None:
        return self._wanted.get(path)

    def set(self, path: str, wanted: Wanted) -> None:
        self._wanted[path] = wanted

    def link(self, path: str, target: str) -> None:
        """`path` is a new hard link to `target`: one inode, so the same metadata."""
        wanted = self._wanted.get(target)
        if wanted is None:
            self._wanted.pop(path, None)
        else:
            self._wanted[path] = wanted

    def remove(self, path: str, tree: bool = False) -> None:
        """Forget `path`, and with `tree` everything below it (a removed directory)."""
        self._wanted.pop(path, None)
        if tree:
            prefix = path.rstrip("/") + "/"
            for p in [p for p in self._wanted if p.startswith(prefix)]:
                del self._wanted[p]

    def script(self, tree: Path, values: Path) -> list[str]:
        """debugfs commands that give the ext4 copy of `tree` the wanted metadata.

        What `mkfs.ext4 -d` copied from the tree (its owner, its mode) is changed only
        where it differs. Paths nobody recorded (parents a layer did not list) become
        root's, directories 0755, as docker makes them. xattr values are written as
        files under `values` (they may be binary).
        """
        lines: list[str] = []
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                host = os.path.join(dirpath, name)
                path = "/" + os.path.relpath(host, tree)
                lines.extend(self._commands(path, os.lstat(host), values, len(lines)))
        for line in lines:
            if len(line.encode("utf-8", "surrogateescape")) > MAX_LINE:
                raise DiskError(f"cannot write metadata of {line[:80]!r}...: the path is too long")
        return lines

    def _commands(self, path: str, st: os.stat_result, values: Path, n: int) -> list[str]:
        wanted = self._wanted.get(path)
        q = quote(path)
        if wanted is None:
            wanted = Wanted(0, 0, DEFAULT_DIR_MODE if stat.S_ISDIR(st.st_mode) else stat.S_IMODE(st.st_mode))
        out: list[str] = []
        if wanted.device is not None:
            parent, _, base = path.rpartition("/")
            dev = wanted.device
            out += [f"rm {q}", f"cd {quote(parent or '/')}",
                    f"mknod {quote(base)} {dev.kind} {dev.major} {dev.minor}", "cd /",
                    f"set_inode_field {q} uid {wanted.uid}",
                    f"set_inode_field {q} gid {wanted.gid}",
                    f"set_inode_field {q} mode 0{dev.type_bits | wanted.mode:o}"]
        else:
            if wanted.uid != st.st_uid:
                out.append(f"set_inode_field {q} uid {wanted.uid}")
            if wanted.gid != st.st_gid:
                out.append(f"set_inode_field {q} gid {wanted.gid}")
            mode = stat.S_IFMT(st.st_mode) | wanted.mode
            if mode != st.st_mode and not stat.S_ISLNK(st.st_mode):
                out.append(f"set_inode_field {q} mode 0{mode:o}")
        for i, (key, value) in enumerate(wanted.xattrs):
            vfile = values / f"{n + len(out)}-{i}"
            vfile.write_bytes(value)
            out.append(f"ea_set -f {quote(str(vfile))} {q} {quote(key)}")
        return out


def apply_ownership(ownership: Ownership | None, tree: Path, image: Path,
                    extra: tuple[str, ...] = ()) -> None:
    """Write the recorded metadata of `tree` into `image`, the ext4 made from it, and
    run the debugfs commands `extra` after it."""
    with tempfile.TemporaryDirectory(prefix="ownership-", dir=image.parent) as work:
        values = Path(work) / "values"
        values.mkdir()
        lines = (ownership.script(tree, values) if ownership is not None else []) + list(extra)
        if not lines:
            return
        cmdfile = Path(work) / "commands"
        cmdfile.write_bytes("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
        errors = _debugfs(cmdfile, image)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise DiskError(f"setting owners and modes in {image.name}: {errors[0]}{more}")


def _debugfs(cmdfile: Path, image: Path) -> list[str]:
    """Run a debugfs command file; the errors it reported (it exits 0 after most)."""
    exe = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin")
    if exe is None:
        raise DiskError("setting owners and modes: debugfs is not installed",
                        hint="install e2fsprogs, or run: boxlite doctor")
    proc = subprocess.run([exe, "-w", "-f", str(cmdfile), str(image)], capture_output=True,
                          check=False)
    errors = [line for line in proc.stderr.decode("utf-8", "replace").splitlines()
              if line.strip() and not _BANNER.match(line)]
    if proc.returncode != 0 and not errors:
        errors = [f"debugfs exited with status {proc.returncode}"]
    return errors
