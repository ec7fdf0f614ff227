"""commit: the layer of a box's changes (a metadata diff against its image's layers),
the config docker gives the new image, and --change's Dockerfile instructions."""

from __future__ import annotations

import copy
import datetime
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from boxlite_cli.errors import ImageError, UsageError
from boxlite_cli.oci.changes import apply_changes
from boxlite_cli.oci.commit import (
    BoxEntry,
    Meta,
    apply_to_index,
    box_changes,
    committed_config,
    member_meta,
    walk_changes,
    write_layer,
)
from boxlite_cli.runtime.commit import check_changes, commit_name, container_config
from boxlite_cli.state.health import HealthConfig
from boxlite_cli.state.network import NetworkConfig, PortMapping
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec
from boxlite_cli.state.volumes import BIND, VOLUME, Mount

Entry = tuple[str, bytes, str, dict[str, object]]  # name, content, kind, extra fields


def tar_of(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, kind, extra in entries:
            info = tarfile.TarInfo(name)
            info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE,
                         "link": tarfile.LNKTYPE, "symlink": tarfile.SYMTYPE}[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            info.mtime = 1000
            for key, value in extra.items():
                setattr(info, key, value)
            if kind == "file":
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return buf.getvalue()


def d(name: str, **extra: object) -> Entry:
    return (name, b"", "dir", extra)


def f(name: str, data: bytes = b"x", **extra: object) -> Entry:
    return (name, data, "file", extra)


IMAGE = [d("etc"), f("etc/motd", b"hi"), f("etc/hosts", b"127.0.0.1"), d("usr"), d("usr/doc"),
         f("usr/doc/a"), f("usr/doc/b"), d("bin"), f("bin/sh", b"ELF"),
         ("bin/sh2", b"", "link", {"linkname": "bin/sh"}), d("opt")]


def index_of(*layers: bytes) -> dict[str, Meta]:
    index: dict[str, Meta] = {}
    for layer in layers:
        with tarfile.open(fileobj=io.BytesIO(layer), mode="r:") as tar:
            apply_to_index(index, tar)
    return index


def agent_tar(box: bytes, paths: list[str]) -> Iterator[bytes]:
    """What the agent's CopyPaths sends of the box `box` (a tar): each path by itself,
    and a hard link to a file it has not sent before as the file."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(box)) as tar, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as sent:
        members = {m.name: m for m in tar.getmembers()}
        for path in paths:
            m = copy.copy(members[path])
            data = tar.extractfile(m) if m.isfile() else None
            if m.islnk() and m.linkname not in paths[:paths.index(path)]:
                target = members[m.linkname]
                m.type, m.size, m.linkname = tarfile.REGTYPE, target.size, ""
                data = tar.extractfile(target)
            sent.addfile(m, data)
    data = out.getvalue()
    yield from (data[i:i + 1000] for i in range(0, len(data), 1000))


def tree_of(box: bytes, ctimes: dict[str, int] | None = None) -> list[BoxEntry]:
    """What the agent's Tree sends of the box `box` (a tar): each entry's metadata (a
    hard link's as its file's), no name taken for a whiteout; its ctime from `ctimes`
    (else 0)."""
    entries: dict[str, Meta] = {}
    with tarfile.open(fileobj=io.BytesIO(box)) as tar:
        for m in tar:
            target = entries.get(m.linkname) if m.islnk() else None
            entries[m.name] = (member_meta(m, target.size, target.capability)
                               if target is not None else member_meta(m))
    return [(path, meta, (ctimes or {}).get(path, 0)) for path, meta in entries.items()]


def layer_of(box: bytes, base: dict[str, Meta]) -> dict[str, tarfile.TarInfo]:
    out = io.BytesIO()
    changes = walk_changes(tree_of(box), base)
    write_layer(changes, lambda paths: agent_tar(box, paths), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:") as tar:
        members = {m.name: m for m in tar}
    assert len(changes) == len(members)
    return members


def test_the_images_index_applies_whiteouts_opaque_dirs_and_hard_links() -> None:
    upper = tar_of(d("usr/doc"), f("usr/doc/.wh..wh..opq", b""), f("usr/doc/c"),
                   f("etc/.wh.motd", b""), f("bin", b"now a file"))
    index = index_of(tar_of(*IMAGE), upper)
    assert sorted(index) == ["bin", "etc", "etc/hosts", "opt", "usr", "usr/doc", "usr/doc/c"]
    assert index["bin"].kind == "file"
    assert index_of(tar_of(*IMAGE))["bin/sh2"] == Meta("file", 0o644, 0, 0, size=3, mtime=1000)


def test_a_box_that_changed_nothing_makes_an_empty_layer() -> None:
    assert layer_of(tar_of(*IMAGE), index_of(tar_of(*IMAGE))) == {}


def test_what_the_box_added_changed_and_removed_is_the_layer() -> None:
    base = index_of(tar_of(*IMAGE))
    box = tar_of(d("etc"), f("etc/hosts", b"box's own"),  # (left out: docker's)
                 d("usr"), d("usr/doc"), f("usr/doc/a", mtime=2000), d("bin"),
                 f("bin/sh", b"ELF"), ("bin/sh2", b"", "link", {"linkname": "bin/sh"}),
                 d("opt", mode=0o700), d("opt/new"), f("opt/new/file", b"new"),
                 ("opt/new/hard", b"", "link", {"linkname": "opt/new/file"}),
                 ("opt/old-sh", b"", "link", {"linkname": "bin/sh"}))
    layer = layer_of(box, base)
    assert list(layer) == ["usr", "usr/doc", "usr/doc/a", "opt", "opt/new", "opt/new/file",
                           "opt/new/hard", "opt/old-sh", "etc", "etc/.wh.motd",
                           "usr/doc/.wh.b"]
    assert layer["opt"].mode == 0o700 and layer["usr/doc/a"].mtime == 2000
    assert layer["opt/new/hard"].islnk() and layer["opt/new/hard"].linkname == "opt/new/file"
    assert layer["opt/old-sh"].isfile() and layer["opt/old-sh"].size == 3  # (fetched again)


def test_a_copy_in_under_way_is_no_change_of_the_box() -> None:
    """The file `cp` writes beside its name before the rename (or one a stop cut off) is
    not committed nor listed by diff (tester AS: it was baked into an image)."""
    base = index_of(tar_of(*IMAGE))
    box = tar_of(*IMAGE, f("opt/.boxlite-cp-0123456789abcdef", b"half"),
                 f("opt/.boxlite-cp-not-ours", b"a file of the box's"))
    assert list(layer_of(box, base)) == ["opt", "opt/.boxlite-cp-not-ours"]


def test_a_capability_set_on_a_file_is_a_change_and_goes_with_it() -> None:
    cap = {"pax_headers": {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02 caps"}}
    base = index_of(tar_of(*IMAGE))
    box = tar_of(d("bin"), f("bin/sh", b"ELF", **cap), ("bin/sh2", b"", "link", {"linkname": "bin/sh"}))
    layer = layer_of(box, base)
    assert list(layer)[:3] == ["bin", "bin/sh", "bin/sh2"]
    assert layer["bin/sh"].pax_headers["SCHILY.xattr.security.capability"] == "\x01\x00\x00\x02 caps"
    same = index_of(tar_of(*IMAGE), tar_of(d("bin"), f("bin/sh", b"ELF", **cap)))
    again = layer_of(box, same)
    assert "bin/sh" not in again  # (the image's own capability: no change)
    assert again["bin/sh2"].isfile()  # (its link in the image lost it: the file itself)


def test_a_removed_directory_is_one_whiteout() -> None:
    base = index_of(tar_of(*IMAGE))
    box = tar_of(*[e for e in IMAGE if not e[0].startswith("usr")])
    assert list(layer_of(box, base)) == [".wh.usr"]


def changes_of(box: bytes, base: dict[str, Meta]) -> list[tuple[str, str]]:
    """diff's lines for the box tree `box` (a tar's entries, metadata alone, in order)."""
    return [(c.kind, c.path) for c in box_changes(tree_of(box), base)]


def test_diff_lists_what_the_box_added_changed_and_deleted_as_docker_diff_does() -> None:
    base = index_of(tar_of(*IMAGE))
    box = tar_of(d("etc"), f("etc/hosts", b"box's own"),  # (left out, as in commit)
                 d("usr"), d("usr/doc"), f("usr/doc/a", mtime=2000), d("bin"),
                 f("bin/sh", b"ELF"), ("bin/sh2", b"", "link", {"linkname": "bin/sh"}),
                 d("opt", mode=0o700), d("opt/new"), f("opt/new/file", b"new"),
                 ("opt/new/hard", b"", "link", {"linkname": "opt/new/file"}))
    assert changes_of(box, base) == [
        ("C", "/etc"), ("D", "/etc/motd"), ("C", "/opt"), ("A", "/opt/new"),
        ("A", "/opt/new/file"), ("A", "/opt/new/hard"), ("C", "/usr"), ("C", "/usr/doc"),
        ("C", "/usr/doc/a"), ("D", "/usr/doc/b")]
    assert changes_of(tar_of(*IMAGE), base) == []


def test_diff_sees_a_changed_size_owner_link_target_or_capability() -> None:
    base = index_of(tar_of(*IMAGE))
    cap = {"pax_headers": {"SCHILY.xattr.security.capability": "\x01caps"}}
    for changed in (f("bin/sh", b"ELF2"), f("bin/sh", b"ELF", uid=1000),
                    f("bin/sh", b"ELF", **cap),
                    ("bin/sh", b"", "symlink", {"linkname": "busybox"})):
        box = tar_of(d("bin"), changed, ("bin/sh2", b"", "link", {"linkname": "bin/sh"}),
                     *[e for e in IMAGE if not e[0].startswith("bin")])
        assert ("C", "/bin/sh") in changes_of(box, base), changed


def test_a_file_whose_inode_changed_after_the_disk_was_made_is_changed() -> None:
    """A write that kept the size and the time (touch -r, cp -p) is seen by its ctime,
    as overlayfs copies the file up: not a directory's, whose ctime any new name moves."""
    base = index_of(tar_of(*IMAGE))
    made = 5_000
    ctimes = {"etc/motd": made + 1, "usr": made + 1, "bin/sh": made - 1}
    tree = tree_of(tar_of(*IMAGE), ctimes)
    assert [(c.kind, c.path) for c in box_changes(tree, base, made)] == [
        ("C", "/etc"), ("C", "/etc/motd")]
    assert box_changes(tree, base, None) == []  # (a box without its image's disk)


