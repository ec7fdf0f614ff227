"""One-line diagnostics on the VM console (the host keeps the console log)."""

from __future__ import annotations

import os
import sys

_target: str | None = "/dev/console"


def use_stderr() -> None:
    """Send log lines to stderr instead of /dev/console (host-side runs, tests)."""
    global _target
    _target = None


def log(line: str) -> None:
    """Write one line; never raises."""
    data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
    if _target is not None:
        try:
            fd = os.open(_target, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            pass
        else:
            try:
                os.write(fd, data)
                return
            except OSError:
                pass
            finally:
                os.close(fd)
    try:
        sys.stderr.buffer.write(data)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
