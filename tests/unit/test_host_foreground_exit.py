"""How a foreground run reads the shim's report of how its box ended
(runtime/foreground.py): the command's own exit code, or one line on why the box
stopped under it."""

from __future__ import annotations

import json

import pytest

from boxlite_cli.errors import SHIM_SIGNALLED, BoxStopped, OutputLost
from boxlite_cli.runtime.foreground import _exit_report


def reports(**fields: object) -> bytes:
    return b'{"ok": true}\n' + json.dumps(fields).encode() + b"\n"


@pytest.mark.parametrize("code", [0, 1, 125, 137, 143])
def test_the_commands_own_exit_code_is_returned_as_it_is(code: int) -> None:
    assert _exit_report(reports(exit_code=code, error=None)) == code


@pytest.mark.parametrize(("code", "reason"), [
    (125, "the VM powered off"),
    (137, "the VM was killed by signal 9"),
])
def test_a_box_that_stopped_under_its_command_says_why_with_that_code(code: int,
                                                                      reason: str) -> None:
    with pytest.raises(BoxStopped) as raised:
        _exit_report(reports(exit_code=code, error=reason))
    assert raised.value.exit_code == code
    assert raised.value.message == f"the box stopped before its command ended: {reason}"


def test_a_box_boxlite_was_asked_to_end_at_once_ends_without_a_word() -> None:
    assert _exit_report(reports(exit_code=137, error=SHIM_SIGNALLED)) == 137


def test_lost_output_is_said_with_the_commands_code() -> None:
    with pytest.raises(OutputLost) as raised:
        _exit_report(reports(exit_code=3, error=None, output_error="No space left on device"))
    assert raised.value.exit_code == 3


def test_no_exit_code_in_the_reports_is_none() -> None:
    assert _exit_report(b'{"ok": true}\nnot json\n') is None
