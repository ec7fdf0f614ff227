"""docker's `--mount KEY=VALUE,...`, turned into the volume request or `--tmpfs` spec it means.

Keys (docker's): `type` (bind, volume, tmpfs; default volume), `source`/`src`,
`target`/`destination`/`dst`, `readonly`/`ro` (bare, or true/false/1/0), `tmpfs-size`,
`tmpfs-mode`, `volume-nocopy`; `bind-propagation`, `consistency` and `volume-driver=local` are taken
with no effect here (a VM's 9p share has no propagation). Fields are CSV, as docker's:
a value with a comma is quoted (`"source=/a,b"`).
"""

from __future__ import annotations

import csv

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.volumes import VolumeRequest, volume_request
from boxlite_cli.state.volumes import NAME_RE

TYPES = ("bind", "volume", "tmpfs")
TRUE, FALSE = ("", "1", "true"), ("0", "false")
IGNORED = ("bind-propagation", "consistency", "bind-nonrecursive")


def parse_mount(spec: str) -> VolumeRequest | str:
    """One --mount → a volume's request, or a tmpfs's `--tmpfs` spec."""
    def bad(why: str) -> UsageError:
        return UsageError(f"invalid --mount {spec!r}: {why}",
                          hint="type=bind,source=/host/dir,target=/dir[,readonly] "
                               "(or type=volume, type=tmpfs)")

    try:
        [fields] = list(csv.reader([spec], strict=True)) or [[]]
    except (csv.Error, ValueError):
        raise bad("it is not comma-separated KEY=VALUE fields") from None
    kind, source, target, readonly, nocopy = "volume", "", "", False, False
    tmpfs_options: list[str] = []
    for item in fields:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key == "type" and eq:
            if value not in TYPES:
                raise bad(f"type {value!r} is not one of {', '.join(TYPES)}")
            kind = value
        elif key in ("source", "src") and eq:
            source = value
        elif key in ("target", "destination", "dst") and eq:
            target = value
        elif key in ("readonly", "ro"):
            if value.lower() not in TRUE + FALSE:
                raise bad(f"{key}={value!r} is not true or false")
            readonly = value.lower() in TRUE
        elif key == "volume-nocopy":
            if value.lower() not in TRUE + FALSE:
                raise bad(f"{key}={value!r} is not true or false")
            nocopy = value.lower() in TRUE
        elif key == "tmpfs-size" and eq:
            tmpfs_options.append(f"size={value}")
        elif key == "tmpfs-mode" and eq:
            tmpfs_options.append(f"mode={value}")
        elif (key == "volume-driver" and value == "local") or (key in IGNORED and eq):
            continue
        else:
            raise bad(f"unknown or unsupported field {item!r}")
    if not target:
        raise bad("no target (the path in the box)")
    if kind == "tmpfs":
        if source:
            raise bad("a tmpfs takes no source")
        if ":" in target:
            raise bad("a tmpfs path with ':' cannot be mounted")
        options = [*tmpfs_options, *(["ro"] if readonly else [])]
        return target + (":" + ",".join(options) if options else "")
    if tmpfs_options:
        raise bad(f"tmpfs options on a {kind} mount")
    if kind == "bind" and not source.startswith("/"):
        raise bad("a bind mount's source is an absolute host path")
    if kind == "volume" and source and not NAME_RE.match(source):
        raise bad(f"a volume's source is a volume name (letters, digits, _.-), not {source!r}"
                  " (type=bind mounts a host path)")
    if nocopy and kind != "volume":
        raise bad("volume-nocopy is for type=volume")
    if nocopy and not source:
        raise bad("volume-nocopy needs a named volume (an anonymous one is always new)")
    return volume_request(source, target, readonly, nocopy, bad)  # (no source: anonymous)


def split_mounts(specs: tuple[str, ...] | list[str]) -> tuple[list[VolumeRequest], list[str]]:
    """Every --mount as (volume requests, --tmpfs specs)."""
    volumes: list[VolumeRequest] = []
    tmpfs: list[str] = []
    for spec in specs:
        parsed = parse_mount(spec)
        if isinstance(parsed, VolumeRequest):
            volumes.append(parsed)
        else:
            tmpfs.append(parsed)
    return volumes, tmpfs
