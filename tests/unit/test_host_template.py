"""`inspect --format` templates."""

from __future__ import annotations

import pytest

from boxlite_cli.cli.template import render
from boxlite_cli.errors import UsageError

RECORD = {"id": "abc", "name": "web", "status": "exited", "exit_code": 3, "error": None,
          "config": {"image": "localhost/debian:bookworm", "process": {"argv": ["sh", "-c", "x"]}},
          "accel": "tcg", "detach": True}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{.Name}}", "web"),
    ("{{.Status}} {{.ExitCode}}", "exited 3"),
    ("{{ .exit_code }}", "3"),
    ("{{.Config.Image}}", "localhost/debian:bookworm"),
    ("{{json .Config.Process.Argv}}", '["sh", "-c", "x"]'),
    ("{{.Config.Process}}", '{"argv": ["sh", "-c", "x"]}'),
    ("{{.Error}}", "<no value>"),
    ("{{.Detach}}", "true"),
    ("id={{.Id}}!", "id=abc!"),
])
def test_render(template: str, expected: str) -> None:
    assert render(template, RECORD) == expected


@pytest.mark.parametrize("template", ["{{.Nope}}", "{{.Name.Deeper}}"])
def test_unknown_fields_are_usage_errors(template: str) -> None:
    with pytest.raises(UsageError, match="template"):
        render(template, RECORD)
