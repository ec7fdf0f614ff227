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


def render(template: str, record: dict[str, Any]) -> str:
    """Fill `template` from `record`; anything but plain actions is left as text."""

    def replace(m: re.Match[str]) -> str:
        value = _lookup(record, m.group(2), template)
        if m.group(1) or isinstance(value, dict | list):
            return json.dumps(value)
        if value is None:
            return "<no value>"
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    return ACTION.sub(replace, template)
