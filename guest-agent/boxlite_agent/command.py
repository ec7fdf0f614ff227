"""Find the executable for argv[0] inside the container rootfs, like execvp would there.

Errors use docker's wording: 127 for "not found", 126 for "found but cannot run".
"""

from __future__ import annotations

import os
import stat

from boxlite_agent.errors import ExecFailure
from boxlite_agent.resolve import join_container, resolve_in_root
from boxlite_agent.users import ExecUser

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def can_execute(st: os.stat_result, user: ExecUser) -> bool:
    """Whether ``user`` may execute a file with this mode (root: any x bit)."""
    mode = st.st_mode
    if user.uid == 0:
        return bool(mode & 0o111)
    if st.st_uid == user.uid:
        return bool(mode & stat.S_IXUSR)
    if st.st_gid == user.gid or st.st_gid in user.groups:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def _stat(root: str, path: str) -> os.stat_result | None:
    try:
        return os.stat(resolve_in_root(root, path))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:  # ELOOP and friends: the path exists but is unusable
        raise ExecFailure(126, f'exec: "{path}": {e.strerror}') from e


def find_executable(root: str, argv0: str, search_path: str, cwd: str, user: ExecUser) -> str:
    """The container path to execute for ``argv0``; raises ExecFailure (126/127)."""
    if not argv0:
        raise ExecFailure(127, 'exec: "": executable file not found in $PATH')
    if "/" in argv0:
        path = join_container(cwd, argv0)
        st = _stat(root, path)
        if st is None:
            raise ExecFailure(127, f'exec: "{argv0}": stat {argv0}: no such file or directory')
        if stat.S_ISDIR(st.st_mode):
            raise ExecFailure(126, f'exec: "{argv0}": is a directory')
        if not stat.S_ISREG(st.st_mode) or not can_execute(st, user):
            raise ExecFailure(126, f'exec: "{argv0}": permission denied')
        return path
    for directory in search_path.split(":"):
        candidate = join_container(cwd, os.path.join(directory or ".", argv0))
        try:
            st = _stat(root, candidate)
        except ExecFailure:
            continue
        if st is not None and stat.S_ISREG(st.st_mode) and can_execute(st, user):
            return candidate
    raise ExecFailure(127, f'exec: "{argv0}": executable file not found in $PATH')
