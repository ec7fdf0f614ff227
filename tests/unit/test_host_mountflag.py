"""docker's --mount, as the volume request or --tmpfs spec it means."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.mountflag import parse_mount, split_mounts
from boxlite_cli.runtime.volumes import VolumeRequest

R = VolumeRequest


@pytest.mark.parametrize(("spec", "expected"), [
    ("type=bind,source=/host/dir,target=/dir", R("bind", "/host/dir", "/dir")),
    ("type=bind,src=/h,dst=/d,readonly", R("bind", "/h", "/d", readonly=True)),
    ("type=bind,src=/h,destination=/d,ro=true,bind-propagation=rshared", R("bind", "/h", "/d", True)),
    ("type=bind,src=/h,target=/d,readonly=false", R("bind", "/h", "/d")),
    ("source=cache,target=/root/.cache", R("volume", "cache", "/root/.cache")),
    ("type=volume,target=/data", R("anonymous", "", "/data")),
    ("type=volume,target=/data,readonly", R("anonymous", "", "/data", readonly=True)),
    ("type=volume,src=vol,dst=/v,volume-driver=local", R("volume", "vol", "/v")),
    ("type=tmpfs,target=/run", "/run"),
    ("type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1770,readonly", "/run:size=64m,mode=1770,ro"),
    ('type=bind,"source=/a,b",target=/x', R("bind", "/a,b", "/x")),
    # (what -v cannot say: a ':' in a path)
    ("type=bind,source=/h:x,target=/in:box", R("bind", "/h:x", "/in:box")),
    ("type=bind,source=/h//x/,target=/d/../e", R("bind", "/h/x", "/e")),
])
def test_mounts_become_the_volume_or_tmpfs_they_mean(spec: str, expected: R | str) -> None:
    assert parse_mount(spec) == expected


@pytest.mark.parametrize(("spec", "says"), [
    ("type=nfs,target=/x", "type 'nfs'"),
    ("type=bind,source=/h", "no target"),
    ("type=bind,source=rel,target=/x", "absolute host path"),
    ("type=volume,source=/abs,target=/x", "volume name"),
    ("type=volume,source=../x,target=/x", "a volume's source is a volume name .*, not '../x'"),
    ("type=tmpfs,source=/h,target=/x", "takes no source"),
    ("type=bind,source=/h,target=/x,tmpfs-size=1m", "tmpfs options on a bind"),
    ("type=bind,source=/h,target=/x,readonly=maybe", "not true or false"),
    ("type=bind,source=/h,target=/x,volume-nocopy", "volume-nocopy is for type=volume"),
    ("type=volume,target=/x,volume-nocopy", "needs a named volume"),
    ("type=volume,source=v,target=/x,volume-nocopy=perhaps", "not true or false"),
    ("type=tmpfs,target=/run:x", "':'"),
    ("type=bind,source=/h,target=rel", "not absolute"),
    ("type=bind,source=/h,target=/proc/x", "kernel file systems"),
    ("type=volume,source=bad/name,target=/x", "volume name"),
    ('type=bind,"source=/h', "comma-separated"),
])
def test_bad_mounts_are_one_line_usage_errors(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match=f"invalid --mount .*{says}"):
        parse_mount(spec)


def test_volume_nocopy_is_the_v_option() -> None:
    assert parse_mount("src=vol,dst=/v,volume-nocopy") == R("volume", "vol", "/v", nocopy=True)
    assert parse_mount("src=vol,dst=/v,ro,volume-nocopy=true") == R("volume", "vol", "/v", True, True)
    assert parse_mount("src=vol,dst=/v,volume-nocopy=false") == R("volume", "vol", "/v")


def test_split_mounts() -> None:
    assert split_mounts(["type=tmpfs,dst=/t", "src=vol,dst=/v"]) == ([R("volume", "vol", "/v")], ["/t"])
