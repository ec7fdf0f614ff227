"""Shared helpers of the VM-less CLI tests."""

from __future__ import annotations

from pytest_console_scripts import RunResult, ScriptRunner


def bx(script_runner: ScriptRunner, *args: str) -> RunResult:
    return script_runner.run(["boxlite", *args], print_result=False)


def assert_one_line_error(result: RunResult, *needles: str) -> None:
    """Exit 125, `boxlite: ...` first, at most a hint after it, and no traceback."""
    assert result.returncode == 125, result.stderr
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("boxlite: "), result.stderr
    assert len(lines) <= 2, result.stderr
    if len(lines) == 2:
        assert lines[1].startswith("  hint: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], result.stderr
