"""Turning run/create options and an image config into the box's main process (docker rules)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxlite_cli.errors import ImageError, UsageError
from boxlite_cli.state.records import DEFAULT_PIDS_LIMIT, ProcessSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV_NAME_RE = re.compile(r"^[^=\s]+\Z")
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\Z", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass
class ProcessOptions:
    """What the user gave on the command line for a process."""

    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    interactive: bool = False
    rows: int = 0
    cols: int = 0
    timeout_s: float = 0.0


def parse_env_item(item: str, host_env: dict[str, str]) -> str | None:
    """`K=V` as is; bare `K` takes the host's value, or is dropped when unset (docker)."""
    name, sep, _ = item.partition("=")
    if not name or not ENV_NAME_RE.match(name):
        raise UsageError(f"invalid environment variable: {item!r}")
    if sep:
        return item
    return f"{name}={host_env[name]}" if name in host_env else None


def _file_lines(path: str, what: str) -> list[tuple[int, str]]:
    """The lines of docker's --env-file and --label-file format, with their numbers: #
    comments and blank lines skipped, each line's front trimmed (values pass through as
    written)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}") from e
    data = data.removeprefix(b"\xef\xbb\xbf")  # (a BOM, as Windows editors write: docker's)
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        number = data[:e.start].count(b"\n") + 1
        raise UsageError(f"{what} {path}, line {number}: not valid UTF-8 text") from None
    # (lines end at \n only, a \r before it dropped: a form feed or U+2028 in a value is
    # the value's, as docker reads it)
    lines = ((n, raw.removesuffix("\r").lstrip()) for n, raw in enumerate(text.split("\n"), 1))
    return [(n, line) for n, line in lines if line and not line.startswith("#")]


def read_env_file(path: str, host_env: dict[str, str]) -> list[str]:
    """docker's --env-file format: one K=V or K per line; # comments and blanks skipped."""
    out = []
    for number, line in _file_lines(path, "env file"):
        try:
            value = parse_env_item(line, host_env)
        except UsageError as e:
            raise UsageError(f"env file {path}, line {number}: {e.message}") from None
        if value is not None:
            out.append(value)
    return out


def read_label_files(paths: Iterable[str]) -> list[str]:
    """docker's --label-file: one KEY=VALUE (or KEY) per line, as --label takes them."""
    return [line for path in paths for _, line in _file_lines(path, "label file")]


def merge_env(*layers: list[str]) -> list[str]:
    """Later layers override earlier ones, keeping first-seen order."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, _, value = item.partition("=")
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def _config_strings(image_config: dict[str, Any], key: str) -> list[str]:
    """A list-of-strings field of the image's config ([] when absent or null; a string
    alone is a list of one, as docker's StrSlice takes it)."""
    value = image_config.get(key)
    if value is None:
        return []
    if isinstance(value, str) and key != "Env":
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v
                                               for v in value):
        raise ImageError(f"invalid image config: {key} must be a list of strings")
    return list(value)


def _config_string(image_config: dict[str, Any], key: str) -> str:
    value = image_config.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or "\0" in value:
        raise ImageError(f"invalid image config: {key} must be a string")
    return value


# A box's hostname, as the guest agent takes it (one label or dotted, <= 63 characters).
HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,62}")


def check_hostname(name: str) -> None:
    if not HOSTNAME.fullmatch(name):
        raise UsageError(f"invalid hostname {name!r}",
                         hint="letters, digits, '.', '_' and '-', at most 63 characters, "
                              "not starting with '.' or '-'")


def image_stop_signal(image_config: dict[str, Any]) -> str:
    """The image's StopSignal ("" when it has none)."""
    return _config_string(image_config, "StopSignal")


# What Linux's execve takes: one argument or variable up to MAX_ARG_STRLEN, all of them
# (with their pointers) up to a quarter of the 8 MiB default stack. Past these the
# process could not start (E2BIG); they are refused before any VM is touched.
MAX_ARG_BYTES = 128 << 10
# (less what the guest adds: the program's path, the variables the agent sets)
MAX_EXEC_BYTES = (2 << 20) - (16 << 10)


def _check_exec_size(argv: list[str], env: list[str]) -> None:
    total = 0
    for what, items in (("argument", argv), ("environment variable", env)):
        for item in items:
            size = len(item.encode(errors="surrogateescape")) + 1
            if size > MAX_ARG_BYTES:
                raise UsageError(f"an {what} of the command is {size} bytes: Linux takes at "
                                 f"most {MAX_ARG_BYTES} (128 KiB) per {what}")
            total += size + 8
    if total > MAX_EXEC_BYTES:
        raise UsageError(f"the command and its environment take {total} bytes: Linux "
                         f"starts a process with at most {MAX_EXEC_BYTES} (about 2 MiB) here",
                         hint="pass large data in a file (-v or boxlite cp), not in "
                              "arguments or variables")


