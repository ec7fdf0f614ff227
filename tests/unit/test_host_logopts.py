"""--log-driver and --log-opt: docker's file drivers and none, and the size options."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.logopts import UNLIMITED, log_config, log_limits
from boxlite_cli.shim.logframes import MIN_LOG_MAX_BYTES


def test_the_file_drivers_keep_a_log_and_none_keeps_none() -> None:
    assert log_config(None, ()) == ("json-file", {})
    assert log_config("local", ["max-size=10m", "max-file=5"]) == (
        "local", {"max-size": "10m", "max-file": "5"})
    assert log_limits("none", {}, 1 << 20) == (0, 0)


@pytest.mark.parametrize(("options", "limits"), [
    ({}, (1 << 20, 2)),  # (the default size: $BOXLITE_LOG_MAX_SIZE or 50m; two files)
    ({"max-size": "10m"}, (10 << 20, 1)),  # (docker's json-file: one file unless told)
    ({"max-size": "10m", "max-file": "3"}, (10 << 20, 3)),
    ({"max-file": "4"}, (1 << 20, 4)),
    ({"max-size": "-1"}, (UNLIMITED, 1)),
    ({"max-size": "10"}, (MIN_LOG_MAX_BYTES, 1))])
def test_the_size_options_are_dockers(options: dict[str, str],
                                      limits: tuple[int, int]) -> None:
    assert log_limits("json-file", options, 1 << 20) == limits


@pytest.mark.parametrize(("driver", "opts", "says"), [
    ("syslog", (), "log driver 'syslog' is not supported"),
    ("json-file", ("max-size",), "invalid --log-opt 'max-size': expected KEY=VALUE"),
    ("json-file", ("compress=true",), "unknown --log-opt 'compress'"),
    ("json-file", ("max-size=big",), "invalid --log-opt max-size 'big'"),
    ("json-file", ("max-size=0",), "it must be more than 0"),
    ("json-file", ("max-file=0",), "a number from 1 to 100"),
    ("json-file", ("max-file=x",), "a number from 1 to 100"),
    ("none", ("max-size=1m",), "--log-opt does not apply to --log-driver none")])
def test_a_bad_log_option_is_refused(driver: str, opts: tuple[str, ...], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        log_config(driver, opts)
