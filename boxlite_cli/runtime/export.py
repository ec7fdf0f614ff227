"""`boxlite export` and `boxlite import`: a box as one self-describing archive.

The archive is a tar stream compressed with zstd:

    manifest.json          first; format "boxlite-box", version 1; the box's config,
                           name and image (reference and id); for each disk member
                           its name, format, size and SHA-256
    disks/rootfs.qcow2     the box's disk chain flattened into one standalone qcow2
                           (no backing file: the image's ext4 base is folded in, so
                           the archive works on a host that lacks the image)

Export flattens a stopped box's active overlay (a running box's: a disk snapshot
taken first, which quiesces the guest) into a staging file, hashes it, then streams
manifest and disk into the output: an unnamed file (O_TMPFILE) linked into place at
the end, so a failed or killed export leaves no partial archive.

Import treats the archive as untrusted and checks everything before a box appears:
member names (only those the manifest declares, each once, regular files only, no
`..`, no links), the manifest (size-capped JSON, known format and version, schema),
each disk's size (capped, and equal to what the manifest declares) and SHA-256 while
it streams into a staging directory on the boxes' file system, then the qcow2 header
(no backing file, no external data file) and `qemu-img check`. Only then is the box
directory moved into place and its name reserved. Mounts are never imported (they
name host paths); published ports are kept but bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import ipaddress
import json
import os
import re
import secrets
import struct
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import zstandard

from boxlite_cli.disks.qcow2 import virtual_size
from boxlite_cli.disks.tools import run_tool
from boxlite_cli.errors import BoxliteError, Conflict, DiskError, ImageError, UsageError
from boxlite_cli.fdio import write_sparse
from boxlite_cli.oci.archive import clean_name
from boxlite_cli.outfile import output_path
from boxlite_cli.runtime import snapshots
from boxlite_cli.runtime.clone import check_name_free, commit_box, stage_state
from boxlite_cli.runtime.diskbase import check_disk_base
from boxlite_cli.runtime.logopts import DEFAULT_DRIVER, log_config
from boxlite_cli.runtime.names import random_name
from boxlite_cli.runtime.network import (
    MAX_RESOLVER_ITEMS,
    dns_option,
    dns_search_domain,
    parse_add_host,
    parse_expose,
)
from boxlite_cli.runtime.pausing import refuse_paused
from boxlite_cli.runtime.signals import parse_signal
from boxlite_cli.runtime.spec import MAX_DISK_SIZE, MAX_LABELS_BYTES, MIN_CPUS, MIN_MEMORY_MIB
from boxlite_cli.runtime.staging import Stage, clean_stale, stage
from boxlite_cli.runtime.tmpfs import check_tmpfs
from boxlite_cli.state.boxes import new_box_id, validate_name
from boxlite_cli.state.capabilities import MAX_NAMES, normalize
from boxlite_cli.state.groupadd import check_group_add
from boxlite_cli.state.health import HealthConfig, box_health, health_config_problem
from boxlite_cli.state.network import NETWORK_MODES, NetworkConfig, PortMapping
from boxlite_cli.state.records import DEFAULT_PIDS_LIMIT, BoxConfig, BoxState, ProcessSpec, Status
from boxlite_cli.state.restartpolicy import parse_restart
from boxlite_cli.state.sysctls import check_sysctls
from boxlite_cli.state.ulimits import normalize_ulimits

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime

FORMAT = "boxlite-box"
VERSION = 1
MANIFEST = "manifest.json"
ROOTFS = "disks/rootfs.qcow2"
DISK_NAMES = frozenset({ROOTFS})
MAX_MANIFEST = 1 << 20
DEFAULT_MAX_DISK = 256 << 30  # bytes of one disk member ($BOXLITE_IMPORT_MAX_DISK)
MAX_VIRTUAL = MAX_DISK_SIZE  # the disk size the guest sees (--disk-size's most)
HEADER_SLACK = 1 << 20  # tar headers (PAX included) allowed around each member
CHUNK = 1 << 20
# Left free after an import's disk is written (the box's own overlay, logs, ...).
IMPORT_HEADROOM = 64 << 20
QCOW2_MAGIC = b"QFI\xfb"
QCOW2_EXTERNAL_DATA = 1 << 2  # incompatible feature: the data lives in another file
# dirty, corrupt, compression type, extended L2 entries
QCOW2_KNOWN_INCOMPATIBLE = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4)
ACCELS = ("auto", "kvm", "tcg")
VMMS = ("auto", "qemu", "cloud-hypervisor")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_IMAGE_ID = re.compile(r"^[A-Za-z0-9:._-]{1,200}\Z")
_IMAGE_REFERENCE = re.compile(r"^[\x21-\x7e]{1,512}\Z")  # (what `run` was given: printable, no space)
Warn = Callable[[str], None]


class ArchiveError(BoxliteError):
    """An archive to import is malformed, hostile, or does not match its manifest."""


def _no_warn(_: str) -> None:
    pass


def max_disk_bytes() -> int:
    raw = os.environ.get("BOXLITE_IMPORT_MAX_DISK")
    return int(raw) if raw and raw.isdigit() else DEFAULT_MAX_DISK


# export ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportResult:
    path: Path | int  # (an fd: a pipe)
    size: int  # bytes of the archive (-1: written to a pipe)


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _config_json(config: BoxConfig) -> dict[str, Any]:
    """What an archive keeps of a box's config (never host paths: no mounts, no base)."""
    data = dataclasses.asdict(config)
    for key in ("rootfs_base", "rootfs_base_id", "mounts", "image", "image_id", "hostname"):
        data.pop(key, None)
    return data


