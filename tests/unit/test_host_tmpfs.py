"""--tmpfs: docker's options parsed and checked before anything is made."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.tmpfs import box_tmpfs, check_tmpfs, parse_shm_size, parse_tmpfs
from boxlite_cli.shim.vmspec import GuestTmpfs


@pytest.mark.parametrize(("spec", "expected"), [
    ("/tmp", GuestTmpfs("/tmp")),
    ("/run/", GuestTmpfs("/run")),
    ("/run:size=64m", GuestTmpfs("/run", size_bytes=64 << 20)),
    ("/data:rw,exec,size=1g,mode=755", GuestTmpfs("/data", size_bytes=1 << 30, mode=0o755,
                                                  exec_=True)),
    ("/ro:ro,suid,dev,uid=1000,gid=100", GuestTmpfs("/ro", readonly=True, suid=True, dev=True,
                                                    uid=1000, gid=100)),
    ("/x:exec,noexec", GuestTmpfs("/x")),  # (the last one given wins, as in mount(8))
    ("/x:size=0", GuestTmpfs("/x")),  # (tmpfs's "no size": the kernel's default)
    ("/dev/shm:size=1g", GuestTmpfs("/dev/shm", size_bytes=1 << 30)),  # (docker's too)
])
def test_tmpfs_specs_take_dockers_options_and_defaults(spec: str, expected: GuestTmpfs) -> None:
    assert parse_tmpfs(spec) == expected


@pytest.mark.parametrize(("spec", "says"), [
    ("tmp", "must be absolute"),
    ("/", "root directory"),
    ("/proc/x", "cannot mount over /proc"),
    ("/dev", "cannot mount over /dev"),
    ("/dev/shm/x", "cannot mount over /dev"),
    ("/t:size=-1", "size '-1'"),
    ("/t:size=lots", "size 'lots' is not valid"),
    ("/t:mode=999", "mode '999'"),
    ("/t:uid=-1", "uid '-1'"),
    ("/t:nocopy", "unknown option 'nocopy'"),
    ("/t:ro=1", "unknown option 'ro=1'"),
])
def test_bad_tmpfs_specs_name_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match=f"invalid --tmpfs .*{says}"):
        parse_tmpfs(spec)


def test_a_path_mounted_twice_is_refused() -> None:
    assert [t.target for t in check_tmpfs(["/a", "/b"], ["/c"])] == ["/a", "/b"]
    with pytest.raises(UsageError, match="duplicate mount point /a"):
        check_tmpfs(["/a", "/a/"], [])
    with pytest.raises(UsageError, match="duplicate mount point /data"):
        check_tmpfs(["/data"], ["/data"])
    with pytest.raises(UsageError, match="at most 16"):
        check_tmpfs([f"/t{i}" for i in range(17)], [])


def test_shm_size_sizes_the_boxs_dev_shm_unless_a_tmpfs_of_it_is_given() -> None:
    """docker's: --shm-size sizes /dev/shm; a --tmpfs /dev/shm wins over it."""
    assert parse_shm_size(None) == 0
    assert parse_shm_size("256m") == 256 << 20
    for bad in ("0", "-1m", "lots", "2t"):
        with pytest.raises(UsageError, match=f"invalid --shm-size '{bad}': give a size"):
            parse_shm_size(bad)
    assert box_tmpfs(["/t"], [], 1 << 30) == [GuestTmpfs("/t"),
                                              GuestTmpfs("/dev/shm", size_bytes=1 << 30)]
    assert box_tmpfs(["/dev/shm:size=2m"], [], 1 << 30) == [
        GuestTmpfs("/dev/shm", size_bytes=2 << 20)]
    assert box_tmpfs([], [], 0) == []
