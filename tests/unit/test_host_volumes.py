"""-v: the spec parser, resolving mounts, named volumes, the VM's 9p shares."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from boxlite_cli.errors import Conflict, NotFound, UsageError, VmError
from boxlite_cli.runtime.volumes import (
    MAX_VOLUMES,
    VolumeRequest,
    check_host_sources,
    create_volume,
    make_missing_sources,
    parse_volume_spec,
    parse_volume_specs,
    remove_volume,
    resolve_mounts,
    vm_shares,
    volume_filter,
)
from boxlite_cli.shim.vmspec import GuestVolume, Launch
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec
from boxlite_cli.state.volumes import BIND, VOLUME, Mount, VolumeStore
from boxlite_cli.vmm.base import Share, VmSpec
from boxlite_cli.vmm.qemu import QemuDriver, share_args


@pytest.mark.parametrize(("spec", "expected"), [
    ("/data", VolumeRequest("anonymous", "", "/data")),
    ("/host/dir:/box/dir", VolumeRequest(BIND, "/host/dir", "/box/dir")),
    ("/host/dir:/box/dir:ro", VolumeRequest(BIND, "/host/dir", "/box/dir", True)),
    ("/host/dir:/box/dir:rw", VolumeRequest(BIND, "/host/dir", "/box/dir", False)),
    ("/host//dir/:/box/./dir/", VolumeRequest(BIND, "/host/dir", "/box/dir")),
    ("cache:/root/.cache", VolumeRequest(VOLUME, "cache", "/root/.cache")),
    ("my.vol-1_x:/v:ro", VolumeRequest(VOLUME, "my.vol-1_x", "/v", True)),
    # docker's SELinux labels and propagation: taken, of no effect in a VM's 9p share
    ("/host/dir:/box/dir:z", VolumeRequest(BIND, "/host/dir", "/box/dir")),
    ("/host/dir:/box/dir:ro,Z", VolumeRequest(BIND, "/host/dir", "/box/dir", True)),
    ("/host/dir:/box/dir:rw,z,rprivate", VolumeRequest(BIND, "/host/dir", "/box/dir")),
    ("data:/d:nocopy", VolumeRequest(VOLUME, "data", "/d", nocopy=True)),
    ("data:/d:ro,nocopy", VolumeRequest(VOLUME, "data", "/d", True, True)),
])
def test_parse_volume_spec(spec: str, expected: VolumeRequest) -> None:
    assert parse_volume_spec(spec) == expected


@pytest.mark.parametrize(("spec", "needle"), [
    ("", "empty"),
    (":/x", "empty part"),
    ("/h:", "empty part"),
    ("/h::ro", "empty part"),
    ("/a:/b:ro:extra", "too many"),
    ("/a:/b:rx", "unknown option 'rx' (use ro, rw or nocopy; docker's z, Z and "
                 "propagation options are taken too)"),
    ("/a:/b:ro,nocopy", "nocopy is for volumes"),
    ("/a:/b:copy", "unknown option 'copy'"),
    ("/a:nocopy", "missing"),
    ("/a:/b:ro,rw", "options 'ro,rw' repeat or conflict"),
    ("/a:/b:z,z", "repeat or conflict"),
    ("/a:/b:z,Z", "repeat or conflict"),
    ("/a:z", "missing"),
    ("/a:relative", "not absolute"),
    ("relative", "not absolute"),
    ("/a:ro", "missing"),
    ("/a:/", "root directory"),
    ("dir/sub:/x", "neither an absolute host path nor a volume name"),
    ("~/x:/x", "neither an absolute host path nor a volume name"),
    ("-bad:/x", "neither"),
    ("v:/x", "the volume name 'v' is too short: two characters at least"),  # (docker's)
    ("/h:/proc", "cannot mount over /proc"),  # (was accepted, and not seen in the box)
    ("/h:/dev", "cannot mount over /dev"),
    ("vv:/sys/fs/x", "cannot mount over /sys"),
    ("/proc/../proc", "cannot mount over /proc"),
])
def test_parse_volume_spec_refusals(spec: str, needle: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_volume_spec(spec)
    assert needle in e.value.message
    assert repr(spec) in e.value.message


def test_duplicates_and_limit() -> None:
    with pytest.raises(UsageError, match="duplicate mount point /x"):
        parse_volume_specs(["/a:/x", "vv:/x/"])
    with pytest.raises(UsageError, match="too many volumes"):
        parse_volume_specs([f"/v{i}" for i in range(MAX_VOLUMES + 1)])
    assert len(parse_volume_specs([f"/v{i}" for i in range(MAX_VOLUMES)])) == MAX_VOLUMES


def test_v_takes_relative_host_paths_and_makes_missing_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for spec, source in (("./src:/x", tmp_path / "src"), ("../up:/x", tmp_path.parent / "up"),
                         (".:/x", tmp_path)):
        request = parse_volume_spec(spec)
        assert (request.kind, request.source, request.make_missing) == (BIND, str(source), True)
    assert parse_volume_spec("src:/x").kind == VOLUME  # (a name, as docker's)
    requests = [parse_volume_spec("./a/b:/x")]
    check_host_sources(requests)  # (missing, to be made)
    make_missing_sources(requests)
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is missing and cannot be made"):
        make_missing_sources([parse_volume_spec("./file/sub:/x")])
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="is a link to nothing"):
        check_host_sources([parse_volume_spec("./dangling:/x")])


def test_missing_host_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist") as e:
        check_host_sources([VolumeRequest(BIND, str(tmp_path / "nope"), "/x")])
    assert e.value.hint is not None
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UsageError, match="neither a directory nor a file"):
        check_host_sources([VolumeRequest(BIND, str(tmp_path / "fifo"), "/x")])


def test_resolve_mounts_creates_named_and_anonymous(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    (tmp_path / "h").mkdir()
    create_volume(store, "old")
    reqs = parse_volume_specs([f"{tmp_path}/h:/h:ro", "old:/o", "new:/n", "/anon"])
    mounts, made = resolve_mounts(store, reqs)
    assert mounts[0] == Mount(BIND, f"{tmp_path}/h", "/h", True)
    assert [m.source for m in mounts[1:3]] == ["old", "new"]
    assert mounts[3].anonymous and len(mounts[3].source) == 64
    assert made == ["new", mounts[3].source]
    assert {v.name for v in store.all()} == {"old", "new", mounts[3].source}


def test_resolve_mounts_takes_back_what_it_made_on_failure(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    reqs = [VolumeRequest(VOLUME, "good", "/a"), VolumeRequest(VOLUME, "bad name!", "/b")]
    with pytest.raises(UsageError):
        resolve_mounts(store, reqs)
    assert store.all() == []


def test_volume_store_and_remove_in_use(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    info = create_volume(store, "data")
    assert Path(info.mountpoint).is_dir() and info.mountpoint.endswith("data/_data")
    assert create_volume(store, "data").created_at == info.created_at  # idempotent
    users = [("box1", [Mount(VOLUME, "data", "/d")])]
    with pytest.raises(Conflict, match="in use by box box1"):
        remove_volume(store, lambda: users, "data")
    remove_volume(store, lambda: [], "data")
    with pytest.raises(NotFound):
        store.get("data")
    with pytest.raises(NotFound):
        remove_volume(store, lambda: [], "data")
    assert len(create_volume(store, None).name) == 64


def test_vm_shares_dirs_volumes_and_single_files(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    create_volume(store, "vv")
    box = tmp_path / "box"
    box.mkdir()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "neighbour").write_text("private")
    (tmp_path / "dir" / "conf").write_text("shared")
    mounts = [Mount(BIND, str(tmp_path / "dir"), "/d"), Mount(VOLUME, "vv", "/v", True),
              Mount(BIND, str(tmp_path / "dir" / "conf"), "/etc/conf", True)]
    shares, guest = vm_shares(box, store, mounts)
    assert shares[0] == Share("vol0", str(tmp_path / "dir"))
    assert shares[1] == Share("vol1", str(store.data_dir("vv")), True)
    assert guest[2] == GuestVolume("vol2", "/etc/conf", True, "conf")
    holder = Path(shares[2].path)
    assert sorted(p.name for p in holder.iterdir()) == ["conf"]  # not its neighbours
    assert (holder / "conf").stat().st_ino == (tmp_path / "dir" / "conf").stat().st_ino
    # a second start re-links (the file may have been replaced meanwhile)
    vm_shares(box, store, mounts)
    (tmp_path / "dir" / "conf").unlink()
    with pytest.raises(VmError, match="does not exist any more"):
        vm_shares(box, store, mounts)
    store.remove("vv")
    with pytest.raises(VmError, match="volume vv"):
        vm_shares(box, store, mounts[1:2])


def test_a_file_whose_hard_link_is_refused_says_why(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """(fs.protected_hardlinks: a user sharing a file of root's, as /etc/hosts)"""
    (tmp_path / "box").mkdir()
    (tmp_path / "f").write_text("x")

    def refused(src: object, dst: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refused)
    with pytest.raises(VmError) as e:
        vm_shares(tmp_path / "box", VolumeStore(tmp_path / "v"),
                  [Mount(BIND, str(tmp_path / "f"), "/etc/f", True)])
    assert "fs.protected_hardlinks" in e.value.message
    assert e.value.hint == "share its directory instead (-v DIR:BOXDIR)"


def test_volume_ls_filters_dangling_and_name(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    for name in ("used", "free", "other"):
        create_volume(store, name)
    asked: list[int] = []

    def mounted() -> set[str]:
        asked.append(1)
        return {"used"}

    def names(*filters: str) -> list[str]:
        wanted = volume_filter(filters, mounted)
        return sorted(v.name for v in store.all() if wanted(v))

    assert names("dangling=true") == ["free", "other"]
    assert names("dangling=0") == ["used"]
    assert names("name=e", "dangling=1") == ["free", "other"]
    assert names("name=use", "name=oth") == ["other", "used"] and len(asked) == 3  # (not for name=)
    with pytest.raises(UsageError, match="invalid filter 'dangling=maybe'"):
        volume_filter(["dangling=maybe"], mounted)


def test_an_empty_volume_is_filled_from_the_image_unless_nocopy(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    for name in ("aa", "bb", "cc"):
        create_volume(store, name)
    (store.data_dir("cc") / "kept").write_text("")
    box = tmp_path / "box"
    box.mkdir()
    mounts = [Mount(VOLUME, "aa", "/a"), Mount(VOLUME, "bb", "/b", nocopy=True),
              Mount(VOLUME, "cc", "/c")]
    _, guest = vm_shares(box, store, mounts)
    assert [g.populate for g in guest] == [True, False, False]


def test_a_new_volume_name_has_two_characters_one_made_before_still_works(
        tmp_path: Path) -> None:
    """docker refuses `volume create a`; a one-letter volume of an older boxlite stays usable."""
    store = VolumeStore(tmp_path / "volumes")
    with pytest.raises(UsageError, match="two characters at least"):
        create_volume(store, "a")
    assert not (tmp_path / "volumes" / "a").exists()
    (store.data_dir("b")).mkdir(parents=True)
    (tmp_path / "volumes" / "b" / "volume.json").write_text('{"created_at": 1}')
    assert store.get("b").name == "b"
    assert store.create("b")[1] is False


def test_qemu_share_args(tmp_path: Path) -> None:
    spec = VmSpec(kernel=tmp_path / "k", initrd=tmp_path / "i", agent_root=tmp_path / "a",
                  rootfs_disk=tmp_path / "r", console_log=tmp_path / "c",
                  agent_socket=tmp_path / "s", control_socket=tmp_path / "q",
                  shares=(Share("vol0", "/h,odd"), Share("vol1", "/ro", True)))
    args = share_args(spec)
    assert args == [
        "-fsdev", "local,id=fs0,path=/h,,odd,security_model=mapped-xattr",
        "-device", "virtio-9p-device,fsdev=fs0,mount_tag=vol0",
        "-fsdev", "local,id=fs1,path=/ro,security_model=mapped-xattr,readonly=on",
        "-device", "virtio-9p-device,fsdev=fs1,mount_tag=vol1",
    ]
    cmd = QemuDriver().command(spec)
    assert cmd[-len(args):] == args


def test_launch_round_trip(tmp_path: Path) -> None:
    spec = VmSpec(kernel=tmp_path / "k", initrd=tmp_path / "i", agent_root=tmp_path / "a",
                  rootfs_disk=tmp_path / "r", console_log=tmp_path / "c",
                  agent_socket=tmp_path / "s", control_socket=tmp_path / "q",
                  shares=(Share("vol0", "/h", True),))
    launch = Launch("qemu", spec, 30.0, volumes=(GuestVolume("vol0", "/x", True, "f"),),
                    maintenance=True)
    launch.save(tmp_path / "vm.json")
    assert Launch.load(tmp_path / "vm.json") == launch


def test_box_state_keeps_mounts() -> None:
    state = BoxState(id="a" * 64, name="n", config=BoxConfig(
        image="i", image_id="sha256:x", rootfs_base="", process=ProcessSpec(argv=["true"]),
        mounts=[Mount(VOLUME, "v", "/v", True, True), Mount(VOLUME, "w", "/w", nocopy=True)]))
    assert BoxState.from_json(state.to_json()) == state