def test_diff_of_a_removed_directory_is_one_line() -> None:
    base = index_of(tar_of(*IMAGE))
    box = tar_of(*[e for e in IMAGE if not e[0].startswith("usr")])
    assert changes_of(box, base) == [("D", "/usr")]


def test_a_layer_without_its_directories_has_them_as_the_unpacker_makes_them() -> None:
    base = index_of(tar_of(*IMAGE), tar_of(f("nd/a/b/file1"), f("nd/a/c")))
    box = tar_of(*IMAGE, d("nd"), d("nd/a"), d("nd/a/b"), f("nd/a/b/file1"), f("nd/a/c"))
    assert changes_of(box, base) == []
    gone = tar_of(*IMAGE, d("nd"), d("nd/a"), f("nd/a/c"))
    assert changes_of(gone, base) == [("C", "/nd"), ("C", "/nd/a"), ("D", "/nd/a/b")]


@pytest.mark.parametrize(("name", "says"), [
    ("etc/.wh.shells", "a name starting with .wh. is a deletion"),
    ("usr/.wh..wh..opq", "a name starting with .wh. is a deletion"),
    ("/".join(["d" * 50] * 90), "its path is longer than 4095 bytes")])
def test_what_a_layer_cannot_carry_is_refused_before_anything_is_read(name: str,
                                                                      says: str) -> None:
    base = index_of(tar_of(*IMAGE))
    box = tar_of(*IMAGE, f(name))
    assert ("A", "/" + name) in changes_of(box, base)  # (diff lists it)

    def fetch(paths: list[str]) -> Iterator[bytes]:
        raise AssertionError("nothing is read")

    with pytest.raises(ImageError, match=says):
        write_layer(walk_changes(tree_of(box), base), fetch, io.BytesIO())


