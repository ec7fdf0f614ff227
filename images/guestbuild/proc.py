"""Subprocesses, progress lines and safe removal of build directories."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

# mountinfo writes space, tab, newline and backslash in paths as a backslash + 3 octal digits.
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class BuildError(Exception):
    """A build step failed; the message says which and why."""


class Log:
    """Short progress lines on stderr, each with the time since the build started."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.monotonic() - self.start
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """A line that is printed even when quiet."""
        print(f"warning: {message}", file=sys.stderr, flush=True)


def run(
    cmd: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: IO[bytes] | int | None = None,
    stdout: IO[bytes] | int | None = None,
) -> None:
    """Run `cmd` with its chatter captured; shown only if it fails.

    Output redirected with `stdout` goes there instead. Raises BuildError naming
    the command and ending with the tail of what it printed. The command runs in
    its own process group, which is stopped as a whole if this build is
    interrupted (mmdebstrap forks helpers that would outlive it).
    """
    argv = [str(part) for part in cmd]
    proc = start(argv, cwd=cwd, env=env, stdin=stdin,
                 stdout=subprocess.PIPE if stdout is None else stdout,
                 stderr=subprocess.STDOUT if stdout is None else subprocess.PIPE)
    try:
        out, err = proc.communicate()
    except BaseException:
        stop_group(proc)
        raise
    if proc.returncode != 0:
        output = (out if stdout is None else err) or b""
        raise BuildError(f"`{' '.join(argv)}` exited with {proc.returncode}" + _tail(output))


def start(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen in a new session (its own process group), env added to ours."""
    full_env = {**os.environ, **env} if env is not None else None
    return subprocess.Popen(list(argv), env=full_env, start_new_session=True, **kwargs)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End `proc`'s whole process group.

    SIGTERM first (mmdebstrap then unmounts and cleans up after itself), SIGKILL
    for whatever is still running after a grace period.
    """
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
            if proc.returncode is not None and not group_alive(proc.pid):
                return


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still running (zombies don't count)."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _tail(output: bytes, limit: int = 3000) -> str:
    text = output.decode(errors="replace").strip()
    if not text:
        return ""
    return ":\n" + ("..." if len(text) > limit else "") + text[-limit:]


def capture(cmd: Sequence[str | Path], *, env: Mapping[str, str] | None = None) -> str:
    """Run `cmd` and return its stdout, stripped; BuildError on failure."""
    argv = [str(part) for part in cmd]
    full_env = {**os.environ, **env} if env is not None else None
    proc = subprocess.run(argv, env=full_env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"`{' '.join(argv)}` exited with {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first (from /proc/self/mountinfo)."""
    root = os.path.realpath(path)
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        mount_point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if mount_point == root or mount_point.startswith(root + "/"):
            found.append(Path(mount_point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a build directory without ever reaching into a mounted filesystem.

    A killed mmdebstrap can leave /proc, /sys or /dev of the host mounted in its
    chroot: those are unmounted first, and `rm --one-file-system` refuses to
    cross into anything still mounted.
    """
    if not path.exists() and not path.is_symlink():
        return
    for mount_point in mounts_under(path):
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)
    if mounts_under(path):
        raise BuildError(f"{path} still has filesystems mounted below it; not deleting it")
    for _attempt in range(3):
        if path.is_dir() and not path.is_symlink():
            subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False,
                           capture_output=True)
        else:
            path.unlink(missing_ok=True)
        if not path.exists() and not path.is_symlink():
            return
        time.sleep(0.5)
    raise BuildError(f"could not delete {path}")


def require_tools(tools: Mapping[str, str]) -> None:
    """Fail with one message listing the Debian packages of any missing tools."""
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if missing:
        raise BuildError(
            "missing host tools; install them with: apt-get install " + " ".join(missing)
        )