def manifest_for(state: BoxState, disk_sha256: str, disk_size: int, virtual: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": time.time(),
        "name": state.name,
        "source_id": state.id,
        "image": {"reference": state.config.image, "id": state.config.image_id},
        "config": _config_json(state.config),
        "disks": [{"name": ROOTFS, "format": "qcow2", "size": disk_size,
                   "sha256": disk_sha256, "virtual_size": virtual}],
    }


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    info.type = tarfile.REGTYPE
    return info


def _open_output(out: Path, st: Stage) -> tuple[int, Path | None]:
    """A file to write the archive into: unnamed (O_TMPFILE) where the file system
    can, else a hidden partial file that the staging directory tracks."""
    with contextlib.suppress(OSError):
        return os.open(out.parent, os.O_TMPFILE | os.O_WRONLY, 0o600), None
    partial = out.parent / f".{out.name}.boxlite-partial-{secrets.token_hex(4)}"
    st.track(partial)
    try:
        return os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), partial
    except OSError as e:  # (named after the output, not our hidden partial file)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UsageError(f"cannot write {out}: {e.strerror}") from None


def _link_output(fd: int, partial: Path | None, out: Path, force: bool) -> None:
    """Give the finished archive its name; without `force` an existing file is kept."""
    source = str(partial) if partial is not None else f"/proc/self/fd/{fd}"
    # linkat(AT_SYMLINK_FOLLOW) names an O_TMPFILE file; os.link calls linkat (not
    # link) only when given a directory fd, which an absolute path then ignores.
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        if force:
            tmp = out.parent / f".{out.name}.boxlite-{secrets.token_hex(4)}"
            os.link(source, tmp, src_dir_fd=root, follow_symlinks=True)
            try:
                os.replace(tmp, out)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        else:
            os.link(source, out, src_dir_fd=root, follow_symlinks=True)
    except FileExistsError:
        raise Conflict(f"{out} already exists", hint="choose another file, or use --force") from None
    finally:
        os.close(root)
    if partial is not None:
        partial.unlink(missing_ok=True)


def _write_tar(raw: IO[bytes], manifest: bytes, disk: Path, disk_size: int) -> None:
    cctx = zstandard.ZstdCompressor(level=3, threads=-1)
    with cctx.stream_writer(raw, closefd=False) as zw, \
            tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tarinfo(MANIFEST, len(manifest)), io.BytesIO(manifest))
        with open(disk, "rb") as f:
            tar.addfile(_tarinfo(ROOTFS, disk_size), f)
    raw.flush()


def _write_archive(out: Path | int, manifest: bytes, disk: Path, disk_size: int, force: bool,
                   st: Stage) -> int:
    """Write the archive to file `out` (whole, or not at all) or, an int, to that fd (a
    pipe: what a failure leaves there is the reader's to discard)."""
    if isinstance(out, int):
        with os.fdopen(os.dup(out), "wb") as raw:
            _write_tar(raw, manifest, disk, disk_size)
        return -1
    fd, partial = _open_output(out, st)
    try:
        with os.fdopen(os.dup(fd), "wb") as raw:
            _write_tar(raw, manifest, disk, disk_size)
            os.fsync(raw.fileno())
            size = os.fstat(raw.fileno()).st_size
        _link_output(fd, partial, out, force)
        return size
    finally:
        os.close(fd)
        if partial is not None:
            partial.unlink(missing_ok=True)
            st.untrack(partial)


