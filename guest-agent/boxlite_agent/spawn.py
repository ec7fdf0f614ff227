"""Start one process inside the container rootfs.

The child enters the container before it executes the program: chroot into the
rootfs, chdir to the working directory (resolved by the kernel inside the chroot,
so it cannot escape), make the tty the controlling terminal, then drop to the user:
setgroups, setgid, setuid (in that order; chroot needs root). The executable path
is a container path, so exec resolves it inside the chroot too.

In the VM those steps are done by the payload's small static helper
(guest-agent/spawn/boxlite-spawn.c), which ``subprocess`` starts with vfork: a fork
of the agent costs ~0.1 s more under emulation. Where the helper is missing (the
agent run on a development host) a forked child runs ``_ChildSetup`` instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import subprocess
import termios
from dataclasses import dataclass, field

from boxlite_agent.cgroups import BOX_CGROUP
from boxlite_agent.command import DEFAULT_PATH, find_executable
from boxlite_agent.errors import ExecFailure, InvalidArgument
from boxlite_agent.pidns import BOX_PIDS
from boxlite_agent.ptys import open_pty, set_window_size
from boxlite_agent.resolve import join_container, mkdir_all_in_root, resolve_in_root
from boxlite_agent.ulimits import HELPER_ENV
from boxlite_agent.users import ExecUser, lookup_user

NO_NEW_PRIVS_ENV = "BOXLITE_NO_NEW_PRIVS"  # 1: the helper sets PR_SET_NO_NEW_PRIVS
STDOUT = 0
STDERR = 1
HELPER = "/opt/boxlite/libexec/boxlite-spawn"  # installed by images/guestbuild/agentroot.py


@dataclass
class ExecSpec:
    argv: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = ""
    user: str = ""
    tty: bool = False
    rows: int = 0
    cols: int = 0
    stdin: bool = False
    timeout_s: float = 0.0
    hold_output: bool = False
    exec_id: str = ""
    make_cwd: bool = False  # create a missing cwd (a box's main process)
    merge_stderr: bool = False  # stderr is stdout's pipe (all its output is STDOUT)
    cap_drop: int = 0  # capabilities taken from its bounding set (bit N: capability N)
    rlimits: str = ""  # its resource limits, as the helper takes them (ulimits.py)
    no_new_privileges: bool = False  # PR_SET_NO_NEW_PRIVS before it executes
    group_add: tuple[str, ...] = ()  # docker's --group-add: more supplementary groups
    # A spare VM's warm-up (warmup.py): the program is HELPER itself, handed in as
    # stdin and run as /proc/self/fd/0 (nothing of the image runs); argv[0] only names it.
    warm_up: bool = False


WARM_UP_PROGRAM = "/proc/self/fd/0"


@dataclass
class Spawned:
    popen: subprocess.Popen[bytes]
    master: int | None  # pty master (tty execs): output, input and resize
    stdin: int | None  # write end of the stdin pipe (non-tty execs with stdin)
    outputs: list[tuple[int, int]]  # (stream, read fd)


def build_env(entries: list[str], user: ExecUser, hostname: str, tty: bool) -> dict[str, str]:
    """The process environment: docker's defaults, overridden by ``entries``."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if tty:
        env["TERM"] = "xterm"
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep:
            continue  # "KEY" alone: the host resolves it or leaves it out
        if not key or "\0" in entry:
            raise InvalidArgument(f"invalid environment variable {entry!r}")
        env[key] = value
    env.setdefault("HOME", user.home or "/")
    return env


class _ChildSetup:
    """The preexec_fn. Runs in the forked child: syscalls only, no locks, no imports."""

    def __init__(self, root: str, cwd: str, user: ExecUser, tty: bool, err_fd: int) -> None:
        self.root, self.cwd, self.user, self.tty, self.err_fd = root, cwd, user, tty, err_fd

    def __call__(self) -> None:
        try:  # the agent protects itself from the OOM killer; its children must not
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError:
            pass
        step = "chroot"
        try:
            os.chroot(self.root)
            step = f"chdir to {self.cwd}"
            os.chdir(self.cwd)
            if self.tty:
                step = "set the controlling terminal"
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            step = "setgroups"
            os.setgroups(list(self.user.groups))
            step = f"setgid {self.user.gid}"
            os.setgid(self.user.gid)
            step = f"setuid {self.user.uid}"
            os.setuid(self.user.uid)
        except OSError as e:
            os.write(self.err_fd, f"{step}: {e.strerror}".encode())
            raise


