"""passwd/group parsing, docker-style user resolution, executable lookup, env defaults."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.command import find_executable
from boxlite_agent.errors import ExecFailure, InvalidArgument
from boxlite_agent.spawn import build_env
from boxlite_agent.users import (
    ExecUser,
    GroupEntry,
    PasswdEntry,
    lookup_user,
    parse_group,
    parse_passwd,
    resolve_user,
)

DB = tuple[list[PasswdEntry], list[GroupEntry]]

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App,,,:/home/app:/bin/sh
broken:x:notanumber:1::/:/bin/sh
short:x:1001:1001
nohome:x:1002:1002:::/bin/sh
"""

GROUP = """\
root:x:0:
daemon:x:1:
wheel:x:10:root,app
audio:x:29:app
app:x:1000:
staff:x:50:
bad:x:zz:app
"""


@pytest.fixture
def db() -> DB:
    return parse_passwd(PASSWD), parse_group(GROUP)


def test_parse_passwd_skips_malformed_lines() -> None:
    entries = parse_passwd(PASSWD)
    assert [e.name for e in entries] == ["root", "daemon", "app", "short", "nohome"]
    assert entries[2].uid == 1000 and entries[2].home == "/home/app"
    assert entries[3].home == "" and entries[3].shell == ""


def test_parse_group() -> None:
    groups = parse_group(GROUP)
    assert [g.name for g in groups] == ["root", "daemon", "wheel", "audio", "app", "staff"]
    assert groups[2].members == ("root", "app")


def test_default_user_is_root_with_its_groups(db: DB) -> None:
    u = resolve_user("", *db)
    assert u == ExecUser(uid=0, gid=0, groups=(10,), home="/root", name="root")


def test_by_name_and_by_uid(db: DB) -> None:
    by_name = resolve_user("app", *db)
    assert (by_name.uid, by_name.gid, by_name.groups, by_name.home) == (
        1000,
        1000,
        (10, 29),
        "/home/app",
    )
    assert resolve_user("1000", *db) == by_name


def test_unknown_uid_is_used_as_is(db: DB) -> None:
    assert resolve_user("4242", *db) == ExecUser(uid=4242, gid=0, groups=(), home="/")
    assert resolve_user("4242:4343", *db) == ExecUser(uid=4242, gid=4343, groups=(), home="/")


def test_explicit_group_replaces_supplementary_groups(db: DB) -> None:
    assert resolve_user("app:staff", *db) == ExecUser(1000, 50, (), "/home/app", "app")
    assert resolve_user("1000:50", *db).gid == 50
    assert resolve_user("daemon:7777", *db).gid == 7777


def test_missing_home_defaults_to_slash(db: DB) -> None:
    assert resolve_user("nohome", *db).home == "/"


def test_unknown_names_use_dockers_wording(db: DB) -> None:
    with pytest.raises(
        InvalidArgument, match=r"^unable to find user bob: no matching entries in passwd file$"
    ):
        resolve_user("bob", *db)
    with pytest.raises(
        InvalidArgument, match=r"^unable to find group nope: no matching entries in group file$"
    ):
        resolve_user("app:nope", *db)
    with pytest.raises(InvalidArgument):
        resolve_user("app:", *db)
    with pytest.raises(InvalidArgument):
        resolve_user(":wheel", *db)
    with pytest.raises(InvalidArgument, match="unable to find user 99999999999"):
        resolve_user("99999999999", *db)