def test_a_directory_made_a_file_takes_what_was_in_it_along() -> None:
    base = index_of(tar_of(*IMAGE))
    box = tar_of(*[e if e[0] != "usr" else f("usr", b"now a file")
                   for e in IMAGE if not e[0].startswith("usr/")])
    assert changes_of(box, base) == [("C", "/usr")]  # (no whiteouts under a file)
    assert list(layer_of(box, base)) == ["usr"]


def test_the_new_config_has_the_layer_history_author_and_comment() -> None:
    base = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
            "history": [{"created_by": "base"}], "author": "someone else"}
    when = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    made = committed_config(base, {"Cmd": ["app"]}, "sha256:" + "2" * 64, "me", "first", when)
    assert made["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    assert (made["config"], made["author"], made["comment"], made["created"]) == (
        {"Cmd": ["app"]}, "me", "first", "2026-12-01T00:00:00Z")
    assert made["history"][-1] == {"created": "2026-12-01T00:00:00Z",
                                   "created_by": "boxlite commit", "author": "me",
                                   "comment": "first"}
    empty = committed_config(base, {}, None, "", "", when)
    assert empty["rootfs"] == base["rootfs"] and empty["history"][-1]["empty_layer"] is True
    assert "author" not in empty and base["history"] == [{"created_by": "base"}]


