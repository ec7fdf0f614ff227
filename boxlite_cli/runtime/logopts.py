"""--log-driver and --log-opt (docker's): whether a box's output is kept for `logs`,
and how much of it (shim/logframes.py rotates the files).

boxlite keeps a box's log itself, so docker's file drivers (`json-file`, the default,
and `local`; podman's `k8s-file`) all mean that log, and `none` keeps none (`logs`
then has nothing to read, as docker's says). Their size options are docker's:
`max-size` (a file's; `-1`: no limit) and `max-file` (how many files, the rotated
ones included; 1 unless given with max-size alone, as docker's json-file).
"""

from __future__ import annotations

from collections.abc import Iterable

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.spec import parse_size
from boxlite_cli.shim.logframes import MIN_LOG_MAX_BYTES

DRIVERS = ("json-file", "local", "k8s-file", "none")
DEFAULT_DRIVER = "json-file"
OPTIONS = ("max-size", "max-file")
DEFAULT_FILES = 2  # (without --log-opt: the current file and the one before)
MAX_FILES = 100
UNLIMITED = 1 << 62  # (max-size=-1)


def log_config(driver: str | None, opts: Iterable[str]) -> tuple[str, dict[str, str]]:
    """(driver, options) of --log-driver and --log-opt KEY=VALUE, checked."""
    driver = driver or DEFAULT_DRIVER
    if driver not in DRIVERS:
        raise UsageError(f"log driver {driver!r} is not supported: boxlite keeps a box's "
                         "output itself", hint="use json-file (the default; local and "
                                               "k8s-file are taken as it) or none")
    options: dict[str, str] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid --log-opt {opt!r}: expected KEY=VALUE")
        if key not in OPTIONS:
            raise UsageError(f"unknown --log-opt {key!r} for log driver {driver}",
                             hint="boxlite's log takes max-size and max-file")
        options[key] = value
    if options and driver == "none":
        raise UsageError("--log-opt does not apply to --log-driver none (no log is kept)")
    log_limits(driver, options, MIN_LOG_MAX_BYTES)  # (each value checked; the default
    # size is the box's own, read at its start)
    return driver, options


def log_limits(driver: str, options: dict[str, str], default_bytes: int) -> tuple[int, int]:
    """(bytes a file may reach, files kept) of a box's log; (0, 0) for none."""
    if driver == "none":
        return 0, 0
    size = options.get("max-size")
    if size is None:
        max_bytes = default_bytes
    elif size.strip() == "-1":
        max_bytes = UNLIMITED
    else:
        max_bytes = parse_size(size, "--log-opt max-size")
        if max_bytes <= 0:
            raise UsageError(f"invalid --log-opt max-size {size!r}: it must be more than 0")
        max_bytes = max(max_bytes, MIN_LOG_MAX_BYTES)
    files_text = options.get("max-file")
    if files_text is None:
        return max_bytes, 1 if size is not None else DEFAULT_FILES
    if not files_text.strip().isdigit() or not 1 <= int(files_text) <= MAX_FILES:
        raise UsageError(f"invalid --log-opt max-file {files_text!r}: a number from 1 to "
                         f"{MAX_FILES}")
    return max_bytes, int(files_text)