def _prepare_cwd(root: str, cwd: str, make: bool) -> None:
    """Reject a working directory that is not a directory, and one that is missing
    unless `make` (a box's main process: `docker run -w` creates it, `docker exec -w`
    fails)."""
    try:
        st = os.stat(resolve_in_root(root, cwd))
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise ExecFailure(126, f'exec: cwd "{cwd}": {e.strerror}') from e
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise ExecFailure(126, f'exec: cwd "{cwd}" is not a directory')
        return
    if not make:
        raise ExecFailure(126, f'exec: cwd "{cwd}": no such file or directory')
    try:
        mkdir_all_in_root(root, cwd)
    except OSError as e:
        raise ExecFailure(126, f'exec: cannot create cwd "{cwd}": {e.strerror}') from e


def _exec_error(argv0: str, e: OSError) -> ExecFailure:
    if e.errno == errno.ENOENT:
        return ExecFailure(127, f'exec: "{argv0}": no such file or directory')
    reason = {
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOEXEC: "exec format error",
        errno.EISDIR: "is a directory",
    }.get(e.errno or 0, e.strerror or str(e))
    return ExecFailure(126, f'exec: "{argv0}": {reason}')


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _start_with_helper(root: str, cwd: str, user: ExecUser, spec: ExecSpec, executable: str,
                       stdio: tuple[int, int, int], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """vfork and exec HELPER, which enters the container and executes the program;
    returns once the program runs, raises ExecFailure when the helper could not."""
    err_r, err_w = os.pipe()
    cg_fd = BOX_CGROUP.procs_fd()  # (the helper joins the box's cgroup: cgroups.py)
    try:
        fds = f"{err_w}:{cg_fd}" if cg_fd is not None else str(err_w)
        argv = [HELPER, root, cwd, str(user.uid), str(user.gid),
                ",".join(str(g) for g in user.groups), "1" if spec.tty else "0",
                f"{spec.cap_drop:x}", fds, executable, *spec.argv]
        # (a spare's warm-up too: then what the box's first process takes, entering its
        # PID namespace, is translated already under TCG)
        try:
            with BOX_PIDS.entered():
                popen = subprocess.Popen(argv, executable=HELPER, stdin=stdio[0],
                                         stdout=stdio[1], stderr=stdio[2], env=env,
                                         start_new_session=True, close_fds=True,
                                         pass_fds=(err_w,) if cg_fd is None
                                         else (err_w, cg_fd), restore_signals=True)
        except ValueError as e:  # e.g. a NUL byte in argv
            raise InvalidArgument(f"invalid command: {e}") from e
        except OSError as e:  # E2BIG and the like: as the program's own exec would fail
            raise _exec_error(spec.argv[0], e) from e
        os.close(err_w)
        err_w = -1
        chunks = []
        while chunk := os.read(err_r, 4096):  # end of file: the program runs
            chunks.append(chunk)
    finally:
        os.close(err_r)
        if err_w >= 0:
            os.close(err_w)
        if cg_fd is not None:
            os.close(cg_fd)
    if not chunks:
        return popen
    popen.wait()
    detail = b"".join(chunks).decode("utf-8", "replace")
    kind, _, number = detail.partition(":")
    if kind == "exec" and number.isdigit():
        code = int(number)
        raise _exec_error(spec.argv[0], OSError(code, os.strerror(code)))
    raise ExecFailure(126, f"exec: {detail}")


def spawn(root: str, spec: ExecSpec, hostname: str) -> Spawned:
    """Start ``spec`` in ``root``; raises ExecFailure (126/127) or InvalidArgument."""
    if not spec.argv:
        raise InvalidArgument("argv is empty")
    fields = {"argv": spec.argv, "env": spec.env, "cwd": [spec.cwd], "user": [spec.user]}
    for what, values in fields.items():
        if any("\0" in v for v in values):
            raise InvalidArgument(f"{what} must not contain NUL bytes")
    user = lookup_user(root, spec.user, spec.group_add)
    env = build_env(spec.env, user, hostname, spec.tty)
    cwd = join_container("/", spec.cwd or "/")
    _prepare_cwd(root, cwd, spec.make_cwd)
    executable = (WARM_UP_PROGRAM if spec.warm_up
                  else find_executable(root, spec.argv[0], env["PATH"], cwd, user))

    parent_fds: list[int] = []  # ours, closed on failure
    child_fds: list[int] = []  # the child's ends, closed once it started
    try:
        master = stdin_w = None
        outputs: list[tuple[int, int]] = []
        if spec.tty:
            master, slave = open_pty(root)
            parent_fds.append(master)
            child_fds.append(slave)
            if spec.rows and spec.cols:
                set_window_size(master, spec.rows, spec.cols)
            if user.uid != 0:
                os.fchown(slave, user.uid, -1)
            os.set_blocking(master, False)
            stdin_fd = stdout_fd = stderr_fd = slave
            outputs.append((STDOUT, master))
        else:
            if spec.warm_up:
                stdin_fd = os.open(HELPER, os.O_RDONLY | os.O_CLOEXEC)
                child_fds.append(stdin_fd)
            elif spec.stdin:
                stdin_fd, stdin_w = os.pipe()
                parent_fds.append(stdin_w)
                child_fds.append(stdin_fd)
                os.set_blocking(stdin_w, False)
            else:
                stdin_fd = subprocess.DEVNULL
            out_r, stdout_fd = os.pipe()
            parent_fds.append(out_r)
            child_fds.append(stdout_fd)
            outputs.append((STDOUT, out_r))
            if spec.merge_stderr:
                stderr_fd = stdout_fd
            else:
                err_r, stderr_fd = os.pipe()
                parent_fds.append(err_r)
                child_fds.append(stderr_fd)
                outputs.append((STDERR, err_r))
            if user.uid != 0:  # its own, as runc makes them: /dev/stdout and the like open
                for fd in {stdout_fd, stderr_fd, stdin_fd}:
                    if fd != subprocess.DEVNULL and not spec.warm_up:
                        os.fchown(fd, user.uid, user.gid)
        if os.access(HELPER, os.X_OK):
            if spec.rlimits:  # (the helper sets them, then takes this out of the env)
                env = {**env, HELPER_ENV: spec.rlimits}
            if spec.no_new_privileges:  # (likewise)
                env = {**env, NO_NEW_PRIVS_ENV: "1"}
            popen = _start_with_helper(root, cwd, user, spec, executable,
                                       (stdin_fd, stdout_fd, stderr_fd), env)
            return Spawned(popen=popen, master=master, stdin=stdin_w, outputs=outputs)
        if spec.cap_drop or spec.rlimits or spec.no_new_privileges:
            raise ExecFailure(126, "exec: --cap-drop, --ulimit and --security-opt need the "
                                   "spawn helper")
        err_r2, err_w2 = os.pipe()
        child_fds.append(err_w2)
        os.set_blocking(err_r2, False)
        try:
            popen = subprocess.Popen(
                spec.argv,
                executable=executable,
                stdin=stdin_fd,
                stdout=stdout_fd,
                stderr=stderr_fd,
                env=env,
                start_new_session=True,
                preexec_fn=_ChildSetup(root, cwd, user, spec.tty, err_w2),
                close_fds=True,
                restore_signals=True,
            )
        except subprocess.SubprocessError as e:  # preexec_fn failed
            os.close(err_w2)
            child_fds.remove(err_w2)
            try:
                detail = os.read(err_r2, 4096).decode("utf-8", "replace") or str(e)
            except BlockingIOError:
                detail = str(e)
            raise ExecFailure(126, f"exec: {detail}") from e
        except OSError as e:
            raise _exec_error(spec.argv[0], e) from e
        except ValueError as e:  # e.g. a NUL byte in argv
            raise InvalidArgument(f"invalid command: {e}") from e
        finally:
            os.close(err_r2)
        return Spawned(popen=popen, master=master, stdin=stdin_w, outputs=outputs)
    except BaseException:
        _close_all(parent_fds)
        raise
    finally:
        _close_all(child_fds)