def test_changes_are_dockerfile_instructions() -> None:
    config = {"Cmd": ["sh"], "Env": ["PATH=/bin", "A=1"], "Labels": {"x": "1"}}
    changed = apply_changes(config, [
        'CMD ["python3", "app.py"]', "ENV A=2 B='two words'", "env C 3 4", 'LABEL y="a b"',
        "EXPOSE 80 53/udp 8000-8001/udp", "VOLUME /data /cache", "USER app", "WORKDIR /srv",
        "STOPSIGNAL SIGINT"])
    assert changed["Cmd"] == ["python3", "app.py"]
    assert changed["Env"] == ["PATH=/bin", "A=2", "B=two words", "C=3 4"]
    assert changed["Labels"] == {"x": "1", "y": "a b"}
    assert changed["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/udp": {},
                                       "8001/udp": {}}  # (a range, as a Dockerfile's)
    assert changed["Volumes"] == {"/data": {}, "/cache": {}}
    assert (changed["User"], changed["WorkingDir"], changed["StopSignal"]) == (
        "app", "/srv", "SIGINT")
    assert config["Cmd"] == ["sh"]  # (not changed in place)
    assert apply_changes(config, ["CMD echo hi"])["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert apply_changes(config, ['ENTRYPOINT ["/app"]'])["Cmd"] is None  # (a Dockerfile's)
    both = apply_changes(config, ['ENTRYPOINT ["/app"]', 'CMD ["--x"]'])
    assert (both["Entrypoint"], both["Cmd"]) == (["/app"], ["--x"])


@pytest.mark.parametrize(("change", "says"), [
    ("RUN apt-get update", "RUN is not one of"), ("CMD", "CMD needs an argument"),
    ("EXPOSE http", "'http' is not a port"), ("EXPOSE 90-80", "'90-80' is not a port"),
    ("EXPOSE 1-2000", "a range names 1024 ports at most"), ("ENV", "ENV needs an argument"),
    ("ENV A", "ENV A needs a value"),
    ("ONBUILD FROM debian", "FROM is not allowed as an ONBUILD trigger"),
    ("ONBUILD ONBUILD RUN x", "ONBUILD is not allowed as an ONBUILD trigger"),
    ("LABEL 'a", "No closing quotation"), ("", "nothing is not one of")])
def test_a_bad_change_is_refused(change: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        apply_changes({}, [change])


def test_changes_expand_the_configs_variables_as_a_dockerfile_does() -> None:
    config = {"Env": ["PATH=/bin", "HOME=/root"], "WorkingDir": "/srv"}
    changed = apply_changes(config, ["ENV PATH=/opt/bin:$PATH", "WORKDIR app",
                                     "LABEL home=${HOME} cost=\\$5", "CMD echo $HOME"])
    assert changed["Env"] == ["PATH=/opt/bin:/bin", "HOME=/root"]  # (in place)
    assert changed["WorkingDir"] == "/srv/app"  # (relative to the one before)
    assert changed["Labels"] == {"home": "/root", "cost": "$5"}
    assert changed["Cmd"] == ["/bin/sh", "-c", "echo $HOME"]  # (the shell's to expand)


def test_a_stop_signal_change_must_be_a_signal() -> None:
    check_changes(("STOPSIGNAL SIGINT",))
    with pytest.raises(UsageError, match="invalid --change STOPSIGNAL: invalid signal"):
        check_changes(("STOPSIGNAL SIGFOO",))


def test_the_image_config_is_the_boxs() -> None:
    state = BoxState(id="a" * 64, name="web", config=BoxConfig(
        image="img", image_id="sha256:" + "0" * 64, rootfs_base="",
        process=ProcessSpec(["/entry", "serve"], env=["PATH=/bin", "E=1"], cwd="/srv",
                            user="app", entrypoint_len=1),
        labels={"l": "v"}, stop_signal="SIGINT", exposed=["53/udp"],
        network=NetworkConfig(ports=[PortMapping(box_port=8080)]),
        healthcheck=HealthConfig(test=["CMD", "true"], interval_s=1.0),
        mounts=[Mount(kind=VOLUME, source="v1", target="/cache", anonymous=True),
                Mount(kind=BIND, source="/host", target="/src")]))
    image = {"Cmd": ["old"], "Volumes": {"/v": {}}, "ExposedPorts": {"22/tcp": {}},
             "Healthcheck": {"Test": ["CMD", "false"]}}
    config = container_config(state, image)
    assert config == {
        "Cmd": ["serve"], "Entrypoint": ["/entry"], "Env": ["PATH=/bin", "E=1"],
        "WorkingDir": "/srv", "User": "app", "Labels": {"l": "v"},
        "Volumes": {"/v": {}, "/cache": {}},
        "ExposedPorts": {"22/tcp": {}, "53/udp": {}, "8080/tcp": {}}, "StopSignal": "SIGINT",
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000}}
    state.config.healthcheck = HealthConfig(test=["NONE"])  # (--no-healthcheck over the image's)
    assert container_config(state, image)["Healthcheck"] == {"Test": ["NONE"]}
    state.config.stop_signal = "SIGTERM"  # the default: written only over the image's own
    assert "StopSignal" not in container_config(state, image)
    assert container_config(state, {**image, "StopSignal": "SIGINT"})["StopSignal"] == "SIGTERM"


def test_a_commit_is_named_by_a_tag() -> None:
    assert str(commit_name("app")) == "docker.io/library/app:latest"
    with pytest.raises(UsageError, match="named by a tag, not a digest"):
        commit_name("app@sha256:" + "0" * 64)
    with pytest.raises(UsageError):
        commit_name("Bad Name")
    with pytest.raises(UsageError, match="reads as an image id"):
        commit_name("0" * 64)


def test_diff_json_shows_a_name_that_is_not_utf8_as_docker_does() -> None:
    from boxlite_cli.cli.diff import json_text

    assert json_text("/w/bad" + b"\xff".decode("utf-8", "surrogateescape")) == "/w/bad\ufffd"
    assert json_text("/w/ünïcode") == "/w/ünïcode"


def test_the_directories_boxlite_makes_are_no_change_of_the_box() -> None:
    """A minimal image (no /dev, /proc, /sys or /etc; a VOLUME no layer makes): the
    directories boxlite makes for its mounts are docker's init layer, not the box's
    change (an unchanged box listed them, and commit made a layer of them); what the
    box puts in one is still its change."""
    from boxlite_cli.oci.commit import boxlite_made

    image = [d("bin"), f("bin/app", b"ELF")]
    base = index_of(tar_of(*image))
    made = boxlite_made({"Volumes": {"/var/lib/db": {}, "/data/": {}}})
    assert made >= {"dev", "proc", "sys", "etc", "var", "var/lib", "var/lib/db", "data"}
    mounts = [d("dev"), d("proc"), d("sys"), d("etc"), f("etc/hosts"), f("etc/hostname"),
              d("var"), d("var/lib"), d("var/lib/db"), d("data")]
    box = tar_of(*image, *mounts)
    tree = tree_of(box)
    assert box_changes(tree, base, None, made) == []
    assert walk_changes(tree, base, None, made) == []  # (commit: no layer)
    assert [(c.kind, c.path) for c in box_changes(tree, base)][:3] == [
        ("A", "/data"), ("A", "/dev"), ("A", "/etc")]  # (as it was)
    wrote = tree_of(tar_of(*image, *mounts, f("etc/app.conf", b"x"), f("var/lib/db/x")))
    assert [(c.kind, c.path) for c in box_changes(wrote, base, None, made)] == [
        ("A", "/etc"), ("A", "/etc/app.conf"), ("A", "/var"), ("A", "/var/lib"),
        ("A", "/var/lib/db"), ("A", "/var/lib/db/x")]


@pytest.mark.parametrize("doing", ["commit", "diff"])
def test_a_box_whose_image_is_not_here_says_so_for_the_command_given(
        tmp_path: Path, doing: str) -> None:
    """(an imported box's `diff` was told to load the image "then commit")"""
    from boxlite_cli.runtime.commit import box_image
    from boxlite_cli.runtime.runtime import Runtime
    from boxlite_cli.state.paths import Paths

    home = tmp_path / "home"
    rt = Runtime(Paths(data=home, config=home / "config", cache=home / "cache"))
    state = BoxState(id="e" * 64, name="piped", config=BoxConfig(
        image="mine/app:1", image_id="sha256:" + "b" * 64, rootfs_base="",
        process=ProcessSpec(argv=["true"])))
    with pytest.raises(ImageError) as e:
        box_image(rt, state, doing)
    assert e.value.message == ("box piped's image bbbbbbbbbbbb is not in the store (a box "
                               "imported from another host, or an image removed since)")
    assert e.value.hint == (f"pull or load mine/app:1 (or `boxlite save` it where it is), "
                            f"then {doing}")
