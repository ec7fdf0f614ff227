"""Options shared by run, create and exec, and their conversion to library types."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from boxlite_cli.cli.completion import complete_mount, complete_signal, complete_volume_flag
from boxlite_cli.cli.context import CliContext
from boxlite_cli.cli.paramtypes import Seconds
from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.network import network_config
from boxlite_cli.runtime.spec import ProcessOptions, parse_memory_mib
from boxlite_cli.runtime.terminal import terminal_size
from boxlite_cli.state.network import NETWORK_MODES, NetworkConfig
from boxlite_cli.state.records import DEFAULT_PIDS_LIMIT
from boxlite_cli.state.restartpolicy import POLICIES as RESTART_POLICIES

F = TypeVar("F", bound=Callable[..., Any])


def process_options(f: F) -> F:
    """-i -t -e --env-file -w -u --timeout (run, create and exec)."""
    for decorator in reversed([
        click.option("-i", "--interactive", is_flag=True,
                     help="Keep stdin open and stream it to the process."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal."),
        click.option("-e", "--env", "env", multiple=True, metavar="K=V|K",
                     help="Set an environment variable (K alone takes the host's value)."),
        click.option("--env-file", "env_files", multiple=True, type=click.Path(dir_okay=False),
                     help="Read environment variables from a file."),
        click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the box."),
        click.option("-u", "--user", metavar="USER[:GROUP]", help="User name or uid (and group) to run as."),
        click.option("--timeout", type=Seconds(), default=0,
                     metavar="SECS",
                     help="Kill the process after SECS seconds (exit code 124)."),
    ]):
        f = decorator(f)
    return f


def detach_keys_option(f: F) -> F:
    """--detach-keys of attach, run and start (docker's notation; parsed by the command)."""
    return click.option("--detach-keys", metavar="KEYS", default="ctrl-p,ctrl-q",
                        show_default=True,
                        help="The keys that detach from a tty session (-it), which runs "
                             "on: characters or ctrl-KEY, apart by commas.")(f)


def cold_option(f: F) -> F:
    """--cold of run and start: boot from scratch, not from a warm-start template."""
    return click.option("--cold", is_flag=True,
                        help="Boot from scratch instead of restoring a warm-start template "
                             "(also BOXLITE_WARM=0).")(f)


def stop_time_option(f: F) -> F:
    """-t/--time and -s/--signal of stop and restart (docker's 10 s default)."""
    f = click.option("-s", "--signal", "stop_signal", metavar="SIGNAL", default=None,
                     shell_complete=complete_signal,
                     help="Signal to send first (name or number) [default: the box's stop "
                          "signal: --stop-signal, the image's StopSignal, or SIGTERM].")(f)
    return click.option("-t", "--time", "timeout", default=None, metavar="SECS",
                        type=Seconds(forever=True),
                        help="Seconds to wait after that signal before SIGKILL (-1: for ever) "
                             "[default: the box's --stop-timeout, or 10].")(f)


HOST_PLATFORM = "linux/amd64"  # (what the guest payload runs; oci/pull.py picks it)
PLATFORM_NAMES = {"linux/amd64", "linux/x86_64", "linux/amd64/v1", "linux/amd64/v2",
                  "linux/amd64/v3", "amd64", "x86_64"}


def _check_platform(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and value.lower() not in PLATFORM_NAMES:
        raise UsageError(f"invalid --platform {value!r}: boxes run {HOST_PLATFORM} images "
                         "only (the guest's architecture)")


platform_option = click.option(
    "--platform", metavar="OS/ARCH", expose_value=False, callback=_check_platform,
    help=f"Taken for docker's sake: boxes run {HOST_PLATFORM} images (another platform is "
         "refused).")


def _quiet_pull(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliContext).quiet_pull = True


def box_options(f: F) -> F:
    """Options of a new box (run and create)."""
    for decorator in reversed([
        click.option("--name", help="Assign a name to the box."),
        click.option("--cidfile", "cidfile_path", metavar="FILE",
                     type=click.Path(dir_okay=False),
                     help="Write the box id to FILE (refused if FILE exists and is not "
                          "empty)."),
        click.option("-h", "--hostname", metavar="NAME",
                     help="The box's hostname [default: its id's first 12 characters]."),
        click.option("--entrypoint", help="Override the image's ENTRYPOINT."),
        click.option("--stop-signal", metavar="SIGNAL", shell_complete=complete_signal,
                     help="Signal `stop` and `restart` send the main process (name or number) "
                          "[default: the image's StopSignal, or SIGTERM]."),
        click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE",
                     help="Set a label on the box (find boxes by it: ps --filter label=KEY)."),
        click.option("--label-file", "label_files", multiple=True, metavar="FILE",
                     type=click.Path(dir_okay=False),
                     help="Read labels from FILE: a KEY=VALUE a line, # comments (--label "
                          "overrides)."),
        click.option("--stop-timeout", type=Seconds(forever=True),
                     default=None, metavar="SECS",
                     help="Seconds `stop` and `restart` wait after the stop signal before "
                          "SIGKILL (-1: for ever), unless given -t [default: 10]."),
        click.option("--log-driver", "log_driver", default=None, metavar="DRIVER",
                     shell_complete=lambda ctx, param, incomplete: [
                         d for d in ("json-file", "local", "none") if d.startswith(incomplete)],
                     help="json-file (local and k8s-file are taken as it): keep the main "
                          "process's output for `logs`; none: keep none [default: "
                          "json-file]."),
        click.option("--log-opt", "log_opts", multiple=True, metavar="KEY=VALUE",
                     help="max-size=SIZE: rotate the log past SIZE (10m; -1: never); "
                          "max-file=N: keep N files, the current one included [default: "
                          "50m a file, 2 files; $BOXLITE_LOG_MAX_SIZE]."),
        click.option("--cap-add", "cap_add", multiple=True, metavar="CAP",
                     help="Give back a capability --cap-drop took (e.g. after --cap-drop ALL)."),
        click.option("--cap-drop", "cap_drop", multiple=True, metavar="CAP",
                     help="Take a Linux capability (e.g. NET_RAW, or ALL) from every process "
                          "of the box [default: a root process has them all]."),
        click.option("--pids-limit", type=int, default=None, metavar="N",
                     help="Processes and threads the box may have at once (-1 or 0: no "
                          f"limit) [default: {DEFAULT_PIDS_LIMIT}]."),
        click.option("--cpus", default="1", show_default=True, metavar="N",
                     help="CPUs of the box: the VM's vCPUs; a fraction (1.5, 0.5) rounds "
                          "them up and limits the box's processes to that much CPU time, "
                          "as docker's --cpus does."),
        click.option("-m", "--memory", default="512m", show_default=True,
                     help="RAM of the box's VM (e.g. 512m, 2g), its guest kernel and agent "
                          "included: they take ~120 MiB of it, the box's processes the rest "
                          "(unlike docker's -m, a limit on the processes alone); 0 is "
                          "the default."),
        click.option("--disk-size", metavar="SIZE", default=None,
                     help="Size of the box's root disk (e.g. 20g; at most 512g): its "
                          "filesystem grows to it when the box first starts [default: the "
                          "image's content and 4 GiB free]."),
        click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default=None,
                     help="Accelerator [default: auto, or $BOXLITE_ACCEL]."),
        click.option("--vmm", type=click.Choice(["auto", "qemu", "cloud-hypervisor"]),
                     default=None,
                     help="Virtual machine monitor; auto prefers cloud-hypervisor when it is "
                          "installed, KVM works and the box needs no NAT or volumes "
                          "[default: $BOXLITE_VMM, config.toml's vmm, or auto]."),
        click.option("--rm", "auto_remove", is_flag=True, help="Remove the box when it exits."),
        click.option("--init", is_flag=True, expose_value=False,
                     help="Taken for docker's sake: every box has an init as its PID 1 "
                          "(boxlite-init), which reaps orphaned processes."),
        click.option("--read-only", "read_only", is_flag=True,
                     help="Make the box's root file system read-only (volumes, --tmpfs, "
                          "/dev and /dev/shm stay writable)."),
        click.option("--tmpfs", "tmpfs", multiple=True, metavar="PATH[:OPTIONS]",
                     help="Mount a tmpfs at PATH (docker's options: size=64m, mode=1777, "
                          "uid=, gid=, ro, exec, suid, dev; default noexec,nosuid,nodev)."),
        click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]",
                     help="A resource limit of the box's processes, as docker's (nofile, "
                          "nproc, core, memlock, stack...; -1: unlimited)."),
        click.option("--group-add", "group_add", multiple=True, metavar="GROUP",
                     help="Another supplementary group (a name in the box's /etc/group, or "
                          "a gid) of every process of the box."),
        click.option("--security-opt", "security_opts", multiple=True, metavar="OPTION",
                     help="no-new-privileges: no process of the box gains privileges by "
                          "executing a set-uid program; seccomp=unconfined, "
                          "apparmor=unconfined and label=disable are taken as they are."),
        click.option("--sysctl", "sysctls", multiple=True, metavar="NAME=VALUE",
                     help="A kernel parameter of the box's guest (/proc/sys: "
                          "net.core.somaxconn=1024, vm.overcommit_memory=1...): its kernel "
                          "is its own, so any parameter may be set."),
        click.option("--shm-size", "shm_size", metavar="SIZE", default=None,
                     help="Size of /dev/shm (e.g. 1g, for browsers) [default: 64m]."),
        click.option("--restart", "restart", metavar="POLICY", default="no", show_default=True,
                     shell_complete=lambda ctx, param, incomplete: [
                         p for p in RESTART_POLICIES if p.startswith(incomplete)],
                     help="Start the box again when its main process ends: always, "
                          "unless-stopped, on-failure[:N] (a non-zero exit, N times at "
                          "most), as docker's; never after a stop or kill. Not after the "
                          "host reboots (no daemon then)."),
        click.option("--privileged", is_flag=True,
                     help="Give the box's processes every capability, over --cap-add and "
                          "--cap-drop, as docker's (without it, a box's root has every "
                          "capability --cap-drop leaves: the VM is the boundary)."),
        platform_option,
        click.option("--pull", type=click.Choice(["missing", "always", "never"]), default="missing",
                     show_default=True, help="Pull the image before creating the box."),
        click.option("-q", "--quiet", "quiet_pull", is_flag=True, expose_value=False,
                     callback=_quiet_pull,
                     help="Show no progress of a pull (docker's; there is none off a "
                          "terminal)."),
        click.option("-v", "--volume", "volumes", multiple=True,
                     shell_complete=complete_volume_flag,
                     metavar="[HOSTPATH|NAME:]BOXPATH[:ro|rw]",
                     help="Share a host directory or file, or a named volume, at BOXPATH "
                          "(a missing host directory is made; BOXPATH alone: a new "
                          "anonymous volume)."),
        click.option("--mount", "mounts", multiple=True, metavar="type=TYPE,...",
                     shell_complete=complete_mount,
                     help="docker's long form of -v and --tmpfs: type=bind|volume|tmpfs, "
                          "source=, target=, readonly, tmpfs-size=, tmpfs-mode=."),
    ]):
        f = decorator(f)
    return f