def test_lookup_reads_the_rootfs(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    (tmp_path / "etc/group").write_text(GROUP)
    assert lookup_user(str(tmp_path), "app").groups == (10, 29)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert lookup_user(str(empty), "") == ExecUser(0, 0, (), "/")
    assert lookup_user(str(empty), "12:34") == ExecUser(12, 34, (), "/")
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        lookup_user(str(empty), "app")


def test_lookups_are_remembered_until_the_files_change(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from boxlite_agent import users

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    (tmp_path / "etc/group").write_text(GROUP)
    monkeypatch.setattr(users, "_resolved", {})
    parsed: list[str] = []
    real = users.parse_passwd
    monkeypatch.setattr(users, "parse_passwd", lambda text: parsed.append(text) or real(text))
    first = lookup_user(str(tmp_path), "app")
    assert lookup_user(str(tmp_path), "app") == first and len(parsed) == 1
    (tmp_path / "etc/passwd").write_text(PASSWD.replace(":1000:", ":1001:"))
    assert lookup_user(str(tmp_path), "app").uid == 1001 and len(parsed) == 2
    with pytest.raises(InvalidArgument):  # a failed lookup is not remembered
        lookup_user(str(tmp_path), "nobody-here")
    with pytest.raises(InvalidArgument):
        lookup_user(str(tmp_path), "nobody-here")


# -- executable lookup --------------------------------------------------------------

ROOT_USER = ExecUser(0, 0, (), "/root")
APP_USER = ExecUser(1000, 1000, (), "/home/app")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    for d in ("usr/bin", "usr/local/bin", "work", "opt/tools"):
        (tmp_path / d).mkdir(parents=True)
    os.symlink("usr/bin", tmp_path / "bin")

    def exe(path: str, mode: int = 0o755) -> None:
        (tmp_path / path).write_text("#!/bin/sh\n")
        os.chmod(tmp_path / path, mode)

    exe("usr/bin/sh")
    exe("usr/local/bin/sh")  # earlier in PATH: wins
    exe("usr/bin/plain", 0o644)
    exe("usr/bin/owneronly", 0o700)
    exe("work/run.sh")
    exe("opt/tools/t")
    os.symlink("/usr/bin/sh", tmp_path / "usr/bin/shlink")
    os.symlink("/nowhere", tmp_path / "usr/bin/dangling")
    return tmp_path


PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_path_search(rootfs: Path) -> None:
    assert find_executable(str(rootfs), "sh", PATH, "/", ROOT_USER) == "/usr/local/bin/sh"
    assert find_executable(str(rootfs), "sh", "/bin", "/", ROOT_USER) == "/bin/sh"
    assert find_executable(str(rootfs), "shlink", PATH, "/", ROOT_USER) == "/usr/bin/shlink"
    assert find_executable(str(rootfs), "t", "tools", "/opt", ROOT_USER) == "/opt/tools/t"


def test_not_found_is_127_with_dockers_message(rootfs: Path) -> None:
    for name in ("nope", "plain", "dangling"):
        with pytest.raises(ExecFailure) as info:
            find_executable(str(rootfs), name, PATH, "/", ROOT_USER)
        assert info.value.exit_code == 127
        assert info.value.message == f'exec: "{name}": executable file not found in $PATH'


def test_explicit_paths(rootfs: Path) -> None:
    assert find_executable(str(rootfs), "./run.sh", PATH, "/work", ROOT_USER) == "/work/run.sh"
    assert find_executable(str(rootfs), "/bin/sh", PATH, "/", ROOT_USER) == "/bin/sh"
    cases = {
        "/missing": 127,
        "/usr/bin/plain": 126,
        "/usr/bin": 126,
        "/usr/bin/dangling": 127,
    }
    for path, code in cases.items():
        with pytest.raises(ExecFailure) as info:
            find_executable(str(rootfs), path, PATH, "/", ROOT_USER)
        assert info.value.exit_code == code, path
        assert info.value.message.startswith(f'exec: "{path}": ')


def test_permissions_depend_on_the_user(rootfs: Path) -> None:
    assert find_executable(str(rootfs), "owneronly", PATH, "/", ROOT_USER) == "/usr/bin/owneronly"
    with pytest.raises(ExecFailure) as info:
        find_executable(str(rootfs), "/usr/bin/owneronly", PATH, "/", APP_USER)
    assert info.value.exit_code == 126


def test_environment_defaults() -> None:
    env = build_env(["A=1", "PATH=/x", "EMPTY=", "NOVALUE"], APP_USER, "box1", tty=True)
    assert env == {
        "PATH": "/x",
        "HOSTNAME": "box1",
        "TERM": "xterm",
        "A": "1",
        "EMPTY": "",
        "HOME": "/home/app",
    }
    env = build_env(["HOME=/h", "TERM=dumb", "HOSTNAME=mine"], ROOT_USER, "box1", tty=False)
    assert env["HOME"] == "/h" and env["TERM"] == "dumb" and env["HOSTNAME"] == "mine"
    assert "TERM" not in build_env([], ROOT_USER, "b", tty=False)
    assert build_env([], ROOT_USER, "b", tty=False)["PATH"].startswith("/usr/local/sbin:")
    with pytest.raises(InvalidArgument):
        build_env(["=x"], ROOT_USER, "b", tty=False)


def test_a_symlinked_passwd_is_read_each_time(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from boxlite_agent import users

    monkeypatch.setattr(users, "_resolved", {})
    (tmp_path / "etc").mkdir()
    (tmp_path / "real").write_text(PASSWD)
    (tmp_path / "etc/passwd").symlink_to("/real")  # resolved inside the root
    (tmp_path / "etc/group").write_text(GROUP)
    assert users._identity(str(tmp_path), "passwd") is None
    assert users._identity(str(tmp_path), "shadow") == ()
    assert lookup_user(str(tmp_path), "app").uid == 1000
    (tmp_path / "real").write_text(PASSWD.replace(":1000:", ":1002:"))
    assert lookup_user(str(tmp_path), "app").uid == 1002  # the content changed: seen


def test_a_passwd_whose_path_loops_is_no_passwd(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An image's /etc/passwd that is a symlink loop (ELOOP): a numeric user needs no
    passwd file, a name is not found (docker's wording), not an error of the agent."""
    from boxlite_agent import users
    from boxlite_agent.resolve import read_file_in_root

    monkeypatch.setattr(users, "_resolved", {})
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").symlink_to("/etc/passwd")
    (tmp_path / "etc/group").symlink_to("group")
    assert read_file_in_root(str(tmp_path), "/etc/passwd") is None
    assert lookup_user(str(tmp_path), "0").uid == 0
    assert lookup_user(str(tmp_path), "1000:1000").gid == 1000
    with pytest.raises(InvalidArgument, match="unable to find user app"):
        lookup_user(str(tmp_path), "app")


def test_group_add_comes_after_the_users_own_groups(db: DB) -> None:
    """docker's --group-add: names of the container's /etc/group or gids, after the
    user's supplementary groups (with -u UID:GID, the only ones), once each."""
    assert resolve_user("app", *db, group_add=("staff", "4242", "wheel")).groups == (
        10, 29, 50, 4242)
    assert resolve_user("1000:1000", *db, group_add=("staff",)).groups == (50,)
    assert resolve_user("root", *db, group_add=("0",)).groups == (10, 0)


def test_an_unknown_group_add_name_is_refused(db: DB) -> None:
    from boxlite_agent.errors import UnknownUser

    with pytest.raises(UnknownUser, match="unable to find group nosuch"):
        resolve_user("root", *db, group_add=("nosuch",))