def process_spec(opts: ProcessOptions, image_config: dict[str, Any],
                 host_env: dict[str, str] | None = None) -> ProcessSpec:
    """The main process of a box from the options and the image's config."""
    host_env = dict(os.environ) if host_env is None else host_env
    image_entry = _config_strings(image_config, "Entrypoint")
    image_cmd = _config_strings(image_config, "Cmd")
    if opts.entrypoint is not None:
        entry = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command)
    else:
        entry = image_entry
        cmd = list(opts.command) or image_cmd
    argv = entry + cmd
    if not argv:
        why = ("--entrypoint '' cleared the image's ENTRYPOINT and CMD" if opts.entrypoint == ""
               else "the image has no CMD or ENTRYPOINT")
        raise UsageError(f"no command specified: {why}",
                         hint="give a command after the image name")
    user_env: list[str] = []
    for path in opts.env_files:
        user_env += read_env_file(path, host_env)
    for item in opts.env:
        value = parse_env_item(item, host_env)
        if value is not None:
            user_env.append(value)
    image_env = _config_strings(image_config, "Env")
    env = merge_env([f"PATH={DEFAULT_PATH}"], image_env, user_env)
    if opts.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    # An empty -w or -u is no override (docker's), as a `-u "$MAYBE"` in a script means.
    workdir = opts.workdir or _config_string(image_config, "WorkingDir")
    if workdir and not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} is invalid: it needs to be absolute")
    user = opts.user or _config_string(image_config, "User")
    for i, arg in enumerate(argv):
        _check_text(arg, f"argument {i} of the command" if i else "the command")
    for item in env:
        _check_text(item, "the environment variable")
    _check_text(workdir, "the working directory")
    _check_text(user, "the user")
    _check_exec_size(argv, env)
    return ProcessSpec(
        argv=argv, env=env, cwd=workdir or "/", user=user,
        tty=opts.tty, stdin=opts.interactive, rows=opts.rows, cols=opts.cols,
        timeout_s=opts.timeout_s, entrypoint_len=len(entry),
    )


def _check_text(value: str, what: str) -> None:
    """Refuse what is not UTF-8 text (bytes that are not, as Python decodes arguments):
    the agent's protocol carries text, and the guest would get something else."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raw = value.encode(errors="surrogateescape")
        raise UsageError(f"{what} {raw!r} is not valid UTF-8 text") from None


def parse_size(text: str, what: str = "size") -> int:
    """`512m`, `2g`, `1.5GiB`, `1073741824` → bytes (binary units, like docker)."""
    m = SIZE_RE.match(text.strip())
    if not m:
        raise UsageError(f"invalid {what} {text!r}: use a number with an optional unit (k, m, g)")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).lower()])


MIN_MEMORY_MIB = 128  # (below that the guest does not come up)
# --disk-size at most: the guest grows the filesystem online when the box first starts,
# which under TCG takes ~6 s a TiB (more on a busy host, within the first Init's time);
# and a VM killed during that grow can leave the next start failing in the kernel's
# resize, once: kept short
MAX_DISK_SIZE = 512 << 30
_MIB = 1 << 20


MAX_LABELS_BYTES = 64 * 1024  # of all labels of a box


def image_labels(image_config: dict[str, Any]) -> dict[str, str]:
    """The image's Labels, which a box gets as docker's containers do (its own override
    them); malformed ones are left out."""
    labels = image_config.get("Labels")
    if not isinstance(labels, dict):
        return {}
    return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)
            and k and "\0" not in k + v}


def box_labels(image_config: dict[str, Any], own: dict[str, str]) -> dict[str, str]:
    """A new box's labels: the image's, then its own (--label) over them; image labels
    past the box's limit of MAX_LABELS_BYTES are left out."""
    room = MAX_LABELS_BYTES - sum(len(k) + len(v) for k, v in own.items())
    merged: dict[str, str] = {}
    for key, value in image_labels(image_config).items():
        if key not in own and len(key) + len(value) <= room:
            merged[key] = value
            room -= len(key) + len(value)
    return {**merged, **own}


def parse_labels(items: list[str]) -> dict[str, str]:
    """--label KEY=VALUE (or KEY, for an empty value), as docker takes them."""
    labels: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.strip():
            raise UsageError(f"invalid label {item!r}: use KEY=VALUE")
        if any(c.isspace() for c in key):  # (docker's rule too)
            raise UsageError(f"invalid label {item!r}: the key has whitespace")
        _check_text(item, "label")
        labels[key] = value
    if sum(len(k) + len(v) for k, v in labels.items()) > MAX_LABELS_BYTES:
        raise UsageError(f"the labels take more than {MAX_LABELS_BYTES // 1024} KiB")
    return labels


