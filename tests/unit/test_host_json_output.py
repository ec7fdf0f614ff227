"""`--format json` and inspect: UTF-8 as docker prints it, and still safe for a
terminal (C1 controls, DEL and the Unicode line breaks escaped) and valid JSON for a
name that is not UTF-8 (its surrogates escaped)."""

from __future__ import annotations

import json

import pytest

from boxlite_cli.cli.output import print_json


def test_json_is_utf8_with_what_a_terminal_could_act_on_escaped(
        capsys: pytest.CaptureFixture[str]) -> None:
    data = {"label": "h\u00e9llo \u65e5\u672c", "csi": "\x9b31m", "esc": "\x1b[31m",
            "del": "a\x7fb", "ls": "a\u2028b", "not utf-8": "x\udcffy"}
    print_json(data)
    out = capsys.readouterr().out
    assert '"label": "h\u00e9llo \u65e5\u672c"' in out  # (it was "h\\u00e9llo")
    for raw in ("\x9b", "\x1b", "\x7f", "\u2028", "\udcff"):
        assert raw not in out
    assert json.loads(out) == data