def health_options(f: F) -> F:
    """--health-cmd and its timing, --no-healthcheck (run and create)."""
    for decorator in reversed([
        click.option("--health-cmd", "health_cmd", metavar="COMMAND", default=None,
                     help="Check the box's health: a shell command run in it every "
                          "--health-interval (exit 0: healthy), shown by ps and inspect "
                          "[default: the image's HEALTHCHECK]."),
        click.option("--health-interval", "health_interval", metavar="DURATION", default=None,
                     help="Time between checks (30s, 1m30s, 500ms) [default: 30s]."),
        click.option("--health-timeout", "health_timeout", metavar="DURATION", default=None,
                     help="Time a check may run before it counts as failed [default: 30s]."),
        click.option("--health-retries", "health_retries", type=int, metavar="N", default=None,
                     help="Failures in a row that make the box unhealthy [default: 3]."),
        click.option("--health-start-period", "health_start_period", metavar="DURATION",
                     default=None,
                     help="Time the box has to start: failures then do not count "
                          "[default: 0s]."),
        click.option("--health-start-interval", "health_start_interval", metavar="DURATION",
                     default=None,
                     help="Time between checks in the start period [default: 5s]."),
        click.option("--no-healthcheck", "no_healthcheck", is_flag=True,
                     help="Run no health check, not even the image's HEALTHCHECK."),
    ]):
        f = decorator(f)
    return f


