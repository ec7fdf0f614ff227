"""`commit --change`: Dockerfile instructions applied to an image's config, as docker's
(CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable
from typing import Any

from boxlite_cli.errors import UsageError

SHELL = ["/bin/sh", "-c"]


def _bad(change: str, why: str) -> UsageError:
    return UsageError(f"invalid --change {change!r}: {why}",
                      hint="e.g. -c 'CMD [\"python3\", \"app.py\"]' -c 'ENV MODE=prod'")


_VAR = re.compile(r"\\\$|\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, env: list[str]) -> str:
    """`$VAR` and `${VAR}` from the config's environment, as a Dockerfile's ENV, LABEL,
    WORKDIR, USER, VOLUME, EXPOSE and STOPSIGNAL take them (unset: empty; `\\$`: a `$`)."""
    values = dict(e.partition("=")[::2] for e in env if isinstance(e, str))

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        return values.get(match.group(1) or match.group(2), "")

    return _VAR.sub(value, text)


def _words(change: str, text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as e:
        raise _bad(change, str(e)) from None


def _json_or_shell(change: str, text: str) -> list[str]:
    """The exec form (a JSON array of strings) or the shell form (`/bin/sh -c TEXT`)."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None  # (docker runs a malformed array by the shell, as written)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    return [*SHELL, text]


def _pairs(change: str, text: str, what: str) -> list[tuple[str, str]]:
    """`K=V ...` (quotes as a shell's), or the old form `K V...` (one pair)."""
    words = _words(change, text)
    if not words:
        raise _bad(change, f"{what} needs a name")
    if "=" not in words[0]:
        if len(words) < 2:
            raise _bad(change, f"{what} {words[0]} needs a value")
        return [(words[0], text.split(None, 1)[1].strip())]
    pairs = []
    for word in words:
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise _bad(change, f"{word!r} is not NAME=VALUE")
        pairs.append((name, value))
    return pairs


def _env(config: dict[str, Any], change: str, text: str) -> None:
    env = [e for e in config.get("Env") or [] if isinstance(e, str)]
    for name, value in _pairs(change, text, "ENV"):
        names = [e.partition("=")[0] for e in env]
        if name in names:  # (in its place, as docker's)
            env[names.index(name)] = f"{name}={value}"
        else:
            env.append(f"{name}={value}")
    config["Env"] = env


def _label(config: dict[str, Any], change: str, text: str) -> None:
    labels = dict(config.get("Labels") or {})
    labels.update(_pairs(change, text, "LABEL"))
    config["Labels"] = labels


MAX_EXPOSE_RANGE = 1024  # ports one EXPOSE range may name


def _expose(config: dict[str, Any], change: str, text: str) -> None:
    ports = dict(config.get("ExposedPorts") or {})
    for word in _words(change, text) or [""]:
        port, _, proto = word.partition("/")
        low, dash, high = port.partition("-")  # (a Dockerfile's range: 8000-8010/udp)
        high = high if dash else low
        if not (low.isdigit() and high.isdigit() and 0 < int(low) <= int(high) < 65536) \
                or proto not in ("", "tcp", "udp", "sctp"):
            raise _bad(change, f"{word!r} is not a port (80, 53/udp, 8000-8010)")
        if int(high) - int(low) >= MAX_EXPOSE_RANGE:
            raise _bad(change, f"{word!r}: a range names {MAX_EXPOSE_RANGE} ports at most")
        for number in range(int(low), int(high) + 1):
            ports[f"{number}/{proto or 'tcp'}"] = {}
    config["ExposedPorts"] = ports


def _volume(config: dict[str, Any], change: str, text: str) -> None:
    paths = _json_or_shell(change, text)
    paths = _words(change, text) if paths[:2] == SHELL else paths
    if not paths or not all(p.startswith("/") for p in paths):
        raise _bad(change, "a VOLUME is an absolute path")
    config["Volumes"] = {**(config.get("Volumes") or {}), **{p: {} for p in paths}}


def _one(key: str) -> Callable[[dict[str, Any], str, str], None]:
    def set_it(config: dict[str, Any], change: str, text: str) -> None:
        config[key] = text

    return set_it


def _cmd(config: dict[str, Any], change: str, text: str) -> None:
    config["Cmd"] = _json_or_shell(change, text)


def _entrypoint(config: dict[str, Any], change: str, text: str) -> None:
    config["Entrypoint"] = _json_or_shell(change, text)


def _onbuild(config: dict[str, Any], change: str, text: str) -> None:
    trigger = text.split(None, 1)[0].upper()
    if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
        raise _bad(change, f"{trigger} is not allowed as an ONBUILD trigger")
    config["OnBuild"] = [*(config.get("OnBuild") or []), text]


def _workdir(config: dict[str, Any], change: str, text: str) -> None:
    """An absolute path, or one relative to the working directory so far (docker's)."""
    config["WorkingDir"] = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/",
                                                             text))


INSTRUCTIONS: dict[str, Callable[[dict[str, Any], str, str], None]] = {
    "CMD": _cmd, "ENTRYPOINT": _entrypoint, "ENV": _env, "EXPOSE": _expose,
    "LABEL": _label, "ONBUILD": _onbuild, "STOPSIGNAL": _one("StopSignal"),
    "USER": _one("User"), "VOLUME": _volume, "WORKDIR": _workdir,
}


def apply_changes(config: dict[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    """`config` (an image's `config` section) with the instructions applied, in order;
    an ENTRYPOINT drops the CMD the box had, as in a Dockerfile, unless one is given."""
    result = dict(config)
    given = []
    for change in changes:
        keyword, _, text = change.strip().partition(" ")
        instruction = keyword.upper()
        text = text.strip()
        if instruction not in INSTRUCTIONS:
            raise _bad(change, f"{keyword or 'nothing'} is not one of "
                               f"{', '.join(sorted(INSTRUCTIONS))}")
        if not text:
            raise _bad(change, f"{instruction} needs an argument")
        if instruction in ("USER", "WORKDIR", "STOPSIGNAL") and "\n" in text:
            raise _bad(change, f"{instruction} takes one line")
        if instruction not in ("CMD", "ENTRYPOINT", "ONBUILD"):
            text = expand(text, result.get("Env") or [])
        INSTRUCTIONS[instruction](result, change, text)
        given.append(instruction)
    if "ENTRYPOINT" in given and "CMD" not in given:
        result["Cmd"] = None
    return result
