"""A small subset of Go templates for `inspect --format`: `{{.Field.Sub}}` and `{{json .X}}`.

Field names match the JSON record case-insensitively, CamelCase or snake_case
(`{{.ExitCode}}` and `{{.exit_code}}` are the same field), as docker users write them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from boxlite_cli.errors import UsageError

ACTION = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def _key(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("__", "_")


def _lookup(record: Any, path: str, template: str) -> Any:
    value = record
    for part in [p for p in path.split(".") if p]:
        if not isinstance(value, dict):
            raise UsageError(f"template {template!r}: {part!r} is not a field of a value")
        wanted = _key(part)
        matches = [k for k in value if _key(k) == wanted or k.lower() == part.lower()]
        if not matches:
            raise UsageError(f"template {template!r}: no field {part!r}")
        value = value[matches[0]]
    return value


ANY_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
SUPPORTED = "{{.Field.Sub}} and {{json .Field}}"


def _text(value: Any, as_json: bool) -> str:
    if as_json or isinstance(value, dict | list):
        return json.dumps(value)
    if value is None:
        return "<no value>"
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
        if action is None:
            raise UsageError(f"template {template!r}: unsupported action {m.group(0)!r}",
                             hint=f"boxlite's templates take {SUPPORTED}")
        out += [template[pos:m.start()],
                _text(_lookup(record, action.group(2), template), bool(action.group(1)))]
        pos = m.end()
    _check_text(template[pos:], template)
    out.append(template[pos:])
    return "".join(out)


def _check_text(text: str, template: str) -> None:
    if "{{" in text:
        raise UsageError(f"template {template!r}: an action is not closed with }}}}",
                         hint=f"boxlite's templates take {SUPPORTED}")