def network_options(f: F) -> F:
    """--network --dns --dns-search --dns-option --add-host -p (run and create)."""
    for decorator in reversed([
        click.option("--network", "--net", "network", default="nat", show_default=True,
                     metavar="nat|none",
                     shell_complete=lambda ctx, param, incomplete: [
                         m for m in NETWORK_MODES if m.startswith(incomplete)],
                     help="nat: outbound access through the host (user-mode, no root; "
                          "docker's bridge, which is taken too); none: loopback only."),
        click.option("-p", "--publish", "publish", multiple=True,
                     metavar="[HOSTIP:][HOSTPORT:]BOXPORT[/PROTO]",
                     help="Publish a box port on the host (HOSTIP defaults to 127.0.0.1, "
                          "HOSTPORT, omitted or 0, to a free port chosen at each start); "
                          "ports may be ranges (8000-8001:80-81; 8000-8010:80: a free one of "
                          "the range)."),
        click.option("-P", "--publish-all", is_flag=True,
                     help="Publish every port the image EXPOSEs (that -p does not) on "
                          "127.0.0.1, on free ports chosen at each start."),
        click.option("--expose", "expose", multiple=True, metavar="PORT[/PROTO]",
                     help="Expose a port or a range of ports (8000-8010) as the image's "
                          "EXPOSE does: -P publishes it; not published by itself."),
        click.option("--dns", "dns", multiple=True, metavar="IP",
                     help="DNS server for the box (default: the host's resolver via NAT)."),
        click.option("--dns-search", "dns_search", multiple=True, metavar="DOMAIN",
                     help="A search domain of the box's resolver (resolv.conf's search; "
                          "'.': none)."),
        click.option("--dns-option", "--dns-opt", "dns_options", multiple=True,
                     metavar="OPTION",
                     help="An option of the box's resolver (resolv.conf's options: ndots:2, "
                          "timeout:1, attempts:2, rotate, edns0...)."),
        click.option("--add-host", "add_hosts", multiple=True, metavar="NAME:IP",
                     help="Add a line to the box's /etc/hosts."),
    ]):
        f = decorator(f)
    return f


