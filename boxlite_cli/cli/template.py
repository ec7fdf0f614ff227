"""A small subset of Go templates for `--format`: `{{.Field.Sub}}`, `{{json .X}}`,
`{{index .Map "key"}}` and `{{.Label "key"}}` (ps); `\t` and `\n` in the text are a tab
and a newline (docker's). Maps and lists print as Go prints them (`map[k:v]`, `[a b]`).

Field names match the JSON record case-insensitively, CamelCase or snake_case
(`{{.ExitCode}}` and `{{.exit_code}}` are the same field), as docker users write them.
A key missing from a map of the user's own (labels) is `<no value>`, as in docker.
"""

from __future__ import annotations

import json
import re
from typing import Any

from boxlite_cli.errors import UsageError

ACTION = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")
INDEX = re.compile(r'\{\{\s*index\s+\.([A-Za-z0-9_.]*)\s+"((?:[^"\\]|\\.)*)"\s*\}\}')
# `{{.Label "key"}}`: a field that is a map, called with a key (docker's ps); "" if none
CALL = re.compile(r'\{\{\s*\.([A-Za-z0-9_]+)\s+"((?:[^"\\]|\\.)*)"\s*\}\}')
USER_MAPS = frozenset({"labels"})  # maps whose keys are the user's: a missing one is no value


def _key(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("__", "_")


def _lookup(record: Any, path: str, template: str) -> Any:
    value = record
    in_user_map = False
    for part in [p for p in path.split(".") if p]:
        if not isinstance(value, dict):
            raise UsageError(f"template {template!r}: {part!r} is not a field of a value")
        if in_user_map:  # (the user's keys, as written)
            value = value.get(part)
            in_user_map = False
            continue
        wanted = _key(part)
        bare = part.replace("_", "").lower()  # (acronyms: OOMKilled is oom_killed)
        matches = [k for k in value if _key(k) == wanted or k.replace("_", "").lower() == bare]
        if not matches:
            raise UsageError(f"template {template!r}: no field {part!r}")
        in_user_map = matches[0] in USER_MAPS
        value = value[matches[0]]
    return value


def _index(record: Any, path: str, key: str, template: str) -> Any:
    """`{{index .Map "key"}}`: the key of a map (None when it has none)."""
    value = _lookup(record, path, template)
    if not isinstance(value, dict):
        raise UsageError(f"template {template!r}: index of {path!r}, which is not a map")
    return value.get(key.replace('\\"', '"').replace("\\\\", "\\"))


ANY_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
SUPPORTED = '{{.Field.Sub}}, {{json .Field}}, {{index .Map "key"}} and {{.Label "key"}}'


def _text(value: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)  # (Go's: compact)
    if value is None:
        return "<no value>"
    return _go_text(value)


def _go_text(value: Any) -> str:
    """A value as Go's templates print it: `map[k:v]` (keys sorted), `[a b]`, `true`."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_text(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def render(template: str, record: dict[str, Any]) -> str:
    """Fill `template` from `record`; an action it does not support (range, index,
    if, ...) or one left open is a UsageError, not text printed as it is."""
    out: list[str] = []
    pos = 0
    for m in ANY_ACTION.finditer(template):
        _check_text(template[pos:m.start()], template)
        action = ACTION.fullmatch(m.group(0))
        indexed = INDEX.fullmatch(m.group(0)) if action is None else None
        called = CALL.fullmatch(m.group(0)) if action is None and indexed is None else None
        if action is not None:
            value = _text(_lookup(record, action.group(2), template), bool(action.group(1)))
        elif indexed is not None:
            value = _text(_index(record, indexed.group(1), indexed.group(2), template), False)
        elif called is not None:
            found = _index(record, called.group(1), called.group(2), template)
            value = "" if found is None else _text(found, False)
        else:
            raise UsageError(f"template {template!r}: unsupported action {m.group(0)!r}",
                             hint=f"boxlite's templates take {SUPPORTED}")
        out += [_unescape(template[pos:m.start()]), value]
        pos = m.end()
    _check_text(template[pos:], template)
    out.append(_unescape(template[pos:]))
    return "".join(out)


def _unescape(text: str) -> str:
    """docker's: `\t` and `\n` written in a template are a tab and a newline."""
    return text.replace("\\t", "\t").replace("\\n", "\n")


def _check_text(text: str, template: str) -> None:
    if "{{" in text:
        raise UsageError(f"template {template!r}: an action is not closed with }}}}",
                         hint=f"boxlite's templates take {SUPPORTED}")


def header(template: str) -> str:
    """The header row of a `table ...` template: each field's name in capitals, words
    apart (`{{.RunningFor}}` → RUNNING FOR), the text between as it is."""
    def name(m: re.Match[str]) -> str:
        field = (m.group(2) or m.group(3) or m.group(4) or "").rsplit(".", 1)[-1]
        return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", field).upper() or "."

    return _unescape(re.sub(r'\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}|\{\{\s*index\s+\.'
                            r'([A-Za-z0-9_.]*)\s+"(?:[^"\\]|\\.)*"\s*\}\}'
                            r'|\{\{\s*\.([A-Za-z0-9_]+)\s+"(?:[^"\\]|\\.)*"\s*\}\}', name, template))