def parse_disk_size(text: str | None) -> int:
    """--disk-size → bytes, rounded up to a whole MiB; 0 when not given."""
    if text is None:
        return 0
    value = parse_size(text, "disk size")
    if not 0 < value <= MAX_DISK_SIZE:
        why = "above 0" if value <= 0 else "up to 512g"
        raise UsageError(f"invalid disk size {text!r}: give a size {why} (e.g. 20g)")
    return -(-value // _MIB) * _MIB


def check_disk_size(disk_size: int, image_disk: int, image: str) -> None:
    """A box's disk holds its image's filesystem, which the box's cannot be smaller than."""
    if disk_size and disk_size < image_disk:
        need = -(-image_disk // (1 << 30))
        raise UsageError(f"--disk-size {disk_size // _MIB} MiB is smaller than the disk of "
                         f"{image}, {image_disk // _MIB} MiB (its content and 4 GiB free)",
                         hint=f"give at least that, e.g. --disk-size {need}g")


MAX_PIDS_LIMIT = 1 << 22  # (the kernel's PID_MAX_LIMIT: pids.max takes no more)


def pids_limit_of(value: int | None) -> int:
    """--pids-limit as a box keeps it: None is the default, -1 and 0 no limit (0)."""
    if value is None:
        return DEFAULT_PIDS_LIMIT
    if not -1 <= value <= MAX_PIDS_LIMIT:
        raise UsageError(f"invalid --pids-limit {value}: a number of processes up to "
                         f"{MAX_PIDS_LIMIT}, or -1 for no limit")
    return max(value, 0)


MIN_CPUS = 0.01  # (the guest's cgroup takes no less than 1 ms of every 100 ms)
MAX_VCPUS = 256


def parse_cpus(text: str) -> tuple[int, float]:
    """docker's --cpus (`2`, `1.5`, `0.5`) → (the VM's vCPUs, the box's CPU limit): a
    whole number is that many vCPUs and no limit; a fraction rounds the vCPUs up and
    limits the box's processes to that many CPUs' worth of time (0.0: no limit); 0 is
    docker's "no limit": one vCPU, the default."""
    cleaned = text.strip()
    try:
        value = float(cleaned) if re.fullmatch(r"\d+(\.\d*)?|\.\d+", cleaned) else None
    except ValueError:
        value = None
    if value == 0:  # (docker's "no limit": the default vCPUs, no limit)
        return 1, 0.0
    if value is None or not MIN_CPUS <= value <= MAX_VCPUS:
        raise UsageError(f"invalid --cpus {text!r}: a number of CPUs from {MIN_CPUS} to "
                         f"{MAX_VCPUS}", hint="--cpus 2: two vCPUs; --cpus 1.5: two vCPUs "
                                              "limited to one and a half CPUs' time")
    vcpus = max(1, math.ceil(value))
    return vcpus, (0.0 if value == vcpus else round(value, 3))


DEFAULT_MEMORY_MIB = 512  # a box's VM's RAM, unless -m says otherwise


def parse_memory_mib(text: str) -> int:
    """A memory size (bytes, or with a unit like docker) → MiB; at least 128 MiB. 0 is
    the default size (docker's -m 0 is no limit: a VM has one)."""
    value = parse_size(text, "memory size")
    if value == 0:
        return DEFAULT_MEMORY_MIB
    mib = value // (1024 * 1024)
    if mib < MIN_MEMORY_MIB:
        # (bytes, as docker reads it: 512 is not 512m; the hint only where that would do)
        bare = text.strip().isdigit() and int(text) >= MIN_MEMORY_MIB
        raise UsageError(f"invalid memory size {text!r}: a box needs at least "
                         f"{MIN_MEMORY_MIB} MiB",
                         hint=f"a size without a unit is bytes: did you mean {text.strip()}m?"
                         if bare else None)
    return mib


def host_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def host_memory_mib(meminfo: str | None = None) -> int | None:
    """The host's RAM (MemTotal), in MiB; None when unknown."""
    if meminfo is None:
        try:
            with open("/proc/meminfo") as f:
                meminfo = f.read(8192)
        except OSError:
            return None
    for line in meminfo.splitlines():
        key, _, value = line.partition(":")
        if key == "MemTotal" and value.split()[1:] == ["kB"]:
            return int(value.split()[0]) // 1024
    return None


def check_box_size(cpus: int, memory_mib: int, cpus_here: int | None = None,
                   memory_here_mib: int | None = None) -> None:
    """Refuse a box larger than this host (docker does): its VM would not boot, or
    crawl, and it took the boot timeout (minutes) to say so."""
    cpus_here = host_cpus() if cpus_here is None else cpus_here
    if cpus > cpus_here:
        raise UsageError(f"invalid --cpus {cpus}: this host has {cpus_here} CPUs",
                         hint=f"give at most --cpus {cpus_here}")
    if memory_here_mib is None:
        memory_here_mib = host_memory_mib()
    if memory_here_mib is not None and memory_mib > memory_here_mib:
        raise UsageError(f"invalid --memory: {memory_mib} MiB is more than this host's "
                         f"{memory_here_mib} MiB")
