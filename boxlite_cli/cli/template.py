"""`--format` templates: Go's text/template language, as docker's CLI takes it.

The engine is cli/gotemplate.py (its docstring lists what it supports: actions, pipelines,
variables, if/else, with, range, break/continue, comments, trim markers, Go's functions and
docker's json, join, split, upper, lower, title, pad, truncate). This module applies it to
boxlite's JSON records, as docker users write their templates:

- field names match the record's keys case-insensitively, CamelCase or snake_case
  (`{{.ExitCode}}` and `{{.exit_code}}` are the same field; `{{.OOMKilled}}` is oom_killed);
  a field a record does not have is an error;
- the keys of a map of the user's own (labels) are matched as written, and a missing one
  is `<no value>`, as in docker; `{{.Label "key"}}` indexes a map-valued field ("" when the
  key is absent, docker's ps);
- `\\t` and `\\n` written in the template's text are a tab and a newline (docker's);
- values print as Go prints them (`map[k:v]`, `[a b]`, `true`); `json` is compact.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from boxlite_cli.cli import gotemplate as go
from boxlite_cli.errors import UsageError

USER_MAPS = frozenset({"labels"})  # maps whose keys are the user's: a missing one is no value
SUPPORTED = ("--format takes Go's text/template, as docker's does (e.g. '{{.Field}}', "
             "'{{range .List}}{{.}} {{end}}', '{{json .}}')")


class _UserMap(dict[str, Any]):
    """A map of the user's own (labels): its keys as written, a missing one no value."""


class Row(dict[str, Any]):
    """A record with methods beside its fields, as docker's ps rows have: `{{.Label "k"}}`
    indexes `methods["Label"]`, which `{{json .}}` leaves out (docker's have it not)."""

    def __init__(self, fields: dict[str, Any], methods: dict[str, dict[str, Any]]) -> None:
        super().__init__(fields)
        self.methods = methods


def _key(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("__", "_")


def _go_name(key: str) -> str:
    """A record's key as docker users write it: exit_code is ExitCode."""
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def _field(receiver: Any, name: str) -> Any:
    if isinstance(receiver, _UserMap):
        return receiver.get(name)
    if not isinstance(receiver, dict):
        raise go.TemplateError(f"{name!r} is not a field of {go.describe(receiver)}")
    if name in receiver:
        key = name
    else:
        wanted = _key(name)
        bare = name.replace("_", "").lower()  # (acronyms: OOMKilled is oom_killed)
        matches = [k for k in receiver if isinstance(k, str)
                   and (_key(k) == wanted or k.replace("_", "").lower() == bare)]
        if not matches:
            fields = sorted({_go_name(k) for k in receiver if isinstance(k, str)})
            shown = ", ".join(fields[:30]) + (", ..." if len(fields) > 30 else "")
            raise go.TemplateError(f"no field {name!r}",
                                   hint=f"the fields there: {shown}" if fields else None)
        key = matches[0]
    value = receiver[key]
    if isinstance(value, dict) and isinstance(key, str) and _key(key) in USER_MAPS:
        return _UserMap(value)
    return value


def _method(receiver: Any, name: str, args: list[Any]) -> Any:
    """`{{.Label "key"}}`: a map-valued field or a Row's method called with a key indexes
    it ("" if none)."""
    if isinstance(receiver, Row) and name in receiver.methods:
        value: Any = receiver.methods[name]
    else:
        value = _field(receiver, name)
    if not isinstance(value, dict):
        raise go.TemplateError(f"{name!r} takes no arguments: it is not a map")
    if len(args) != 1 or not isinstance(args[0], str):
        raise go.TemplateError(f"{name!r} takes one key (a string), as in {{{{.{name} \"key\"}}}}")
    found = value.get(args[0])
    return "" if found is None else found


def _usage(template: str, error: go.TemplateError) -> UsageError:
    return UsageError(f"template {template!r}: {error}", hint=error.hint or SUPPORTED)


@functools.lru_cache(maxsize=64)
def _parse(template: str) -> tuple[go.Node, ...]:
    try:
        return go.parse(template, docker_escapes=True)
    except go.TemplateError as e:
        raise _usage(template, e) from None


def check(template: str) -> None:
    """UsageError for a template that does not parse (before there is a record to fill:
    a typo fails at once, not only once there is something to list, as docker's)."""
    _parse(template)


def render(template: str, record: dict[str, Any]) -> str:
    """Fill `template` from `record`; a template that is not valid or does not fit the
    record is a UsageError, not text printed as it is."""
    tree = _parse(template)
    try:
        return go.execute(tree, record, field=_field, method=_method)
    except go.TemplateError as e:
        raise _usage(template, e) from None


def header(template: str, names: dict[str, str] | None = None) -> str:
    """The header row of a `table ...` template: each column's field name in capitals,
    words apart (`{{.RunningFor}}` → RUNNING FOR), or its name in `names` (docker's
    `{{.CPUPerc}}` is CPU %), the text between as it is. A column of another action is
    named by its first field, else by its text in capitals."""
    parts: list[str] = []
    for node in _parse(template):
        if isinstance(node, go.Text):
            parts.append(node.text)
        elif isinstance(node, go.Action | go.Control) and not node.pipe.decls:
            name = _first_field(node.pipe)
            if name is not None and names and name in names:
                parts.append(names[name])
                continue
            parts.append(str(node.pipe).upper() if name is None
                         else re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper() or ".")
    return "".join(parts)


def _first_field(pipe: go.Pipe) -> str | None:
    """The last name of the first field in a pipeline ("" for `.`; None: no field)."""
    for cmd in pipe.cmds:
        for arg in cmd.args:
            if isinstance(arg, go.Field | go.Chain) or (isinstance(arg, go.Variable) and arg.names):
                return arg.names[-1]
            if isinstance(arg, go.Literal) and arg.value is go.DOT:
                return ""
            inner = _first_field(arg.pipe) if isinstance(arg, go.Paren) else None
            if inner is not None:
                return inner
    return None
