"""docker's --mount, as the -v or --tmpfs spec it means."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.mountflag import parse_mount, split_mounts


@pytest.mark.parametrize(("spec", "expected"), [
    ("type=bind,source=/host/dir,target=/dir", ("volume", "/host/dir:/dir")),
    ("type=bind,src=/h,dst=/d,readonly", ("volume", "/h:/d:ro")),
    ("type=bind,src=/h,destination=/d,ro=true,bind-propagation=rshared", ("volume", "/h:/d:ro")),
    ("type=bind,src=/h,target=/d,readonly=false", ("volume", "/h:/d")),
    ("source=cache,target=/root/.cache", ("volume", "cache:/root/.cache")),
    ("type=volume,target=/data", ("volume", "/data")),
    ("type=volume,src=v,dst=/v,volume-driver=local", ("volume", "v:/v")),
    ("type=tmpfs,target=/run", ("tmpfs", "/run")),
    ("type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1770,readonly", ("tmpfs", "/run:size=64m,mode=1770,ro")),
    ('type=bind,"source=/a,b",target=/x', ("volume", "/a,b:/x")),
])
def test_mounts_become_the_volume_or_tmpfs_they_mean(spec: str, expected: tuple[str, str]) -> None:
    assert parse_mount(spec) == expected


@pytest.mark.parametrize(("spec", "says"), [
    ("type=nfs,target=/x", "type 'nfs'"),
    ("type=bind,source=/h", "no target"),
    ("type=bind,source=rel,target=/x", "absolute host path"),
    ("type=volume,source=/abs,target=/x", "volume name"),
    ("type=tmpfs,source=/h,target=/x", "takes no source"),
    ("type=bind,source=/h,target=/x,tmpfs-size=1m", "tmpfs options on a bind"),
    ("type=bind,source=/h,target=/x,readonly=maybe", "not true or false"),
    ("type=bind,source=/h,target=/x,volume-nocopy", "volume-nocopy is for type=volume"),
    ("type=volume,target=/x,volume-nocopy", "needs a named volume"),
    ("type=volume,source=v,target=/x,volume-nocopy=perhaps", "not true or false"),
    ("type=bind,source=/h:x,target=/x", "':'"),
    ('type=bind,"source=/h', "comma-separated"),
])
def test_bad_mounts_are_one_line_usage_errors(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match=f"invalid --mount .*{says}"):
        parse_mount(spec)


def test_volume_nocopy_is_the_v_option() -> None:
    assert parse_mount("src=v,dst=/v,volume-nocopy") == ("volume", "v:/v:nocopy")
    assert parse_mount("src=v,dst=/v,ro,volume-nocopy=true") == ("volume", "v:/v:ro,nocopy")
    assert parse_mount("src=v,dst=/v,volume-nocopy=false") == ("volume", "v:/v")


def test_split_mounts() -> None:
    assert split_mounts(["type=tmpfs,dst=/t", "src=v,dst=/v"]) == (["v:/v"], ["/t"])