def export_box(rt: Runtime, ref: str, output: Path | int, force: bool = False,
               warn: Warn = _no_warn) -> ExportResult:
    """Write box `ref` (running or stopped) as an archive at `output`, or to fd `output`.

    An existing `output` is refused unless `force` (then replaced atomically)."""
    clean_stale(rt.paths)
    snapshots.collect_unused(rt)
    out: Path | int = output if isinstance(output, int) else output_path(output, "archive file")
    if isinstance(out, Path) and out.exists() and not force:
        raise Conflict(f"{output} already exists", hint="choose another file, or use --force")
    box_id = rt.resolve(ref)
    state = rt.get(box_id)
    if state.status in snapshots.BUSY:
        raise Conflict(f"box {state.name} is {state.status}; try again when it is settled")
    refuse_paused(state, "export it (its guest cannot flush its disk)")
    check_disk_base(state)
    if state.config.mounts:
        warn(f"box {state.name}'s volumes (-v) are not exported, only its own disk")
    copied: str | None = None  # a running box's disk, copied at one instant
    try:
        with stage(rt.paths, "export") as st:
            flat = st.dir / "rootfs.qcow2"
            source = rt.files(box_id).rootfs_disk
            if state.status in snapshots.RUNNING:
                copied = f"export-{secrets.token_hex(6)}"
                source = Path(snapshots.create(rt, box_id, copied, internal=True).file)
            try:
                with rt.activity(f"Flattening the disk of {state.name}"):
                    run_tool(["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", "-o",
                              "cluster_size=65536", str(source), str(flat)],
                             f"flattening the disk of box {state.name}")
            finally:  # (a kill -9 leaves it to snapshots.collect_unused())
                if copied is not None:
                    with contextlib.suppress(BoxliteError):
                        snapshots.remove(rt, box_id, copied)
            digest, size = _sha256(flat)
            manifest = json.dumps(manifest_for(state, digest, size, virtual_size(flat)),
                                  indent=2, sort_keys=True).encode()
            with rt.activity(f"Writing {'the archive' if isinstance(out, int) else output}"):
                written = _write_archive(out, manifest, flat, size, force, st)
    except OSError as e:
        where = "standard output" if isinstance(out, int) else str(output)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskError(f"No space left on device while exporting to {where}",
                            hint="free some disk space and try again") from e
        if isinstance(out, int) and e.errno in (errno.EBADF, errno.EINVAL):
            raise UsageError("cannot write the archive to standard output: it is not open "
                             "for writing", hint="give a file: -o FILE") from e
        raise
    return ExportResult(out, written)


# import: reading the archive ------------------------------------------------------------

class _Bounded(io.RawIOBase):
    """A reader that refuses to give more than `budget` bytes in total (a tar header
    claiming gigabytes of PAX data, or members beyond the manifest, stop here)."""

    def __init__(self, src: IO[bytes], budget: int, what: str) -> None:
        self.src = src
        self.budget = budget
        self.count = 0
        self.what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = min(len(view), self.budget - self.count)
        if want <= 0 and len(view) > 0:
            raise ArchiveError(f"{self.what} holds more data than its manifest declares")
        data = self.src.read(want)
        n = len(data)
        view[:n] = data
        self.count += n
        return n


@dataclass(frozen=True)
class DiskEntry:
    name: str
    size: int
    sha256: str
    virtual_size: int


@dataclass(frozen=True)
class Manifest:
    name: str
    image: str
    image_id: str
    config: BoxConfig
    disks: list[DiskEntry]
    rebound_ports: int = 0  # published ports moved to 127.0.0.1


def _member_name(raw: str, what: str) -> str:
    """The checks `load` applies to archive member names, as this module's error."""
    try:
        return clean_name(raw, what)
    except ImageError as e:
        raise ArchiveError(e.message) from None


def _expect(cond: bool, what: str, why: str) -> None:
    if not cond:
        raise ArchiveError(f"{what}: invalid manifest: {why}")


