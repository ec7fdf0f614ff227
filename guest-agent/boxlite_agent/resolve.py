"""Resolve paths inside a container rootfs without ever leaving it.

``resolve_in_root(root, path)`` follows symlinks component by component like the
kernel would if ``root`` were ``/``: absolute link targets and ``..`` are taken
relative to ``root``, ``..`` at the root stays at the root, and more than
``MAX_SYMLINKS`` links raise ELOOP. Components that do not exist are appended
lexically, so the result can be used to create them. The helpers that create or
open files walk with directory fds and ``O_NOFOLLOW``, so a symlink swapped in
after the resolution fails the call instead of escaping the root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat

MAX_SYMLINKS = 40

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def split_path(path: str) -> list[str]:
    """The components of ``path`` without empty ones and ``.``."""
    return [c for c in path.split("/") if c not in ("", ".")]


def _components_in_root(root: str, path: str) -> list[str]:
    pending = split_path(path)
    pending.reverse()  # a stack: the next component is at the end
    resolved: list[str] = []
    hops = 0
    while pending:
        name = pending.pop()
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, name)
        try:
            st = os.lstat(host)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(name)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(name)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        target = os.readlink(host)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed(split_path(target)))
    return resolved


def resolve_in_root(root: str, path: str) -> str:
    """The host path of container path ``path`` with every symlink resolved inside ``root``."""
    root = os.path.abspath(root)
    return os.path.join(root, *_components_in_root(root, path))


def container_path(root: str, host_path: str) -> str:
    """The container view of a host path below ``root`` (the inverse of the join above)."""
    root = os.path.abspath(root)
    rel = os.path.relpath(host_path, root)
    if rel == ".":
        return "/"
    if rel == ".." or rel.startswith("../"):
        raise ValueError(f"{host_path} is not inside {root}")
    return "/" + rel


def _walk(root: str, names: list[str], create_dirs: bool, mode: int) -> int:
    """Open the directory ``names`` below ``root`` with O_NOFOLLOW on every step."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for name in names:
            if create_dirs:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, mode, dir_fd=fd)
            nfd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def mkdir_all_in_root(root: str, path: str, mode: int = 0o755) -> str:
    """``mkdir -p`` of container path ``path``; returns its host path.

    Raises NotADirectoryError if a component exists and is not a directory.
    """
    root = os.path.abspath(root)
    names = _components_in_root(root, path)
    os.close(_walk(root, names, create_dirs=True, mode=mode))
    return os.path.join(root, *names)


def ensure_file_in_root(root: str, path: str, mode: int = 0o644) -> str:
    """Create container file ``path`` (and its parents) if missing; returns its host path."""
    root = os.path.abspath(root)
    names = _components_in_root(root, path)
    if not names:
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    dfd = _walk(root, names[:-1], create_dirs=True, mode=0o755)
    try:
        try:
            st = os.stat(names[-1], dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(names[-1], flags, mode, dir_fd=dfd))
        else:
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    finally:
        os.close(dfd)
    return os.path.join(root, *names)


def open_in_root(root: str, path: str, flags: int = os.O_RDONLY) -> int:
    """Open an existing container file for reading; returns an fd (O_CLOEXEC)."""
    root = os.path.abspath(root)
    names = _components_in_root(root, path)
    if not names:
        return os.open(root, flags | os.O_CLOEXEC)
    dfd = _walk(root, names[:-1], create_dirs=False, mode=0)
    try:
        return os.open(names[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)


def read_file_in_root(root: str, path: str, limit: int = 16 << 20) -> bytes | None:
    """The content of a regular container file, or None if it cannot be read as one: it
    does not exist, its path loops or is not readable, or it is something else (a FIFO
    or a device there, the box's own doing, must not block or feed the agent: it is
    opened without blocking, and only a regular file is read)."""
    try:
        fd = open_in_root(root, path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def join_container(cwd: str, path: str) -> str:
    """``path`` made absolute against container directory ``cwd``, normalised."""
    return posixpath.normpath(posixpath.join("/", cwd, path)).replace("//", "/")
