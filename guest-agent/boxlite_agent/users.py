"""Users and groups of the container, read from its /etc/passwd and /etc/group.

Follows runc's ``GetExecUser``: ``user`` is "", "name", "uid", "name:group",
"uid:gid" (names or numbers on either side). A number not in the files is used as
is; a name not in the files is an error with docker's wording. Supplementary
groups come from /etc/group when no group was given explicitly.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from boxlite_agent.errors import InvalidArgument, UnknownUser
from boxlite_agent.resolve import read_file_in_root

MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str = ""


def _parse_id(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def _lines(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Entries of a passwd(5) file; malformed lines are skipped."""
    entries = []
    for f in _lines(text):
        if len(f) < 4:
            continue
        uid, gid = _parse_id(f[2]), _parse_id(f[3])
        if uid is None or gid is None:
            continue
        f += [""] * (7 - len(f))
        entries.append(PasswdEntry(f[0], uid, gid, f[5], f[6]))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Entries of a group(5) file; malformed lines are skipped."""
    entries = []
    for f in _lines(text):
        if len(f) < 3:
            continue
        gid = _parse_id(f[2])
        if gid is None:
            continue
        members = tuple(m.strip() for m in f[3].split(",") if m.strip()) if len(f) > 3 else ()
        entries.append(GroupEntry(f[0], gid, members))
    return entries


def resolve_user(spec: str, passwd: list[PasswdEntry], groups: list[GroupEntry],
                 group_add: tuple[str, ...] = ()) -> ExecUser:
    """Resolve a docker ``--user`` value against parsed passwd/group entries, with the
    supplementary groups of ``--group-add`` (names or gids) after the user's own."""
    user_arg, sep, group_arg = spec.partition(":")
    if sep and not group_arg:
        raise InvalidArgument(f"invalid user {spec!r}: empty group")
    if not user_arg:
        if sep:
            raise InvalidArgument(f"invalid user {spec!r}: empty user")
        user_arg = "0"

    uid_num = _parse_id(user_arg)
    match = next(
        (p for p in passwd if (p.uid == uid_num if uid_num is not None else p.name == user_arg)),
        None,
    )
    if match is not None:
        uid, gid, home, name = match.uid, match.gid, match.home or "/", match.name
    elif uid_num is not None:
        uid, gid, home, name = uid_num, 0, "/", ""
    else:
        raise UnknownUser(f"unable to find user {user_arg}: no matching entries in passwd file")

    sgids: tuple[int, ...] = ()
    if group_arg:
        gid_num = _parse_id(group_arg)
        g = next(
            (g for g in groups if (g.gid == gid_num if gid_num is not None else g.name == group_arg)),
            None,
        )
        if g is not None:
            gid = g.gid
        elif gid_num is not None:
            gid = gid_num
        else:
            raise UnknownUser(f"unable to find group {group_arg}: no matching entries in group file")
    elif name:
        seen: list[int] = []
        for g in groups:
            if name in g.members and g.gid not in seen:
                seen.append(g.gid)
        sgids = tuple(seen)
    for extra in group_add:
        gid_num = _parse_id(extra)
        if gid_num is None:
            entry = next((g for g in groups if g.name == extra), None)
            if entry is None:
                raise UnknownUser(f"unable to find group {extra}: no matching entries in "
                                  "group file")
            gid_num = entry.gid
        if gid_num not in sgids:
            sgids = (*sgids, gid_num)
    return ExecUser(uid=uid, gid=gid, groups=sgids, home=home, name=name)


_resolved: dict[tuple[object, ...], ExecUser] = {}
RESOLVED_MAX = 64


def _identity(root: str, name: str) -> tuple[int, ...] | None:
    """Inode, size, mtime and ctime of /etc/``name`` when it and /etc are no symlinks
    ((): no such file); None when unknown (then the files are read)."""
    try:
        if not stat.S_ISDIR(os.lstat(os.path.join(root, "etc")).st_mode):
            return None
        st = os.lstat(os.path.join(root, "etc", name))
    except FileNotFoundError:
        return ()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _remember(key: tuple[object, ...], user: ExecUser) -> None:
    if len(_resolved) >= RESOLVED_MAX:
        _resolved.clear()
    _resolved[key] = user


def lookup_user(root: str, spec: str, group_add: tuple[str, ...] = ()) -> ExecUser:
    """Resolve ``spec`` against ``root``'s /etc/passwd and /etc/group (missing files: empty).

    The answer for the same spec and the same files (by identity, else by content) is
    remembered: every exec asks, mostly for the same user, and reading and parsing
    are slow under emulation (a primed template keeps the default user's answer)."""
    ids = (_identity(root, "passwd"), _identity(root, "group"))
    by_id = (spec, group_add, root, *ids) if None not in ids else None
    if by_id is not None and (found := _resolved.get(by_id)) is not None:
        return found
    passwd_raw = read_file_in_root(root, "/etc/passwd") or b""
    group_raw = read_file_in_root(root, "/etc/group") or b""
    by_content = (spec, group_add, passwd_raw, group_raw)
    found = _resolved.get(by_content)
    if found is None:
        passwd = parse_passwd(passwd_raw.decode("utf-8", "replace"))
        groups = parse_group(group_raw.decode("utf-8", "replace"))
        found = resolve_user(spec.strip(), passwd, groups, group_add)
        _remember(by_content, found)
    if by_id is not None:
        _remember(by_id, found)
    return found
