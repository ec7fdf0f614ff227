"""Init's --sysctl: kernel parameters of the guest (the box's own kernel), written to
/proc/sys before the box's first process. Checked again here: a name is /proc/sys
levels (dots, or slashes where a level holds a dot), never a way out of /proc/sys."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping

from boxlite_agent.errors import InvalidArgument

PROC_SYS = "/proc/sys"
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,63}\Z")
MAX_SYSCTLS = 64


def sysctl_path(name: str, root: str = PROC_SYS) -> str:
    """The file of a parameter; InvalidArgument for what is not a parameter's name."""
    parts = name.split("/") if "/" in name else name.split(".")
    if len(name) > 255 or len(parts) < 2 or any(
            p in (".", "..") or not _PART.match(p) for p in parts):
        raise InvalidArgument(f"invalid sysctl name {name!r}")
    return os.path.join(root, *parts)


def check_sysctls(sysctls: Mapping[str, str]) -> None:
    """What Init takes: so many names, each a name, each value one line."""
    if len(sysctls) > MAX_SYSCTLS:
        raise InvalidArgument(f"too many sysctls ({len(sysctls)})")
    for name, value in sysctls.items():
        sysctl_path(name)
        if len(value) > 4096 or "\n" in value or "\0" in value:
            raise InvalidArgument(f"invalid sysctl value for {name}")


def apply_sysctls(sysctls: Mapping[str, str], root: str = PROC_SYS) -> None:
    """Write each parameter, in order; the first the kernel has not, or refuses, is an
    InvalidArgument naming it (the start fails)."""
    for name, value in sysctls.items():
        path = sysctl_path(name, root)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise InvalidArgument(f"--sysctl {name}: the guest's kernel has no such "
                                  "parameter") from None
        except IsADirectoryError:
            raise InvalidArgument(f"--sysctl {name}: a group of parameters, not one") from None
        except OSError as e:
            raise InvalidArgument(f"--sysctl {name}: {e.strerror}") from None
        try:
            os.write(fd, value.encode())
        except OSError as e:
            why = "the kernel refuses that value" if e.errno == errno.EINVAL else e.strerror
            raise InvalidArgument(f"--sysctl {name}={value}: {why}") from None
        finally:
            os.close(fd)
