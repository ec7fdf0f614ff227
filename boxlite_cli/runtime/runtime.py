"""The Runtime: creating, starting, stopping and removing boxes in one boxlite home."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from boxlite_cli.disks.ext4id import filesystem_uuid
from boxlite_cli.disks.qcow2 import create_root_disk, file_identity
from boxlite_cli.disks.tools import disk_locked
from boxlite_cli.errors import (
    KILLED_WITH_THE_BOX,
    VM_SIGNALLED,
    AlreadyRunning,
    BoxliteError,
    Conflict,
    DiskError,
    ImageError,
    Interrupted,
    NoSuchBox,
    NotFound,
    PayloadError,
    StateCorrupt,
    UsageError,
    VmError,
)
from boxlite_cli.oci.pull import NoProgress, PullProgress, PullResult
from boxlite_cli.oci.reference import Reference, parse_reference
from boxlite_cli.oci.store import Image, ImageStore
from boxlite_cli.payload import (
    DEFAULT_IMAGE,
    Payload,
    PayloadMissing,
    build_hint,
    find_payload,
)
from boxlite_cli.runtime import pausing
from boxlite_cli.runtime.diskbase import check_disk_base
from boxlite_cli.runtime.envswitch import env_switch
from boxlite_cli.runtime.images import Images, check_pull_policy, is_whole_id, refuse_id_name
from boxlite_cli.runtime.logopts import log_limits
from boxlite_cli.runtime.names import random_name
from boxlite_cli.runtime.network import (
    bind_host_ports,
    guest_network,
    image_exposed,
    port_forwards,
    publish_exposed,
    vm_network,
    with_exposed,
)
from boxlite_cli.runtime.pausing import continue_if_paused, refuse_paused
from boxlite_cli.runtime.signals import DEFAULT_STOP_SIGNAL, parse_signal, stop_signal
from boxlite_cli.runtime.spares import Spares, spare_idle_s, spares_enabled
from boxlite_cli.runtime.spec import (
    ProcessOptions,
    box_labels,
    check_box_size,
    check_disk_size,
    check_hostname,
    image_stop_signal,
    parse_size,
    pids_limit_of,
    process_spec,
)
from boxlite_cli.runtime.templates import Templates, template_key
from boxlite_cli.runtime.tmpfs import box_tmpfs, check_tmpfs
from boxlite_cli.runtime.volumes import (
    VolumeRequest,
    check_host_sources,
    discard_volumes,
    make_missing_sources,
    parse_volume_specs,
    resolve_mounts,
    vm_shares,
)
from boxlite_cli.shim.child import OtherProcess, Process
from boxlite_cli.shim.launcher import launch_shim
from boxlite_cli.shim.logframes import (
    ALL_TIME,
    LOG_MAX_BYTES,
    MIN_LOG_MAX_BYTES,
    LogRecord,
    TimeWindow,
    read_log,
)
from boxlite_cli.shim.vmspec import ROOTFS_LAYER, Launch
from boxlite_cli.state.boxes import BoxStore, new_box_id, validate_name
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.diskuse import Pruned, allocated_bytes
from boxlite_cli.state.health import HealthConfig, box_health, image_health
from boxlite_cli.state.network import NetworkConfig
from boxlite_cli.state.paths import Paths, home_paths
from boxlite_cli.state.pidfile import ProcessRecord, read_pidfile, sample_process
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status
from boxlite_cli.state.restartpolicy import NO as NO_RESTART
from boxlite_cli.state.restartpolicy import parse_restart
from boxlite_cli.state.settings import CONFIG_FILE, vmm_setting
from boxlite_cli.state.volumes import VOLUME, Mount, VolumeStore, remove_unused
from boxlite_cli.vmm.accel import kvm_verdict, requested_accel
from boxlite_cli.vmm.base import VmmUnsupported, VmSpec
from boxlite_cli.vmm.drivers import check_box_config, choose_vmm, get_driver, requested_vmm

if TYPE_CHECKING:
    from boxlite_cli.agent.client import AgentClient, BoxUsage, ProcessInfo, Started
    from boxlite_cli.runtime.update import BoxUpdate, Updated
    from boxlite_cli.shim.spareclaim import ClaimedSpare

MAIN = "main"
LIVE = (Status.STARTING, Status.RUNNING, Status.STOPPING)
DEFAULT_STOP_TIMEOUT_S = 10.0
KILL_WAIT_S = 30.0  # how long `kill` (SIGKILL) waits for the box to stop
STATS_AGENT_WAIT_S = 5.0  # for a box's own memory and pids (then its VM's memory, no pids)
SHIM_EXIT_WAIT_S = 60.0
INTERRUPTED_RECORD_WAIT_S = 10.0  # for the end of a start given up on to be recorded
REMOVE_RACE_S = 30.0  # how long `rm -f` stops a box that keeps being started again
Warn = Callable[[str], None]


def boot_timeout_s() -> float:
    return float(os.environ.get("BOXLITE_BOOT_TIMEOUT", "180"))


def log_max_bytes() -> int:
    """Where a box's container.log rotates: $BOXLITE_LOG_MAX_SIZE (bytes, or docker's
    `10m`, `1g`...), else 50 MiB; raises UsageError for a value that is neither."""
    text = os.environ.get("BOXLITE_LOG_MAX_SIZE", "").strip()
    if not text:
        return LOG_MAX_BYTES
    return max(parse_size(text, "BOXLITE_LOG_MAX_SIZE"), MIN_LOG_MAX_BYTES)


def guest_cmdline() -> tuple[str, ...]:
    """Extra guest kernel parameters ($BOXLITE_GUEST_CMDLINE; debugging and tests, e.g.
    `boxlite.vsock_loopback=1`, which loads the guest's vsock loopback transport)."""
    return tuple(os.environ.get("BOXLITE_GUEST_CMDLINE", "").split())


@dataclass
class CreateOptions:
    image: str
    process: ProcessOptions
    name: str | None = None
    cpus: int = 1
    memory_mib: int = 512
    accel: str | None = None
    vmm: str | None = None  # --vmm; None: $BOXLITE_VMM, config.toml's vmm, or auto
    auto_remove: bool = False
    detach: bool = False
    network: NetworkConfig = field(default_factory=NetworkConfig)
    pull: str = "missing"
    volumes: list[str | VolumeRequest] = field(default_factory=list)  # -v specs, --mounts
    hostname: str | None = None  # --hostname; None: the box id's first 12 characters
    stop_signal: str | None = None  # --stop-signal; None: the image's, or SIGTERM
    publish_all: bool = False  # -P: the image's ExposedPorts too (and --expose's)
    exposed: list[str] = field(default_factory=list)  # --expose, as "80/tcp" keys
    log_driver: str = "json-file"  # --log-driver, checked (runtime/logopts.py)
    log_options: dict[str, str] = field(default_factory=dict)  # --log-opt, checked
    pids_limit: int | None = None  # --pids-limit (-1 or 0: none); None: the default
    stop_timeout: float | None = None  # --stop-timeout; None: 10 s
    labels: dict[str, str] = field(default_factory=dict)  # --label
    disk_size: int = 0  # --disk-size in bytes (0: the image's filesystem as built)
    cap_add: list[str] = field(default_factory=list)  # --cap-add, normalized
    cap_drop: list[str] = field(default_factory=list)  # --cap-drop, normalized
    privileged: bool = False  # --privileged: every capability, whatever cap_add and cap_drop say
    cpu_limit: float = 0.0  # a fractional --cpus: CPU time of the box's processes (0: none)
    read_only: bool = False  # --read-only
    tmpfs: list[str] = field(default_factory=list)  # --tmpfs specs
    restart: str = "no"  # --restart, as given (state/restartpolicy.py)
    ulimits: list[str] = field(default_factory=list)  # --ulimit, normalized (state/ulimits.py)
    no_new_privileges: bool = False  # --security-opt no-new-privileges
    group_add: list[str] = field(default_factory=list)  # --group-add, checked
    shm_size: int = 0  # --shm-size in bytes (0: /dev/shm's 64 MiB)
    sysctls: dict[str, str] = field(default_factory=dict)  # --sysctl, checked
    # --health-* and --no-healthcheck (state/health.py); None: the image's, if any
    healthcheck: HealthConfig | None = None


class SpareFailed(VmError):
    """A spare VM (runtime/spares.py) could not become the box: start it without one."""


WARM_ENV = "BOXLITE_WARM"  # 0: every start is cold (no template, no spare)


class WarmStartFailed(VmError):
    """A start from a warm-start template failed (the template may be bad)."""

    def __init__(self, message: str, template: Path, primed: bool = False) -> None:
        super().__init__(message)
        self.template = template
        self.primed = primed  # the box's disk is that template's copy now


@dataclass(frozen=True)
class BoxStats:
    id: str
    name: str
    cpu_percent: float
    memory_bytes: int  # its processes' (or, when its guest did not say, its VM's)
    memory_limit_bytes: int
    block_read_bytes: int = 0  # what its VM read from and wrote to the host's storage
    block_write_bytes: int = 0
    pids: int | None = None  # its processes and threads (None: not known)
    vm_memory_bytes: int = 0  # what its VM holds on the host (guest RAM touched, QEMU's)
    net_rx_bytes: int = 0  # what its network interfaces received and sent (docker's NET
    net_tx_bytes: int = 0  # I/O; 0 when its guest did not say)


@dataclass(frozen=True)
class StartResult:
    """How a start went: the main process runs, or it could not be executed."""

    exec_id: str
    exit_code: int | None = None
    error: str | None = None
    # A start with `output` fds (or `exit_report`): the pipe on which the shim reports
    # how the main process ended (see runtime/foreground.py), and what was already read
    # of it.
    exit_pipe: int | None = None
    pending: bytes = b""


def _no_warn(_: str) -> None:
    pass


Activity = Callable[[str], contextlib.AbstractContextManager[None]]
PullDisplay = Callable[[str], contextlib.AbstractContextManager[PullProgress]]


def _quiet_activity(_: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _quiet_pull(_: str) -> contextlib.AbstractContextManager[PullProgress]:
    return contextlib.nullcontext(NoProgress())


class Runtime:
    """All operations on the boxes of one home. Thread-compatible, process-safe."""

    def __init__(self, paths: Paths | None = None, warn: Warn = _no_warn,
                 activity: Activity = _quiet_activity, pull_display: PullDisplay = _quiet_pull,
                 notice: Warn = _no_warn) -> None:
        """`warn` gets one-line warnings; `activity(text)` wraps long work (a spinner);
        `pull_display(reference)` shows a pull's progress; `notice` gets the lines docker
        says of what a command does besides its job (the pull of a run's image)."""
        self.paths = paths or home_paths()
        self.paths.ensure()
        self.boxes = BoxStore(self.paths)
        self.images = ImageStore(self.paths.images)
        self.image_ops = Images(self.paths, self.images, self.boxes_by_image)
        self.templates = Templates(self.paths.cache / "templates")
        self.spares = Spares(self.paths.data / "spares")
        self.volumes = VolumeStore(self.paths.data / "volumes")
        self.warn = warn
        self.activity = activity
        self.pull_display = pull_display
        self.notice = notice
        self.starting: set[str] = set()  # boxes this Runtime is starting (Runtime.start)
        # Set by the restarter (runtime/autorestart.py): its start is the restart policy's,
        # of the run that finished at this time (else it is not made)
        self.policy_restart_of: float | None = None

    # payload and images ---------------------------------------------------------------

    def payload(self) -> Payload:
        try:
            return find_payload()
        except PayloadMissing as e:
            raise PayloadError(f"the guest payload is not built (looked in {e})",
                               hint=build_hint()) from None

    def image(self, ref: str, pull: str = "missing") -> Image:
        """The image for `ref`: the built-in one is loaded on first use; others are pulled
        as `pull` says (missing, always or never)."""
        check_pull_policy(pull)
        if is_whole_id(ref):  # an image id: local only
            found = self.image_ops.find(ref)
            if found is None:
                raise NotFound(f"no such image: {ref}")
            return found
        reference = parse_reference(ref)
        if reference == parse_reference(DEFAULT_IMAGE):
            return self.built_in_image()
        if pull != "always":
            found = self.image_ops.find(ref)  # a reference, else an id prefix
            if found is not None:
                return found
            if pull == "never":
                raise ImageError(f"unable to find image {ref!r} locally (--pull never)",
                                 hint=f"pull it with: boxlite pull {ref}")
            try:
                return self._pulled(reference, missing=True)
            except BoxliteError as e:  # (a tag left out, or mistyped: say what there is)
                others = self.local_tags(reference)
                if others:  # (before a hint of how to log in, or to reach the registry)
                    has = (f"{reference.short} is not in the local store, which has "
                           f"{', '.join(others[:3])}")
                    e.hint = has if isinstance(e, NotFound) or not e.hint else f"{has}; {e.hint}"
                raise
        return self._pulled(reference)

    def _pulled(self, reference: Reference, missing: bool = False) -> Image:
        """A pull for a box (run, create), said as docker says it once it is done (a
        pull that fails says its one line of error only; a terminal shows its progress
        meanwhile, after this line as docker's)."""
        unable = f"Unable to find image '{reference.short}' locally"
        with self.pull_display(reference.short) as progress:
            shown = not isinstance(progress, NoProgress)
            if missing and shown:
                self.notice(unable)
            result = self.image_ops.pull(reference, progress)
        if missing and not shown:
            self.notice(unable)
        self.notice(f"Digest: {result.repo_digest}")
        status = "Downloaded newer image for" if result.downloaded else "Image is up to date for"
        self.notice(f"Status: {status} {result.image.reference.short}")
        return result.image

    def local_tags(self, reference: Reference) -> list[str]:
        """The tags the local store has of `reference`'s repository (short forms)."""
        with contextlib.suppress(ImageError, OSError):
            return sorted(parse_reference(key).short for key in self.images.tags()
                          if "@" not in key and parse_reference(key).name == reference.name)
        return []

    def built_in_image(self) -> Image:
        """The built-in image (DEFAULT_IMAGE), loaded from the payload on first use."""
        reference = parse_reference(DEFAULT_IMAGE)
        try:
            return self.images.lookup(reference)
        except NotFound:
            self.images.load_oci_layout(self.payload().default_image)
            return self.images.lookup(reference)

    def tag(self, source: str, target: str) -> Reference:
        """docker's tag: TARGET names SOURCE's image too (a reference, an id or a prefix
        of one; the built-in image is loaded for it). TARGET without a tag is :latest."""
        reference = parse_reference(target)
        if reference.digest is not None:
            raise UsageError(f"invalid tag {target!r}: a tag cannot name a digest")
        refuse_id_name(reference, target)
        if reference == parse_reference(DEFAULT_IMAGE):
            raise UsageError(f"{target!r} is the built-in image's name: give another")
        try:
            built_in = parse_reference(source) == parse_reference(DEFAULT_IMAGE)
        except UsageError:
            built_in = False
        image = self.built_in_image() if built_in else self.image_ops.find(source)
        if image is None:
            raise NotFound(f"no such image: {source}", hint="see: boxlite images")
        self.images.tag(reference, image.manifest_digest)
        return reference

    def pull(self, ref: str | Reference) -> PullResult:
        reference = parse_reference(ref) if isinstance(ref, str) else ref
        if reference == parse_reference(DEFAULT_IMAGE):  # (built from Debian packages: no
            image = self.built_in_image()                 # registry has it)
            return PullResult(image, image.manifest_digest, downloaded=False)
        with self.pull_display(reference.short) as progress:
            return self.image_ops.pull(reference, progress)

    def boxes_by_image(self) -> dict[str, list[str]]:
        """Image id → names of the boxes made from it (corrupt boxes are skipped)."""
        users: dict[str, list[str]] = {}
        for state in self.boxes.all():
            if not isinstance(state, StateCorrupt):
                users.setdefault(state.config.image_id, []).append(state.name)
        return users

    # lookup ---------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        return self.boxes.resolve(ref)

    def get(self, ref: str) -> BoxState:
        """The state of a box, as observed (a box whose shim died shows as exited)."""
        return self.observe(self.boxes.read(self.resolve(ref)))

    def observe(self, state: BoxState) -> BoxState:
        """Correct a state whose owning process is gone, without writing it."""
        files = self.files(state.id)
        if state.status in LIVE:
            shim = read_pidfile(files.shim_pid)
            if shim is None or not shim.alive():
                if state.status == Status.STARTING and shim is None and self._creator_alive(state):
                    return state
                state.status = Status.EXITED
                state.error = state.error or "the box's shim process died unexpectedly"
                if state.exit_code is None:
                    state.exit_code = 137
                if state.finished_at is None or state.finished_at < (state.started_at or 0):
                    # (about when: the last its run wrote, never before it started; a
                    # FinishedAt before its start is the run before's)
                    times = [state.started_at] if state.started_at else []
                    for written in (files.state, files.shim_log, files.container_log):
                        with contextlib.suppress(OSError):
                            times.append(written.stat().st_mtime)
                    state.finished_at = max(times, default=None)
        elif state.status == Status.CREATING and not self._creator_alive(state):
            state.status = Status.EXITED
            state.error = state.error or "creating the box was interrupted"
            state.exit_code = 125 if state.exit_code is None else state.exit_code
        return state

    def _creator_alive(self, state: BoxState) -> bool:
        record = ProcessRecord.from_json(state.creator)
        return record is not None and record.alive()

    def list_boxes(self, all_boxes: bool = True) -> list[BoxState | StateCorrupt]:
        out: list[BoxState | StateCorrupt] = []
        for item in self.boxes.all():
            if isinstance(item, StateCorrupt):
                out.append(item)
                continue
            state = self.observe(item)
            if self._reaped(state):
                continue
            if all_boxes or state.status in LIVE or state.is_restarting:
                out.append(state)
        return out

    def _reaped(self, state: BoxState) -> bool:
        """A `--rm` box that ended without its shim removing it (the shim was killed, or
        crashed) goes now, as docker's daemon removes one when it comes back. Not one
        that another shell starts or removes meanwhile (that is left to it)."""
        if not state.config.auto_remove or state.status != Status.EXITED:
            return False
        files = self.files(state.id)
        shim = read_pidfile(files.shim_pid)
        if ((shim is not None and shim.alive()) or files.restarting.exists()
                or self._creator_alive(state)):
            # (its shim is removing it; a `restart` starts it again; the CLI that started
            # it is at it still: a failed warm start is retried cold, a foreground `run`
            # removes its box itself)
            return False
        try:
            self.remove(state.id, volumes=True)
        except NoSuchBox:
            return True  # (another shell's listing removed it first)
        except (BoxliteError, OSError):
            return False  # (started from another shell meanwhile)
        return True

    def files(self, box_id: str) -> BoxFiles:
        return BoxFiles(self.boxes.box_dir(box_id))

    # create ---------------------------------------------------------------------------

    def create(self, opts: CreateOptions) -> BoxState:
        """Make a box (disks and state) without starting it; nothing is left on failure."""
        accel = requested_accel(opts.accel)
        vmm = requested_vmm(opts.vmm, vmm_setting(self.paths.config),
                            str(self.paths.config / CONFIG_FILE))
        if opts.name is not None:
            opts.name = opts.name.removeprefix("/")  # (docker's names may start with one)
            validate_name(opts.name)
        check_box_size(opts.cpus, opts.memory_mib)
        log_max_bytes()  # (a bad $BOXLITE_LOG_MAX_SIZE fails here, before anything is made)
        spares_enabled(), spare_idle_s(), env_switch(WARM_ENV)  # (and so do bad settings)
        restart = parse_restart(opts.restart)
        if restart != NO_RESTART and opts.auto_remove:
            raise UsageError(f"--restart {restart} and --rm exclude each other: a box removed "
                             "when it ends cannot be started again")
        volume_requests = parse_volume_specs(opts.volumes)
        check_tmpfs(opts.tmpfs, [v.target for v in volume_requests])
        check_box_config(vmm, opts.network.mode, bool(opts.network.ports), bool(opts.volumes))
        check_host_sources(volume_requests)  # (but -v's missing directories, made below)
        if opts.hostname is not None:
            check_hostname(opts.hostname)
        pids_limit = pids_limit_of(opts.pids_limit)
        image = self.image(opts.image, opts.pull)
        spec = process_spec(opts.process, image.container_config)
        stops_with = stop_signal(opts.stop_signal, image_stop_signal(image.container_config))
        healthcheck = box_health(opts.healthcheck, image_health(image.container_config))
        network = (publish_exposed(opts.network, with_exposed(image.container_config,
                                                              opts.exposed))
                   if opts.publish_all else opts.network)
        exposed = image_exposed(image.container_config, opts.exposed)
        if network.ports != opts.network.ports:  # (-P's: a VMM that cannot publish says so)
            check_box_config(vmm, network.mode, True, bool(opts.volumes))
        box_id = new_box_id()
        name = opts.name or random_name()
        self.boxes.create_dir(box_id)
        reserved = False
        made_volumes: list[str] = []
        try:
            state = BoxState(
                id=box_id, name=name,
                # (the image as it was asked for: docker's ps and Config.Image show that)
                config=BoxConfig(image=opts.image, image_id=image.id,
                                 rootfs_base="", process=spec, cpus=opts.cpus,
                                 memory_mib=opts.memory_mib, accel=accel, vmm=vmm,
                                 auto_remove=opts.auto_remove, detach=opts.detach,
                                 hostname=opts.hostname or box_id[:12], network=network,
                                 stop_signal=stops_with, pids_limit=pids_limit,
                                 disk_size=opts.disk_size, stop_timeout=opts.stop_timeout,
                                 labels=box_labels(image.container_config, opts.labels),
                                 exposed=exposed, log_driver=opts.log_driver,
                                 log_options=dict(opts.log_options),
                                 cap_add=list(opts.cap_add),
                                 cap_drop=list(opts.cap_drop), privileged=opts.privileged,
                                 cpu_limit=opts.cpu_limit,
                                 read_only=opts.read_only, tmpfs=list(opts.tmpfs),
                                 ulimits=list(opts.ulimits),
                                 no_new_privileges=opts.no_new_privileges,
                                 group_add=list(opts.group_add), shm_size=opts.shm_size,
                                 sysctls=dict(opts.sysctls), restart=restart,
                                 healthcheck=healthcheck, publish_all=opts.publish_all),
                creator=ProcessRecord.current().to_json(),
            )
            # The state (creating, with its creator) goes first: a create killed from here
            # on leaves a box that shows as interrupted and that `rm` removes, name and all.
            with self.boxes.lock(box_id):
                self.boxes.write(state)
            self.boxes.reserve_name(name, box_id)
            reserved = True
            make_missing_sources(volume_requests)  # (docker's -v, once all else was good)
            state.config.mounts, made_volumes = resolve_mounts(self.volumes, volume_requests)
            with self.boxes.lock(box_id):
                self.boxes.write(state)
            if self.images.rootfs_path(image).is_file():
                base = self.images.rootfs_path(image)
            else:
                with self.activity(f"Unpacking {image.reference.short} (once per image)"):
                    base = self.images.ensure_rootfs(image)
            check_disk_size(opts.disk_size, base.stat().st_size, image.reference.short)
            create_root_disk(base, self.files(box_id).rootfs_disk, opts.disk_size)
            with self.boxes.lock(box_id):
                state.config.rootfs_base = str(base)
                state.config.rootfs_base_id = filesystem_uuid(base)
                state.fresh_disk = file_identity(self.files(box_id).rootfs_disk)
                state.status = Status.CREATED
                self.boxes.write(state)
            return state
        except BaseException as e:
            if reserved:
                self.boxes.release_name(name, box_id)
            self.boxes.remove_dir(box_id)
            discard_volumes(self.volumes, made_volumes)
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskError(f"No space left on device under {self.paths.data} while "
                                f"creating the box from {image.reference.short}",
                                hint="free some disk space and try again") from e
            raise

    # start ----------------------------------------------------------------------------

    def choose_accel(self, requested: str, payload: Payload) -> str:
        if requested == "tcg":
            return requested
        verdict = kvm_verdict(self.paths.cache / "accel.json", payload.kernel, payload.initrd)
        if requested == "kvm" and not verdict.kvm_ok:  # (QEMU would die at boot: SIGABRT)
            raise VmError(f"KVM was asked for (--accel kvm) but is not usable here: "
                          f"{verdict.reason}", hint="use --accel auto or --accel tcg")
        if verdict.kvm_ok:
            return "kvm"
        if verdict.fresh:  # once per host boot, not on every command: `doctor` tells again
            self.warn(f"KVM is not usable ({verdict.reason}); using TCG software emulation, "
                      "which is much slower (said once per boot; see boxlite doctor)")
        return "tcg"

    def choose_vm(self, state: BoxState, spec: VmSpec, payload: Payload) -> tuple[str, VmSpec]:
        """The VMM that runs `spec` (box config's vmm, `auto` resolved) and the spec it
        runs, checked: a VMM that cannot run the box fails here, before anything starts."""
        kvm_ok = spec.accel == "kvm"
        reason = ""
        if not kvm_ok:
            reason = ("--accel tcg was asked for" if state.config.accel == "tcg" else
                      kvm_verdict(self.paths.cache / "accel.json", payload.kernel,
                                  payload.initrd).reason)
        choice = choose_vmm(state.config.vmm, spec.accel, kvm_ok, spec, kvm_reason=reason)
        spec = dataclasses.replace(spec, accel=choice.accel)
        driver = get_driver(choice.name)
        if driver.binary() is None:  # (not the template's failure, nor one to retry)
            raise VmmUnsupported(f"{driver.executable} is not installed",
                                 hint="run: boxlite doctor")
        driver.check(spec)
        return choice.name, spec

    def start(self, ref: str, foreground: bool = False, cold: bool = False,
              checkpoint: str | None = None, memory: Path | None = None,
              output: tuple[int, int] | None = None, exit_report: bool = False,
              merge_stderr: bool = False) -> StartResult:
        """Boot the box and start its main process; returns once it runs.

        `foreground`: the caller will attach to the main process (its output waits
        for it); otherwise the shim copies the output into the box's log. Boxes start
        warm from a template when one matches (see runtime/templates.py) unless `cold`
        (or BOXLITE_WARM=0); a warm start that fails is retried cold once. With
        `checkpoint`, the box resumes from that memory checkpoint of its own; with
        `memory`, from that saved memory (a box made by `run --from`).

        `output` (foreground only): the caller's (stdout, stderr). The shim writes the
        main process's output there itself and reports its exit on
        StartResult.exit_pipe, so the caller needs no connection to the box at all.
        `exit_report` (foreground, without `output`): that pipe too, for the caller to
        hear why the box stopped when its own connection broke.
        `merge_stderr` (foreground): the main process gets one pipe for stdout and
        stderr (the caller's are one file, `2>&1`), so their order is kept.

        A start interrupted (Ctrl-C, or the caller's Interrupted) stops the box again:
        its caller gave up on it, and nothing would be left to see it run.
        """
        # (bad settings fail before anything starts)
        spares_enabled(), spare_idle_s(), env_switch(WARM_ENV)
        box_id = self.resolve(ref)
        try:
            return self._start_or_retry(ref, foreground, cold, checkpoint, memory, output,
                                        exit_report, merge_stderr)
        except (KeyboardInterrupt, Interrupted) as e:
            if box_id in self.starting:  # (not one that ran before: it was not ours)
                with contextlib.suppress(BoxliteError, OSError):
                    self.kill_now(box_id)
                    self._record_interrupted(box_id, e.signum if isinstance(e, Interrupted)
                                             else signal.SIGINT)
            raise
        finally:
            self.starting.discard(box_id)

    def _record_interrupted(self, box_id: str, signum: int) -> None:
        """A start given up by its caller ended as the caller did (128 + N, ps' Exited
        (130) for a Ctrl-C), not as a SIGKILL of a command that never ran (137)."""
        deadline = time.monotonic() + INTERRUPTED_RECORD_WAIT_S
        while True:  # (a shim that had not taken the box yet records its end after this)
            with self.boxes.lock(box_id):
                state = self.boxes.read(box_id)
                shim = read_pidfile(self.files(box_id).shim_pid)
                if state.status == Status.EXITED and (shim is None or not shim.alive()):
                    state.exit_code = 128 + signum
                    state.error = "its start was interrupted"
                    self.boxes.write(state)
                    return
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def _start_or_retry(self, ref: str, foreground: bool, cold: bool, checkpoint: str | None,
                        memory: Path | None, output: tuple[int, int] | None,
                        exit_report: bool, merge_stderr: bool) -> StartResult:
        """Runtime.start's: a warm start that fails is retried cold, a spare's without one."""
        if checkpoint is not None or memory is not None:
            return self._start(ref, foreground, cold=True, checkpoint=checkpoint, memory=memory,
                               merge_stderr=merge_stderr)
        cold = cold or not env_switch(WARM_ENV)
        try:
            try:
                return self._start(ref, foreground, cold, output=output, exit_report=exit_report,
                                   merge_stderr=merge_stderr)
            except SpareFailed as e:
                self.warn(f"a spare VM could not be used ({e}); starting without one")
                self._renew_disk(self.resolve(ref))
                return self._start(ref, foreground, cold, output=output, spares=False,
                                   exit_report=exit_report, merge_stderr=merge_stderr)
        except WarmStartFailed as e:
            # A box removed meanwhile (rm -f kills its shim): not the template's failure.
            try:
                self.boxes.read(self.resolve(ref))
            except NotFound:
                shown = ref[:12] if len(ref) == 64 else ref  # (run starts its box by id)
                raise NoSuchBox(f"box {shown} was removed while it was starting") from None
            # A fixed host port that another box took between our check and QEMU's bind
            # (which then exits at once) is that port's failure, not the template's.
            with contextlib.suppress(NotFound):
                try:
                    bind_host_ports(p for p in self.get(ref).config.network.ports if p.host_port)
                except Conflict:  # (as when the check before it refuses: not started)
                    self._unstarted(self.resolve(ref), renew_disk=e.primed)
                    raise
            if VM_SIGNALLED in e.message:  # (killed from outside: the template is fine)
                self.warn(f"the warm start failed ({e}); starting cold")
            else:
                self.warn(f"the warm start failed ({e}); starting cold and discarding its "
                          "template")
                shutil.rmtree(e.template, ignore_errors=True)
            if e.primed:
                self._renew_disk(self.resolve(ref))
            return self._start(ref, foreground, cold=True, output=output,
                               exit_report=exit_report, merge_stderr=merge_stderr)

    def _unstarted(self, box_id: str, renew_disk: bool) -> None:
        """A start that failed before its box ran: the box as it was before it (created,
        when it never ran), as a start refused before it began leaves it (docker's)."""
        if renew_disk:
            self._renew_disk(box_id)
        with self.boxes.lock(box_id):
            state = self.boxes.read(box_id)
            if state.started_at is None and state.status == Status.EXITED:
                state.status, state.exit_code, state.error = Status.CREATED, None, None
                state.finished_at = None
                self.boxes.write(state)

    def _renew_disk(self, box_id: str) -> None:
        """A fresh root disk again, for a box that never ran (its primed warm start failed;
        a start whose shim died before it said so is over too)."""
        files = self.files(box_id)
        with self.boxes.lock(box_id):
            state = self.boxes.read(box_id)
            create_root_disk(Path(state.config.rootfs_base), files.rootfs_disk,
                             state.config.disk_size)
            state.fresh_disk = file_identity(files.rootfs_disk)
            if state.status == Status.STARTING:
                state.status = Status.CREATED
            self.boxes.write(state)

    def _take_template_disk(self, template: Path, files: BoxFiles) -> bool:
        """Give a box whose disk is fresh the primed template's disk (see templates.py)."""
        partial = files.rootfs_disk.with_name(files.rootfs_disk.name + ".template")
        try:
            shutil.copyfile(template / ROOTFS_LAYER, partial)
            os.replace(partial, files.rootfs_disk)
        except OSError as e:  # a template removed meanwhile: start cold
            partial.unlink(missing_ok=True)
            self.warn(f"could not use the warm-start template ({e.strerror}); starting cold")
            return False
        return True

    def _start(self, ref: str, foreground: bool, cold: bool,
               checkpoint: str | None = None, memory: Path | None = None,
               output: tuple[int, int] | None = None, spares: bool = True,
               exit_report: bool = False, merge_stderr: bool = False) -> StartResult:
        box_id = self.resolve(ref)
        files = self.files(box_id)
        with self.boxes.lock(box_id):
            state = self.observe(self.boxes.read(box_id))
            if self.policy_restart_of is not None and (
                    state.status != Status.EXITED or files.stop_requested.exists()
                    or state.finished_at != self.policy_restart_of
                    or state.config.restart == NO_RESTART):
                raise Conflict(f"box {state.name} is not restarted: it was started, stopped "
                               "or killed meanwhile, or its policy changed (update)")
            if state.status in (Status.STARTING, Status.RUNNING):
                raise AlreadyRunning(f"box {state.name} is already running")
            if state.status == Status.STOPPING:
                raise Conflict(f"box {state.name} is stopping",
                               hint=f"wait for it (boxlite wait {state.name}), then start it")
            if state.status == Status.CREATING:
                raise Conflict(f"box {state.name} is still being created")
            check_disk_base(state)
            # A box larger than this host (imported from a bigger one) would not boot.
            try:
                check_box_size(state.config.cpus, state.config.memory_mib)
            except UsageError as e:
                raise UsageError(f"box {state.name} cannot start on this host: {e}") from None
            payload = self.payload()
            # Host ports are checked (and omitted ones chosen) at every start, before
            # anything boots: a port in use fails here with one line.
            ports = bind_host_ports(state.config.network.ports)
            accel = self.choose_accel(state.config.accel, payload)
            shares, guest_volumes = vm_shares(files.dir, self.volumes, state.config.mounts)
            driver, vm = self.choose_vm(state, VmSpec(
                kernel=payload.kernel, initrd=payload.initrd,
                agent_root=payload.agent_root, rootfs_disk=files.rootfs_disk,
                console_log=files.console_log, agent_socket=files.vm_socket,
                control_socket=files.control_socket, cpus=state.config.cpus,
                memory_mib=state.config.memory_mib, accel=accel,
                network=vm_network(state.config.network),
                net_socket=str(files.sockets / "net.sock"),
                port_forwards=port_forwards(ports), shares=shares,
                extra_cmdline=guest_cmdline()), payload)
            fresh = bool(state.fresh_disk) and file_identity(files.rootfs_disk) == state.fresh_disk
            base = Path(state.config.rootfs_base) if fresh and state.config.rootfs_base else None
            key = None if cold else template_key(driver, get_driver(driver).binary(), vm,
                                                 state.config.image_id, primed_on=base)
            primed = base is not None
            warm = self.templates.ready(key, primed=primed) if key else None
            # A fresh box, warm: a spare of its template runs already (runtime/spares.py).
            # (Not for a box with volumes: a spare's 9p devices would share the paths of the
            # box that made it.)
            spare_of = (key if warm is not None and primed and spares and spares_enabled()
                        and not vm.shares else None)
            spare = (self.spares.claim(spare_of) if spare_of and not vm.port_forwards
                     and checkpoint is None and memory is None else None)
            if (warm is not None and primed and spare is None
                    and not self._take_template_disk(warm, files)):
                warm = None
                key = None  # not now: that template is going or gone
            if warm is not None:
                vm = dataclasses.replace(vm, restore_from=str(warm))
            elif key:
                self.templates.prune()  # room for the one this start saves
            if checkpoint is not None:
                from boxlite_cli.runtime import snapshots  # only for start --checkpoint

                memory = snapshots.checkpoint_memory(self, box_id, checkpoint)
            if memory is not None:
                from boxlite_cli.runtime.snapshots import memory_payload

                taken_on = memory_payload(memory, payload)  # the agent disk it knows
                vm = dataclasses.replace(vm, restore_from=str(memory), kernel=taken_on.kernel,
                                         initrd=taken_on.initrd, agent_root=taken_on.agent_root)
                get_driver(driver).check(vm)
            log_bytes, log_files = log_limits(state.config.log_driver, state.config.log_options,
                                              log_max_bytes())
            # The shim's copies of the caller's output fds (inherited at these numbers).
            output_fds = tuple(os.dup(fd) for fd in output) if foreground and output else ()
            launch = Launch(
                driver=driver,
                vm=vm,
                boot_timeout_s=boot_timeout_s(),
                foreground=foreground,
                output_fds=output_fds,
                network=guest_network(state.config.network, box_id),
                volumes=guest_volumes,
                save_template=str(self.templates.path(key)) if key and warm is None else "",
                prime_template=primed and bool(key) and warm is None,
                resume=memory is not None,
                log_max_bytes=log_bytes, log_files=log_files,
                tmpfs=tuple(box_tmpfs(state.config.tmpfs, [m.target for m in state.config.mounts],
                                      state.config.shm_size)),
                merge_stderr=foreground and merge_stderr,
            )
            launch.save(files.dir / "vm.json")
            self.starting.add(box_id)
            state.status = Status.STARTING
            state.error = None
            state.last_exit_code = state.exit_code
            state.exit_code = None
            state.restart_count = state.restart_count + 1 if self.policy_restart_of else 0
            state.restarter = None
            if not self.policy_restart_of:  # (by hand: the backoff starts over too)
                state.restart_delay_s = 0.0
            state.paused = False
            state.oom_killed = False
            state.ports = ports
            # Until the shim writes its PID file, this process owns the transition.
            state.creator = ProcessRecord.current().to_json()
            files.shim_pid.unlink(missing_ok=True)
            files.restarting.unlink(missing_ok=True)  # (restart's: see stop())
            files.stop_requested.unlink(missing_ok=True)
            self.boxes.write(state)
        try:
            started = self._spawn_shim(state, files, output_fds, spare,
                                       keep_report=foreground and (bool(output_fds) or exit_report))
        except SpareFailed:
            raise  # (not the template's failure: start() starts the box without a spare)
        except VmError as e:
            if disk_locked(e):  # (nor is a disk another process holds)
                raise VmError(f"box {state.name} cannot start: another process is using its "
                              "disk", hint="wait for the disk operation on it (a snapshot, "
                              "export or clone) to end, then start it again") from e
            if warm is None:
                raise
            raise WarmStartFailed(e.message, warm, primed=primed) from e
        finally:
            for fd in output_fds:
                os.close(fd)
        if spare_of and warm is not None:
            # for the next box of this template, while this one's command runs
            self.spares.replenish_meanwhile(spare_of, warm, launch)
        return started

    def _spawn_shim(self, state: BoxState, files: BoxFiles,
                    output_fds: tuple[int, ...] = (),
                    spare: ClaimedSpare | None = None, keep_report: bool = False) -> StartResult:
        read_fd, write_fd = os.pipe()
        try:
            if spare is not None:
                shim: Process = self._hand_to_spare(spare, files, write_fd, output_fds)
            else:
                # (The VMM starts in the forked child, before the shim's Python start-up.)
                shim = launch_shim(files.dir, files.shim_log, write_fd, output_fds)
        finally:
            os.close(write_fd)
        keep_pipe = False
        try:
            line, pending = self._read_ready(read_fd, boot_timeout_s() + 30, files)
            message = json.loads(line) if line else {}
            keep_pipe = bool(keep_report and message.get("ok") and not message.get("exit_code"))
        finally:
            if not keep_pipe:
                os.close(read_fd)
        if (not line or not message.get("ok")) and (message.get("stopped")
                                                     or files.stop_requested.exists()):
            # (a Conflict, not a VmError: neither the template's failure nor a spare's)
            raise Conflict(f"box {state.name} was stopped while it was starting",
                           hint="a boxlite stop, kill or rm -f of it came meanwhile")
        if not line and spare is not None:
            raise SpareFailed("it exited on the way")
        if not line:
            raise VmError(f"the box's shim exited during start; see {files.shim_log}")
        if not message.get("ok") or message.get("exit_code"):
            # The box is done: let its shim finish cleaning up before we report.
            with contextlib.suppress(subprocess.TimeoutExpired):
                shim.wait(SHIM_EXIT_WAIT_S)
        if not message.get("ok") and message.get("refused"):
            # the box's own settings, refused by the guest agent (no warm retry: see _start)
            raise UsageError(str(message.get("error")))
        if not message.get("ok") and message.get("spare"):
            raise SpareFailed(str(message.get("error")))
        if not message.get("ok"):
            tail = message.get("console_tail") or []
            said = f"; the guest's last words: {tail[-1]!r}" if tail else ""
            raise VmError(f"the box failed to start: {message.get('error')}{said}",
                          hint=message.get("hint") or f"the VM console log is {message.get('console')}")
        if message.get("exit_code"):
            return StartResult(MAIN, int(message["exit_code"]), str(message.get("error")))
        # The shim outlives this process, which does not reap it (that would fold the
        # shim's and its VM's peak memory into ours).
        return StartResult(str(message.get("exec_id", MAIN)),
                           exit_pipe=read_fd if keep_pipe else None, pending=pending)

    @staticmethod
    def _hand_to_spare(spare: ClaimedSpare, files: BoxFiles, ready_fd: int,
                       output_fds: tuple[int, ...]) -> Process:
        """The box goes to the spare this process took; its shim is that spare."""
        log_fd = os.open(files.shim_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                         0o644)
        try:
            spare.hand_over(files.dir, log_fd, ready_fd, output_fds)
        except OSError as e:
            raise SpareFailed(f"it went away ({e.strerror})") from e
        finally:
            os.close(log_fd)
        return OtherProcess(spare.pid, ["boxlite-spare", str(spare.directory)])

    def _read_ready(self, fd: int, timeout_s: float, files: BoxFiles) -> tuple[str, bytes]:
        """The shim's first line on the ready pipe, and whatever came after it."""
        deadline = time.monotonic() + timeout_s
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill_shim(files)
                raise VmError(f"the box did not start within {timeout_s:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
        line, _, rest = data.partition(b"\n")
        return line.decode(errors="replace").strip(), rest

    # talking to a running box ---------------------------------------------------------

    def running(self, ref: str, doing: str = "reach its guest") -> BoxState:
        """The state of a box that must be running, not paused (Conflict otherwise, saying
        what cannot be `doing`). One still starting (from another shell) is waited for."""
        state = self.get(ref)
        if state.status not in (Status.STARTING, Status.RUNNING):  # (a `restart`'s stop)
            state = self._restarted(state)
        if state.status == Status.STARTING:
            state = self._started(state)
        if state.status != Status.RUNNING and state.is_restarting:
            raise Conflict(f"box {state.name} is restarting (its --restart policy)",
                           hint="wait until it runs again: `boxlite ps` shows it Up")
        if state.status != Status.RUNNING:
            raise Conflict(f"box {state.name} is not running", hint=f"start it: boxlite start {state.name}")
        refuse_paused(state, doing)
        return state

    def _restarted(self, state: BoxState) -> BoxState:
        """A box that is not running, once a `restart` of it from another shell is over
        (waited for as long as its stop and a boot may take)."""
        grace = state.config.stop_timeout
        wait_s = min(grace if grace is not None else DEFAULT_STOP_TIMEOUT_S, 600.0)
        try:
            with self.boxes.restart_lock(state.id, wait_s + boot_timeout_s() + 60):
                pass
        except Conflict:  # (still held: a restart that takes that long is stuck)
            raise Conflict(f"box {state.name} is still restarting",
                           hint="try again once `boxlite ps` shows it Up") from None
        return self.get(state.id)

    def _started(self, state: BoxState) -> BoxState:
        """A starting box once its start is over (it runs, or it failed), waited for as
        long as a boot may take."""
        deadline = time.monotonic() + boot_timeout_s()
        while state.status == Status.STARTING:
            if time.monotonic() >= deadline:
                raise Conflict(f"box {state.name} is still starting",
                               hint="try again once `boxlite ps` shows it Up")
            time.sleep(0.05)
            state = self.get(state.id)
        return state

    def client(self, ref: str, doing: str = "reach its guest") -> tuple[BoxState, AgentClient]:
        state = self.running(ref, doing)
        return state, self.connect(state)

    def connect(self, state: BoxState) -> AgentClient:
        """A gRPC client of the box's agent, through its shim's agent.sock."""
        from boxlite_cli.agent.client import AgentClient  # grpc: only for talking to boxes

        return AgentClient.connect(f"unix:{self.files(state.id).agent_socket}")

    def connect_run(self, box_id: str) -> tuple[AgentClient, ProcessRecord | None]:
        """A client of the box's agent for its current run only (a `restart` meanwhile
        ends its calls: agent/client.py's pin), and that run's shim (None: unknown)."""
        from boxlite_cli.agent.client import AgentClient

        files = self.files(box_id)
        shim = read_pidfile(files.shim_pid)
        return (AgentClient.connect(f"unix:{files.agent_socket}",
                                    pin=shim.pid if shim is not None else None), shim)

    @staticmethod
    def exec_spec(state: BoxState, opts: ProcessOptions) -> ProcessSpec:
        """An exec's process: the options over the box's own env, cwd and user."""
        box = state.config.process
        if not opts.command:
            raise UsageError("exec needs a command")
        return process_spec(opts, {"Env": box.env, "WorkingDir": box.cwd, "User": box.user,
                                   "Cmd": []})

    def stopped_in_order(self, box_id: str, wait_s: float = 2.0) -> bool:
        """After an exec's stream broke: the box was stopped as it should be (removed,
        a stop asked for, or its main process ended: its processes were killed with
        it), not lost to a failure. Waits a little for its shim to record it."""
        files = self.files(box_id)
        deadline = time.monotonic() + wait_s
        while True:
            if not files.dir.exists() or files.stop_requested.exists():
                return True
            with contextlib.suppress(BoxliteError, OSError):
                state = self.observe(self.boxes.read(box_id))
                if state.status == Status.EXITED:
                    return state.error is None
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def exec(self, ref: str, opts: ProcessOptions, detach: bool = False,
             merge_stderr: bool = False) -> tuple[AgentClient, Started]:
        """Start another process in a running box; it inherits the box's env, cwd and user.
        `merge_stderr`: one pipe for its stdout and stderr (the caller's are one file)."""
        state = self.running(ref, "exec in it")
        spec = self.exec_spec(state, opts)
        client = self.connect(state)
        try:
            started = client.exec(argv=spec.argv, env=spec.env, cwd=spec.cwd, user=spec.user,
                                  tty=spec.tty, rows=spec.rows, cols=spec.cols,
                                  stdin=spec.stdin, timeout_s=spec.timeout_s,
                                  hold_output=not detach,
                                  # (a CLI that detaches or dies leaves it running on)
                                  release_on_detach=not detach,
                                  merge_stderr=merge_stderr and not detach and not spec.tty)
        except BaseException:
            client.close()
            raise
        return client, started

    def logs(self, ref: str, follow: bool = False, tail: int | None = None,
             window: TimeWindow = ALL_TIME) -> Iterator[LogRecord]:
        """The records of the main process's output received in `window`; `follow`
        waits for more until the box stops; `tail` keeps only the last lines written so
        far."""
        box_id = self.resolve(ref)
        state = self.get(box_id)
        if state.config.log_driver == "none":
            raise Conflict(f"box {state.name} keeps no log (--log-driver none): its output "
                           "went to whoever was attached", hint=f"see its output as it comes: "
                                                                f"boxlite attach {state.name}")
        followed: list[float | None] = []  # the run followed: its start time, once running
        cutoff: list[int] = []  # ns: where the run a restart began starts in the log

        def live() -> bool:
            """The box's run we follow is on: docker's `logs -f` ends when the container
            stops, and does not go on with the run a `restart` begins."""
            try:
                state = self.get(box_id)
            except NotFound:  # (a --rm box, removed once it ended: its log was read to the end)
                return False
            if not followed:
                if state.status == Status.RUNNING:
                    followed.append(state.started_at)
                return state.status in LIVE
            if state.started_at != followed[0] and state.started_at is not None:
                cutoff.append(int(state.started_at * 1e9))
            return (state.status in (Status.RUNNING, Status.STOPPING)
                    and state.started_at == followed[0])

        for record in read_log(self.files(box_id).container_log, follow, tail, live=live,
                               window=window):
            if cutoff and record.ns >= cutoff[0]:
                return
            yield record

    # stop and remove ------------------------------------------------------------------

    def _kill_shim(self, files: BoxFiles, sig: int = signal.SIGTERM) -> None:
        """Signal the box's shim; the stop-requested mark first, for a start that this
        ends (see _spawn_shim), and for a shim that has the box but has not written its
        PID file yet (handed over by a CLI: it reads the mark once it has, shim/main.py,
        so one of the two sees the other)."""
        if files.dir.is_dir():
            with contextlib.suppress(OSError):
                files.stop_requested.touch()
        record = read_pidfile(files.shim_pid)
        if record is not None and record.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, sig)

    def wait_stopped(self, box_id: str, timeout_s: float,
                     shim: ProcessRecord | None = None) -> bool:
        """Wait until the box's shim (`shim`: that one, of one run of it) has exited;
        True if it did within the timeout."""
        files = self.files(box_id)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = shim or read_pidfile(files.shim_pid)
            if record is None or not record.alive():
                return True
            time.sleep(0.02)
        return False

    def stop(self, ref: str, timeout_s: float | None = None,
             restarting: bool = False, signum: int | None = None) -> BoxState:
        """Signal the main process (`signum`, else the box's stop signal: the image's
        StopSignal or SIGTERM), SIGKILL it after `timeout_s` (None: the box's
        --stop-timeout, or 10 s), then power off. `restarting`: a `--rm` box is kept
        (`restart` starts it again)."""
        box_id = self.resolve(ref)
        state = self.get(box_id)
        if state.status not in LIVE:
            if state.config.restart != NO_RESTART:  # (one pending by its policy: not made)
                with contextlib.suppress(OSError):
                    self.files(box_id).stop_requested.touch()
                if state.restarter is not None:
                    with contextlib.suppress(BoxliteError), self.boxes.lock(box_id):
                        stopped = self.boxes.read(box_id)
                        stopped.restarter = None  # (no longer restarting)
                        self.boxes.write(stopped)
                        return self.observe(stopped)
            return state
        if timeout_s is None:
            timeout_s = (state.config.stop_timeout if state.config.stop_timeout is not None
                         else DEFAULT_STOP_TIMEOUT_S)
        files = self.files(box_id)
        if restarting and state.config.auto_remove:
            files.restarting.touch()
        with contextlib.suppress(OSError):  # (its shim gives up on a stalled output reader)
            files.stop_requested.touch()
        continue_if_paused(self, box_id)
        from boxlite_cli.agent.client import AgentClient

        if state.is_held:  # (a full disk holds its VM: its guest takes no signal, and the
            self._kill_shim(files)  # RPC would wait out its timeout)
        else:
            try:
                client = AgentClient.connect(f"unix:{files.agent_socket}")
                try:
                    client.signal(MAIN, signum if signum is not None else
                                  parse_signal(state.config.stop_signal or DEFAULT_STOP_SIGNAL))
                    try:
                        client.wait(MAIN, timeout=max(timeout_s, 0.01))
                    except BoxliteError:
                        client.signal(MAIN, signal.SIGKILL)
                finally:
                    client.close()
            except BoxliteError:
                self._kill_shim(files)
        if not self.wait_stopped(box_id, 30):
            self._kill_shim(files, signal.SIGKILL)
            self.wait_stopped(box_id, 5)
        try:
            return self.get(box_id)
        except NotFound:  # a --rm box (or one removed meanwhile): stopped, and gone
            return state

    def restart(self, ref: str, timeout_s: float | None = None,
                signum: int | None = None) -> StartResult:
        """Stop the box (as `stop`; a `--rm` box is kept) and start it again, one
        restart of it at a time."""
        box_id = self.resolve(ref)
        grace = self.get(box_id).config.stop_timeout
        stop_s = timeout_s if timeout_s is not None else grace or DEFAULT_STOP_TIMEOUT_S
        with self.boxes.restart_lock(box_id, stop_s + boot_timeout_s() + 60):  # (another's)
            self.stop(box_id, timeout_s, restarting=True, signum=signum)
            return self.start(box_id)

    def kill(self, ref: str, signum: int) -> BoxState:
        """Send `signum` to the box's main process (SIGKILL: a paused box is continued
        for it; other signals would wait for `unpause`, and are refused). After SIGKILL,
        as docker's kill, it returns once the box has stopped (`kill x && rm x` works).
        A box still starting is stopped as it comes up by SIGKILL; another signal waits
        for it to run (Runtime.running)."""
        state = self.get(ref)
        ending = signum in (signal.SIGKILL,
                            parse_signal(state.config.stop_signal or DEFAULT_STOP_SIGNAL))
        if ending and state.is_restarting:  # (waiting for its policy: that start is called
            return self.stop(ref)           # off, as stop does; its exit code is kept)
        if state.status == Status.STARTING and state.restart_count > 0:  # (docker's refusal)
            raise Conflict(f"box {state.name} is restarting (its restart policy starts it "
                           "again): wait until it runs", hint=f"boxlite stop {state.name} "
                           "ends it and its restarts")
        if state.status in LIVE and state.config.restart != NO_RESTART and ending:
            with contextlib.suppress(OSError):  # (killed by hand: not restarted, as docker's)
                self.files(state.id).stop_requested.touch()
        if signum == signal.SIGKILL:
            # (stopped as it comes up; a VM a full disk holds takes no signal: ended)
            if state.status == Status.STARTING or state.is_held:
                return self.stop(ref, timeout_s=0, signum=signal.SIGKILL)
            continue_if_paused(self, state.id)
        state, client = self.client(ref, f"send it signal {signum} (a paused box takes SIGKILL only)")
        try:
            client.signal(MAIN, signum)
        finally:
            client.close()
        if signum == signal.SIGKILL:
            self.wait_stopped(state.id, KILL_WAIT_S)
        return state

    def wait(self, ref: str) -> int:
        """Block until the box has stopped; its main process's exit code. A `restart`
        stops it too: the code is that of the run that ended (docker's)."""
        box_id = self.resolve(ref)
        files = self.files(box_id)
        ended: ProcessRecord | None = None  # the shim of the run seen to end
        while True:
            try:
                state = self.get(box_id)
            except NotFound:  # removed under us (rm -f): killed with it, as docker says
                return KILLED_WITH_THE_BOX
            if state.status not in LIVE:
                return state.exit_code if state.exit_code is not None else 0
            shim = read_pidfile(files.shim_pid)
            if ended is not None and shim != ended:  # (a new run: restarted)
                return state.last_exit_code if state.last_exit_code is not None else 0
            if state.config.auto_remove and state.status == Status.RUNNING:
                # Its record goes with it: hear the exit from the guest agent instead.
                code = self._wait_main(box_id)
                if code is not None:
                    return code
            if shim is None:
                time.sleep(0.1)  # starting: its shim is not up yet
            elif self.wait_stopped(box_id, 3600, shim=shim):
                ended = shim

    def _wait_main(self, box_id: str) -> int | None:
        """The main process's exit code, from the agent (None: the box is not reachable)."""
        from boxlite_cli.agent.client import AgentClient

        try:
            client = AgentClient.connect(f"unix:{self.files(box_id).agent_socket}")
            try:
                return client.wait(MAIN).exit_code
            finally:
                client.close()
        except BoxliteError:
            return None

    def update(self, ref: str, change: BoxUpdate) -> Updated:
        """docker's update: the restart policy, CPUs, memory, pids limit (update.py)."""
        from boxlite_cli.runtime import update

        return update.update(self, ref, change)

    def rename(self, ref: str, new_name: str) -> BoxState:
        new_name = new_name.removeprefix("/")  # (docker's names may start with one)
        box_id = self.resolve(ref)
        with self.boxes.lock(box_id):
            state = self.boxes.read(box_id)
            if new_name == state.name:
                raise Conflict(f"box {state.name} already has the name {new_name!r}")
            self.boxes.rename(box_id, state.name, new_name)
            state.name = new_name
            self.boxes.write(state)
        return state

    def prune(self) -> Pruned:
        """Remove every box that is not running (created or exited): their ids, and the
        space their directories took."""
        done = Pruned()
        for item in self.list_boxes(all_boxes=True):
            if isinstance(item, BoxState) and item.status in (Status.CREATED, Status.EXITED):
                size = allocated_bytes(self.files(item.id).dir)
                with contextlib.suppress(NotFound, Conflict):
                    done.removed.append(self.remove(item.id))
                    done.freed += size
        return done

    def pause(self, ref: str) -> BoxState:
        return pausing.pause(self, ref)

    def unpause(self, ref: str) -> BoxState:
        return pausing.unpause(self, ref)

    def stats(self, ref: str, interval_s: float = 0.5) -> BoxStats:
        """CPU use (percent of one host CPU) and memory of a running box's VM."""
        state = self.get(ref)
        if state.status != Status.RUNNING:
            raise Conflict(f"box {state.name} is not running")
        record = read_pidfile(self.files(state.id).vmm_pid)
        if record is None or not record.alive():
            raise Conflict(f"box {state.name} has no running VM")
        try:
            sample = sample_process(record.pid, interval_s)
        except (OSError, ValueError, IndexError):  # (its VM ended meanwhile)
            raise Conflict(f"box {state.name} stopped while it was sampled") from None
        # The box's own view (docker's: its processes' memory against their limit); a
        # guest too busy to answer soon (a fork bomb), or stopping, gives its VM's.
        pids: int | None = None
        memory, limit = sample.rss_bytes, state.config.memory_mib * 1024 * 1024
        received = sent = 0
        with contextlib.suppress(BoxliteError):
            usage = self.usage(state.id, STATS_AGENT_WAIT_S)
            pids = sum(p.threads for p in usage.processes)
            if usage.memory_limit_bytes:
                memory, limit = usage.memory_bytes, usage.memory_limit_bytes
            received, sent = usage.net_rx_bytes, usage.net_tx_bytes
        return BoxStats(state.id, state.name, sample.cpu_percent, memory, limit,
                        sample.read_bytes, sample.write_bytes, pids, sample.rss_bytes,
                        received, sent)

    def top(self, ref: str) -> list[ProcessInfo]:
        """The processes of a running box, by their PIDs in it (boxlite top)."""
        return self.usage(ref).processes

    def usage(self, ref: str, timeout_s: float = 60) -> BoxUsage:
        """A running box's processes and memory, from its guest (top, stats)."""
        _, client = self.client(ref, "list its processes")
        try:
            return client.usage(timeout_s)
        finally:
            client.close()

    def kill_now(self, box_id: str) -> None:
        """Stop the VM at once (no grace): for rm -f."""
        files = self.files(box_id)
        self._kill_shim(files)
        if not self.wait_stopped(box_id, 10):
            self._kill_shim(files, signal.SIGKILL)
            self.wait_stopped(box_id, 5)

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        """Remove a box and everything only it used (`volumes`: its anonymous volumes
        too, like `docker rm -v`). Returns its id.

        The box's directory goes under its lock, once it is seen not running there: a
        `start` from another shell meanwhile makes `rm` refuse (or, forced, stop it
        again) instead of leaving that VM running without its box."""
        from boxlite_cli.runtime.clone import check_no_dependents  # clones need its disk

        box_id = self.resolve(ref)
        sockets = self.files(box_id).sockets
        deadline = time.monotonic() + REMOVE_RACE_S
        while True:
            state = self._removable(box_id, force)
            if force:  # (refused before anything is stopped; and again under the lock)
                check_no_dependents(self, box_id)
                self.kill_now(box_id)
            try:
                with self.boxes.lock(box_id):
                    state = self._removable(box_id, force) or state
                    if state is None or state.status not in LIVE:
                        check_no_dependents(self, box_id)
                        name = state.name if state is not None else self.boxes.name_of(box_id)
                        self.boxes.remove_dir(box_id)
                        break
            except NoSuchBox:
                if not force:
                    raise
                name = None  # a --rm box went with its VM: its shim removed it (and its name)
                break
            if time.monotonic() >= deadline:
                raise Conflict(f"box {state.name} was started again while being removed",
                               hint=f"try again: boxlite rm -f {state.name}")
            time.sleep(0.05)  # started again between the kill and the lock: stop it again
        if name:
            self.boxes.release_name(name, box_id)
        if not sockets.is_relative_to(self.boxes.box_dir(box_id)):
            shutil.rmtree(sockets, ignore_errors=True)
        if volumes and state is not None:
            self.remove_anonymous_volumes(state)
        from boxlite_cli.runtime.snapshots import collect_unused

        collect_unused(self)  # e.g. the base of clones, when this was the last of them
        return box_id

    def _removable(self, box_id: str, force: bool) -> BoxState | None:
        """The box's observed state (None when unreadable, with `force`); Conflict when
        it runs and `force` is not given."""
        try:
            state: BoxState | None = self.observe(self.boxes.read(box_id))
        except StateCorrupt:
            if not force:
                raise
            state = None
        if state is not None and state.status in LIVE and not force:
            raise Conflict(f"cannot remove running box {state.name}",
                           hint=f"stop it first or use: boxlite rm -f {state.name}")
        return state

    def remove_anonymous_volumes(self, state: BoxState) -> None:
        """The anonymous volumes of a removed box that no other box uses."""
        remove_unused(self.volumes, [m.source for m in state.config.mounts if m.anonymous],
                      self.boxes.mounted_volumes)

    def prune_volumes(self, all_unused: bool = False) -> Pruned:
        """Remove the volumes no box uses: the anonymous ones (docker's `volume prune`),
        or every one with `all_unused`; their names, and the space their data took."""
        sizes = {v.name: allocated_bytes(self.volumes.data_dir(v.name)) for v in self.volumes.all()
                 if all_unused or v.anonymous}
        removed = remove_unused(self.volumes, list(sizes), lambda: {
            m.source for _, mounts in self.volume_users() for m in mounts if m.kind == VOLUME})
        return Pruned(removed, sum(sizes[name] for name in removed))

    def volume_users(self) -> list[tuple[str, list[Mount]]]:
        """(box name, mounts) of every readable box."""
        return [(s.name, s.config.mounts) for s in self.boxes.all()
                if not isinstance(s, StateCorrupt)]