def _str(d: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = d.get(key, default)
    _expect(isinstance(value, str) and len(value) <= 4096, what, f"{key} is not a string")
    assert isinstance(value, str)
    _expect("\0" not in value, what, f"{key} holds a NUL byte")
    return value


def _int(d: dict[str, Any], key: str, what: str, lo: int, hi: int,
         default: int | None = None) -> int:
    value = d.get(key, default)
    _expect(isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi, what,
            f"{key} is not an integer from {lo} to {hi}")
    assert isinstance(value, int)
    return value


def _cpu_limit(cfg: dict[str, Any], what: str, vcpus: int) -> float:
    """A fractional --cpus: 0 (none), or a number of CPUs up to the box's vCPUs."""
    value = cfg.get("cpu_limit", 0.0)
    _expect(isinstance(value, int | float) and not isinstance(value, bool)
            and (value == 0 or MIN_CPUS <= value <= vcpus), what,
            f"cpu_limit is not 0 or a number of CPUs from {MIN_CPUS} to {vcpus}")
    return float(value)


def _checked_list(cfg: dict[str, Any], key: str, what: str,
                  check: Callable[[list[str]], list[str]]) -> list[str]:
    """A list of strings of the config, as `create` would take it (`check`'s)."""
    value = cfg.get(key, [])
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), what,
            f"{key} is not a list of strings")
    try:
        return check(value)
    except UsageError as e:
        raise ArchiveError(f"{what}: invalid manifest: {key}: {e.message}") from None


def _log(cfg: dict[str, Any], what: str) -> tuple[str, dict[str, str]]:
    """The box's log driver and options, as `create` would take them."""
    driver = cfg.get("log_driver", DEFAULT_DRIVER)
    options = cfg.get("log_options", {})
    _expect(isinstance(driver, str) and isinstance(options, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in options.items()),
            what, "log_driver or log_options is malformed")
    try:
        return log_config(driver, [f"{k}={v}" for k, v in options.items()])
    except UsageError as e:
        raise ArchiveError(f"{what}: invalid manifest: log: {e.message}") from None


def _healthcheck(cfg: dict[str, Any], what: str) -> HealthConfig | None:
    """The box's health check, as `create` would take it (None: none)."""
    value = cfg.get("healthcheck")
    if value is None:
        return None
    _expect(isinstance(value, dict) and set(value) <= {f.name for f in dataclasses.fields(HealthConfig)},
            what, "healthcheck is not an object of the known fields")
    config = HealthConfig(**value)
    problem = health_config_problem(config)
    _expect(problem is None, what, f"healthcheck: {problem}")
    return box_health(None, config)


def _sysctls(cfg: dict[str, Any], what: str) -> dict[str, str]:
    """--sysctl values, as `create` would take them."""
    value = cfg.get("sysctls", {})
    _expect(isinstance(value, dict) and all(isinstance(v, str) for v in value.values()), what,
            "sysctls is not an object of strings")
    try:
        return check_sysctls(f"{name}={v}" for name, v in value.items())
    except UsageError as e:
        raise ArchiveError(f"{what}: invalid manifest: sysctls: {e.message}") from None


def _tmpfs(cfg: dict[str, Any], what: str, volume_targets: list[str]) -> list[str]:
    """--tmpfs specs, each one as `create` would take it."""
    value = cfg.get("tmpfs", [])
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), what,
            "tmpfs is not a list of strings")
    try:
        check_tmpfs(value, volume_targets)
    except UsageError as e:
        _expect(False, what, f"tmpfs: {e.message}")
    return list(value)


def _bool(d: dict[str, Any], key: str, what: str) -> bool:
    value = d.get(key, False)
    _expect(isinstance(value, bool), what, f"{key} is not true or false")
    return bool(value)


def _strings(d: dict[str, Any], key: str, what: str, limit: int = 4096) -> list[str]:
    value = d.get(key, [])
    _expect(isinstance(value, list) and len(value) <= limit
            and all(isinstance(v, str) and len(v) <= 65536 for v in value), what,
            f"{key} is not a list of strings")
    _expect(not any("\0" in v for v in value), what, f"{key} holds a NUL byte")
    return list(value)


def _process(d: Any, what: str) -> ProcessSpec:
    _expect(isinstance(d, dict), what, "config.process is not an object")
    argv = _strings(d, "argv", what)
    _expect(bool(argv), what, "config.process.argv is empty")
    timeout = d.get("timeout_s", 0.0)
    _expect(isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
            and 0 <= timeout <= 10**9, what, "config.process.timeout_s is not a number")
    cwd = _str(d, "cwd", what, "")
    _expect(not cwd or cwd.startswith("/"), what, "config.process.cwd is not an absolute path")
    return ProcessSpec(argv=argv, env=_strings(d, "env", what), cwd=cwd,
                       user=_str(d, "user", what, ""), tty=_bool(d, "tty", what),
                       stdin=_bool(d, "stdin", what), rows=_int(d, "rows", what, 0, 65535, 0),
                       cols=_int(d, "cols", what, 0, 65535, 0), timeout_s=float(timeout),
                       entrypoint_len=_int(d, "entrypoint_len", what, 0, len(argv), 0))