def to_network(network: str, dns: tuple[str, ...], add_hosts: tuple[str, ...],
               publish: tuple[str, ...], dns_search: tuple[str, ...] = (),
               dns_options: tuple[str, ...] = ()) -> NetworkConfig:
    return network_config(network, dns, add_hosts, publish, dns_search, dns_options)


def check_tty_input(interactive: bool, tty: bool, detach: bool) -> None:
    """docker's rule: -i with -t needs a terminal on stdin (a pty would take piped
    bytes for keys: a 0x03 becomes a SIGINT, line ends are rewritten)."""
    if interactive and tty and not detach and not os.isatty(0):
        raise UsageError("the input device is not a TTY",
                         hint="drop -t to pipe data into the box")


def to_process_options(command: tuple[str, ...], interactive: bool, tty: bool,
                       env: tuple[str, ...], env_files: tuple[str, ...], workdir: str | None,
                       user: str | None, timeout: float, entrypoint: str | None = None
                       ) -> ProcessOptions:
    rows, cols = terminal_size(1) if tty else (0, 0)
    if tty and not (rows and cols):
        rows, cols = terminal_size(0)
    return ProcessOptions(
        command=list(command), entrypoint=entrypoint, env=list(env), env_files=list(env_files),
        workdir=workdir, user=user, tty=tty, interactive=interactive,
        rows=rows or 24, cols=cols or 80, timeout_s=timeout,
    )


def memory_mib(value: str) -> int:
    return parse_memory_mib(value)


@contextlib.contextmanager
def cidfile(path: str | None) -> Iterator[Callable[[str], None]]:
    """docker's --cidfile: FILE is opened before the box is made (refused when it has
    content already: another box's, maybe), the id written once it is; a FILE this
    made is removed again when no box came of it."""
    if path is None:
        yield lambda box_id: None
        return
    try:
        existed = os.path.exists(path)
        if existed and os.path.getsize(path) > 0:
            raise UsageError(f"the --cidfile {path} exists already",
                             hint="make sure its box is done, then delete the file")
        f = open(path, "w")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise UsageError(f"cannot write the --cidfile {path}: {e.strerror or e}") from None
    written = False

    def write(box_id: str) -> None:
        nonlocal written
        f.write(box_id)
        f.flush()
        written = True

    try:
        yield write
    finally:
        f.close()
        if not written and not existed:
            with contextlib.suppress(OSError):
                os.unlink(path)
