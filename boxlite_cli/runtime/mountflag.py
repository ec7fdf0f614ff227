"""docker's `--mount KEY=VALUE,...`, turned into the `-v` or `--tmpfs` spec it means.

Keys (docker's): `type` (bind, volume, tmpfs; default volume), `source`/`src`,
`target`/`destination`/`dst`, `readonly`/`ro` (bare, or true/false/1/0), `tmpfs-size`,
`tmpfs-mode`, `volume-nocopy`; `bind-propagation`, `consistency` and `volume-driver=local` are taken
with no effect here (a VM's 9p share has no propagation). Fields are CSV, as docker's:
a value with a comma is quoted (`"source=/a,b"`).
"""

from __future__ import annotations

import csv

from boxlite_cli.errors import UsageError

TYPES = ("bind", "volume", "tmpfs")
TRUE, FALSE = ("", "1", "true"), ("0", "false")
IGNORED = ("bind-propagation", "consistency", "bind-nonrecursive")


def parse_mount(spec: str) -> tuple[str, str]:
    """One --mount → ("volume", a -v spec) or ("tmpfs", a --tmpfs spec)."""
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
    if ":" in source or ":" in target:
        raise bad("a path with ':' cannot be mounted")
    if kind == "tmpfs":
        if source:
            raise bad("a tmpfs takes no source")
        options = [*tmpfs_options, *(["ro"] if readonly else [])]
        return "tmpfs", target + (":" + ",".join(options) if options else "")
    if tmpfs_options:
        raise bad(f"tmpfs options on a {kind} mount")
    if kind == "bind" and not source.startswith("/"):
        raise bad("a bind mount's source is an absolute host path")
    if kind == "volume" and source.startswith("/"):
        raise bad("a volume's source is a volume name (type=bind mounts a host path)")
    if nocopy and kind != "volume":
        raise bad("volume-nocopy is for type=volume")
    if nocopy and not source:
        raise bad("volume-nocopy needs a named volume (an anonymous one is always new)")
    parts = [source, target] if source else [target]  # (a volume with no source: anonymous)
    options = [*(["ro"] if readonly else []), *(["nocopy"] if nocopy else [])]
    return "volume", ":".join(parts) + (":" + ",".join(options) if options else "")


def split_mounts(specs: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """Every --mount as (-v specs, --tmpfs specs)."""
    volumes: list[str] = []
    tmpfs: list[str] = []
    for spec in specs:
        kind, converted = parse_mount(spec)
        (tmpfs if kind == "tmpfs" else volumes).append(converted)
    return volumes, tmpfs