def _network(d: Any, what: str) -> tuple[NetworkConfig, int]:
    if d is None:
        return NetworkConfig(), 0
    _expect(isinstance(d, dict), what, "config.network is not an object")
    mode = _str(d, "mode", what, "nat")
    _expect(mode in NETWORK_MODES, what, f"unknown network mode {mode!r}")
    dns = _strings(d, "dns", what, 16)
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ArchiveError(f"{what}: invalid manifest: DNS server {server!r} is not an IP") from None
    resolver: list[list[str]] = []
    for key, check in (("dns_search", dns_search_domain), ("dns_options", dns_option)):
        resolver.append(_strings(d, key, what, MAX_RESOLVER_ITEMS))
        for item in resolver[-1]:
            try:
                _expect(check(item) in (item, None), what, f"{key} {item!r} is malformed")
            except UsageError:
                raise ArchiveError(f"{what}: invalid manifest: {key} {item!r}") from None
    hosts = _strings(d, "extra_hosts", what, 256)
    for item in hosts:  # (as --add-host keeps them: name:ip, what /etc/hosts gets)
        try:
            _expect(parse_add_host(item) == item, what, f"extra host {item!r} is malformed")
        except UsageError:
            raise ArchiveError(f"{what}: invalid manifest: extra host {item!r}") from None
    ports_raw = d.get("ports", [])
    _expect(isinstance(ports_raw, list) and len(ports_raw) <= 256, what, "ports is not a list")
    ports: list[PortMapping] = []
    rebound = 0
    for p in ports_raw:
        _expect(isinstance(p, dict), what, "a port mapping is not an object")
        proto = _str(p, "proto", what, "tcp")
        _expect(proto in ("tcp", "udp"), what, f"unknown protocol {proto!r}")
        host_ip = _str(p, "host_ip", what, "127.0.0.1")
        try:
            loopback = ipaddress.ip_address(host_ip).is_loopback
        except ValueError:
            raise ArchiveError(f"{what}: invalid manifest: host IP {host_ip!r}") from None
        if not loopback or ":" in host_ip:  # (IPv6: QEMU's NAT publishes on IPv4 only)
            host_ip, rebound = "127.0.0.1", rebound + 1
        host_port = _int(p, "host_port", what, 0, 65535, 0)
        host_port_end = _int(p, "host_port_end", what, 0, 65535, 0)
        _expect(host_port_end == 0 or 0 < host_port < host_port_end, what,
                f"host port range {host_port}-{host_port_end}")
        ports.append(PortMapping(box_port=_int(p, "box_port", what, 1, 65535), proto=proto,
                                 host_ip=host_ip, host_port=host_port,
                                 host_port_end=host_port_end))
    return NetworkConfig(mode=mode, dns=dns, dns_search=resolver[0], dns_options=resolver[1],
                         extra_hosts=hosts, ports=ports), rebound


def _labels(cfg: dict[str, Any], what: str) -> dict[str, str]:
    labels = cfg.get("labels") or {}
    _expect(isinstance(labels, dict) and all(isinstance(k, str) and k and isinstance(v, str)
                                             for k, v in labels.items()), what,
            "labels is not an object of strings")
    _expect(sum(len(k) + len(v) for k, v in labels.items()) <= MAX_LABELS_BYTES, what,
            "labels are too large")
    return dict(labels)


def _capabilities(cfg: dict[str, Any], key: str, what: str) -> list[str]:
    names = cfg.get(key) or []
    _expect(isinstance(names, list) and all(isinstance(n, str) for n in names)
            and len(names) <= MAX_NAMES, what, f"{key} is not a list of capability names")
    try:
        return normalize(names, key)
    except UsageError as e:
        raise ArchiveError(f"{what}: invalid manifest: {e.message}") from None


def _restart(cfg: dict[str, Any], what: str) -> str:
    try:
        return parse_restart(_str(cfg, "restart", what, "no"))
    except UsageError as e:
        raise ArchiveError(f"{what}: {e.message}") from None


def _stop_timeout(cfg: dict[str, Any], what: str) -> float | None:
    value = cfg.get("stop_timeout")
    if value is None:
        return None
    _expect(isinstance(value, int | float) and not isinstance(value, bool)
            and 0 <= value <= 10**9, what, "stop_timeout is not a number of seconds")
    return float(value)


def _stop_signal(cfg: dict[str, Any], what: str) -> str:
    value = _str(cfg, "stop_signal", what, "")
    if value:
        try:
            parse_signal(value)
        except UsageError:
            raise ArchiveError(f"{what}: invalid manifest: stop signal {value!r}") from None
    return value


def parse_manifest(data: bytes, what: str, max_disk: int) -> Manifest:
    """The manifest, schema-checked; ArchiveError on anything unexpected."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # (deep nesting)
        raise ArchiveError(f"{what}: manifest.json is not valid JSON: {e}") from None
    _expect(isinstance(doc, dict), what, "not a JSON object")
    if doc.get("format") != FORMAT:
        raise ArchiveError(f"{what} is not a boxlite box archive (format {doc.get('format')!r})")
    version = doc.get("version")
    if version != VERSION or not isinstance(version, int) or isinstance(version, bool):
        raise ArchiveError(f"{what}: unknown archive format version {version!r} (this boxlite "
                           f"reads version {VERSION})", hint="import it with a newer boxlite")
    image = doc.get("image")
    _expect(isinstance(image, dict), what, "image is not an object")
    image_id = _str(image, "id", what)
    _expect(bool(_IMAGE_ID.match(image_id)), what, "image.id is malformed")
    reference = _str(image, "reference", what)
    _expect(bool(_IMAGE_REFERENCE.match(reference)), what, "image.reference is malformed")
    cfg = doc.get("config")
    _expect(isinstance(cfg, dict), what, "config is not an object")
    network, rebound = _network(cfg.get("network"), what)
    accel = _str(cfg, "accel", what, "auto")
    vmm = _str(cfg, "vmm", what, "auto")
    _expect(accel in ACCELS, what, f"unknown accelerator {accel!r}")
    _expect(vmm in VMMS, what, f"unknown VMM {vmm!r}")
    config = BoxConfig(
        image=reference, image_id=image_id, rootfs_base="",
        process=_process(cfg.get("process"), what), cpus=_int(cfg, "cpus", what, 1, 256),
        memory_mib=_int(cfg, "memory_mib", what, MIN_MEMORY_MIB, 1 << 22), accel=accel,
        vmm=vmm, auto_remove=_bool(cfg, "auto_remove", what),
        detach=_bool(cfg, "detach", what), network=network,
        stop_signal=_stop_signal(cfg, what),
        pids_limit=_int(cfg, "pids_limit", what, 0, 1 << 22, DEFAULT_PIDS_LIMIT),
        disk_size=_int(cfg, "disk_size", what, 0, MAX_VIRTUAL, 0),
        stop_timeout=_stop_timeout(cfg, what), labels=_labels(cfg, what),
        cap_add=_capabilities(cfg, "cap_add", what), cap_drop=_capabilities(cfg, "cap_drop", what))
    config.cpu_limit = _cpu_limit(cfg, what, config.cpus)
    config.read_only = _bool(cfg, "read_only", what)
    config.privileged = _bool(cfg, "privileged", what)
    config.restart = _restart(cfg, what)
    config.tmpfs = _tmpfs(cfg, what, [m.target for m in config.mounts])
    config.ulimits = _checked_list(cfg, "ulimits", what, normalize_ulimits)
    config.no_new_privileges = _bool(cfg, "no_new_privileges", what)
    config.group_add = _checked_list(cfg, "group_add", what, check_group_add)
    config.exposed = _checked_list(cfg, "exposed", what, parse_expose)
    config.log_driver, config.log_options = _log(cfg, what)
    config.shm_size = _int(cfg, "shm_size", what, 0, 1 << 40, 0)
    config.sysctls = _sysctls(cfg, what)
    config.healthcheck = _healthcheck(cfg, what)
    disks_raw = doc.get("disks")
    _expect(isinstance(disks_raw, list) and len(disks_raw) == len(DISK_NAMES), what,
            f"disks must list exactly {len(DISK_NAMES)} disk(s)")
    disks: list[DiskEntry] = []
    for d in disks_raw:
        _expect(isinstance(d, dict), what, "a disk entry is not an object")
        name = _str(d, "name", what)
        _expect(name in DISK_NAMES and all(x.name != name for x in disks), what,
                f"unexpected disk {name!r}")
        _expect(d.get("format") == "qcow2", what, f"disk {name} is not qcow2")
        size = _int(d, "size", what, 0, 1 << 62)
        if size > max_disk:
            raise ArchiveError(f"{what}: disk {name} is {size} bytes, more than the {max_disk} "
                               "bytes allowed", hint="raise BOXLITE_IMPORT_MAX_DISK if you trust it")
        digest = _str(d, "sha256", what)
        _expect(bool(_SHA256.match(digest)), what, f"disk {name} has a malformed sha256")
        disks.append(DiskEntry(name, size, digest,
                               _int(d, "virtual_size", what, 1, MAX_VIRTUAL)))
    # The box's disk size is its disk's, whatever the manifest says (the header is
    # checked against virtual_size before anything is written)
    config.disk_size = disks[0].virtual_size
    name = doc.get("name", "")
    return Manifest(name=name if isinstance(name, str) else "", image=config.image,
                    image_id=image_id, config=config, disks=disks, rebound_ports=rebound)


def _check_room(dest: Path, entry: DiskEntry, what: str) -> None:
    """Refuse a disk this file system has no room for, before writing any of it."""
    st = os.statvfs(dest.parent)
    free = st.f_bavail * st.f_frsize
    if entry.size + IMPORT_HEADROOM > free:
        raise ArchiveError(f"{what}: disk {entry.name} is {entry.size} bytes, and only {free} "
                           f"bytes are free in {dest.parent}", hint="free some disk space")


def _copy_member(src: IO[bytes], dest: Path, entry: DiskEntry, what: str) -> None:
    """The disk, checked against its size and digest; written sparse (a run of zeros,
    however long, an archive's cheapest member, takes no room)."""
    _check_room(dest, entry, what)
    h = hashlib.sha256()
    written = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        while written < entry.size:
            chunk = src.read(min(CHUNK, entry.size - written))
            if not chunk:
                break
            h.update(chunk)
            write_sparse(fd, chunk)
            written += len(chunk)
        os.ftruncate(fd, written)
        os.fsync(fd)
    finally:
        os.close(fd)
    if written != entry.size:
        raise ArchiveError(f"{what} is truncated: {entry.name} has {written} of {entry.size} bytes")
    if h.hexdigest() != entry.sha256:
        raise ArchiveError(f"{what}: checksum mismatch for {entry.name} (sha256 {h.hexdigest()}, "
                           f"the manifest says {entry.sha256})")


NOT_A_BOX_ARCHIVE = ("an image archive (docker save, an OCI layout) loads with: boxlite load "
                     "-i FILE; a root file system tarball (docker import's) is no box")


def read_archive(src: IO[bytes], what: str, dest: Path, max_disk: int) -> Manifest:
    """Verify the archive in one pass, writing its disks (named by their base name) into
    `dest`; the verified manifest."""
    bounded = _Bounded(zstandard.ZstdDecompressor().stream_reader(src, closefd=False),
                       MAX_MANIFEST + HEADER_SLACK, what)
    try:
        with tarfile.open(fileobj=io.BufferedReader(bounded, CHUNK), mode="r|") as tar:
            return _read_members(tar, bounded, what, dest, max_disk)
    except tarfile.TarError as e:
        # (tarfile's "empty file": the tar stream ended before its first member)
        why = "it ends before its first member" if str(e) == "empty file" else str(e)
        raise ArchiveError(f"{what} is truncated or not a boxlite archive ({why})") from None
    except zstandard.ZstdError as e:
        raise ArchiveError(f"{what} is not a box archive of `boxlite export` (not zstd: {e})",
                           hint=NOT_A_BOX_ARCHIVE) from None


def _read_members(tar: tarfile.TarFile, bounded: _Bounded, what: str, dest: Path,
                  max_disk: int) -> Manifest:
    manifest: Manifest | None = None
    seen: set[str] = set()
    for member in tar:
        name = _member_name(member.name, what)
        if name in seen:
            raise ArchiveError(f"{what}: member {name!r} appears twice")
        seen.add(name)
        if manifest is None and (name != MANIFEST or not member.isreg()):
            raise ArchiveError(f"{what} is not a box archive of `boxlite export` (its first "
                               f"member is {member.name[:200]!r}, not {MANIFEST})",
                               hint=NOT_A_BOX_ARCHIVE)
        if not member.isreg():
            raise ArchiveError(f"{what}: member {name!r} is not a regular file (links, "
                               "directories and devices are refused)")
        f = tar.extractfile(member)
        assert f is not None
        if manifest is None:
            if member.size > MAX_MANIFEST:
                raise ArchiveError(f"{what}: {MANIFEST} is larger than {MAX_MANIFEST} bytes")
            data = f.read(MAX_MANIFEST + 1)
            if len(data) != member.size:
                raise ArchiveError(f"{what} is truncated in {MANIFEST}")
            manifest = parse_manifest(data, what, max_disk)
            bounded.budget = bounded.count + sum(d.size for d in manifest.disks) \
                + HEADER_SLACK * (len(manifest.disks) + 1)
            continue
        entry = next((d for d in manifest.disks if d.name == name), None)
        if entry is None:
            raise ArchiveError(f"{what}: unexpected member {name!r} (not in the manifest)")
        if member.size > max_disk:
            raise ArchiveError(f"{what}: {name} is {member.size} bytes, more than the {max_disk} "
                               "bytes allowed")
        if member.size != entry.size:
            raise ArchiveError(f"{what}: {name} is {member.size} bytes, the manifest says {entry.size}")
        _copy_member(f, dest / Path(name).name, entry, what)
    if manifest is None:
        raise ArchiveError(f"{what} is empty (no {MANIFEST})")
    missing = [d.name for d in manifest.disks if d.name not in seen]
    if missing:
        raise ArchiveError(f"{what} is truncated or incomplete: {', '.join(missing)} is missing")
    return manifest


def check_standalone_qcow2(path: Path, entry: DiskEntry, what: str) -> None:
    """The disk is a qcow2 that reads no other file (no backing file, no external data
    file) and is consistent: checked on the header before qemu-img ever opens it."""
    with open(path, "rb") as f:
        header = f.read(104)
    if len(header) < 72 or header[:4] != QCOW2_MAGIC:
        raise ArchiveError(f"{what}: {entry.name} is not a qcow2 image")
    version, backing_offset, backing_size = struct.unpack(">IQI", header[4:20])
    if version not in (2, 3):
        raise ArchiveError(f"{what}: {entry.name} is qcow2 version {version}, not 2 or 3")
    if backing_offset or backing_size:
        raise ArchiveError(f"{what}: {entry.name} has a backing file: an imported disk must be "
                           "standalone (it could read any file of this host)")
    virtual = int(struct.unpack(">Q", header[24:32])[0])
    if virtual != entry.virtual_size:
        raise ArchiveError(f"{what}: {entry.name} has virtual size {virtual}, the manifest "
                           f"says {entry.virtual_size}")
    if version == 3:
        if len(header) < 104:
            raise ArchiveError(f"{what}: {entry.name} has a truncated qcow2 header")
        incompatible = int(struct.unpack(">Q", header[72:80])[0])
        if incompatible & QCOW2_EXTERNAL_DATA:
            raise ArchiveError(f"{what}: {entry.name} keeps its data in an external file: an "
                               "imported disk must be standalone")
        if incompatible & ~QCOW2_KNOWN_INCOMPATIBLE:
            raise ArchiveError(f"{what}: {entry.name} uses unknown qcow2 features ({incompatible:#x})")
    info = json.loads(run_tool(["qemu-img", "info", "-f", "qcow2", "--output", "json", str(path)],
                               f"{what}: reading {entry.name}"))
    data_file = (info.get("format-specific") or {}).get("data", {}).get("data-file")
    if info.get("backing-filename") or info.get("full-backing-filename") or data_file:
        raise ArchiveError(f"{what}: {entry.name} refers to another file: refused")
    try:
        run_tool(["qemu-img", "check", "-q", "-f", "qcow2", str(path)], "checking the disk")
    except DiskError as e:
        raise ArchiveError(f"{what}: {entry.name} is a corrupt qcow2 ({e.message})") from None


def import_box(rt: Runtime, src: IO[bytes], what: str, name: str | None = None,
               max_disk: int | None = None, warn: Warn = _no_warn) -> BoxState:
    """Make a new box (status created) from an archive; nothing is left on failure."""
    clean_stale(rt.paths)
    if name is not None:
        validate_name(name)
        check_name_free(rt, name)
    limit = max_disk_bytes() if max_disk is None else max_disk
    try:
        with stage(rt.paths, "import") as st:
            box_id = new_box_id()
            box_dir = st.dir / box_id
            (box_dir / "disks").mkdir(parents=True, mode=0o700)
            box_dir.chmod(0o700)
            with rt.activity(f"Verifying {what}"):
                manifest = read_archive(src, what, box_dir / "disks", limit)
                disk = box_dir / "disks" / "rootfs.qcow2"
                check_standalone_qcow2(disk, manifest.disks[0], what)
            if manifest.rebound_ports:
                warn(f"{manifest.rebound_ports} published port(s) of the archive now bind "
                     "127.0.0.1 only")
            config = manifest.config
            config.hostname = box_id[:12]
            state = BoxState(id=box_id, name=name or random_name(), config=config,
                             status=Status.CREATING)
            stage_state(box_dir, state)
            commit_box(rt, box_dir, state)
            return state
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskError(f"No space left on device under {rt.paths.data} while importing "
                            f"{what}", hint="free some disk space and try again") from e
        raise
