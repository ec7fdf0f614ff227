"""Warm-start templates: a VM saved right when its agent is ready, restored by later boxes.

The first cold start of a given (VMM binary, guest payload, image, cpus, memory,
accelerator, network kind, root disk size) saves the VM's memory as soon as the guest
agent says it is ready, before anything box-specific happened in the guest. Later starts of boxes
with the same key restore that memory and then run Init, which gives each box its
own clock, entropy, hostname and network. The key hashes every input, so a change of
any of them simply misses. The memory is a RAM image and the device state beside it
(vmm/ramimage.py): a restore maps the image, copy-on-write, and loads only the device
state. There are two kinds:

- primed: for a box whose disk is still as `create` made it (every `run`). Before
  the save, the guest had a box-neutral Init: the container disk is mounted with
  its kernel file systems, on a connection that is closed again. The template keeps
  that disk's overlay as it was at the save (ROOTFS_LAYER): a box restored from it
  gets a copy as its own disk, so what the guest's memory knows of the disk is true.
  The key also names the image's base disk file (a rebuilt base is another key).
- plain: for any other box (a restart, a clone, an import). The container disk is
  attached but not mounted; one warm-up call before the save. Init mounts the box's
  own disk after the restore.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from boxlite_cli.disks.chain import qcow2_backing
from boxlite_cli.disks.qcow2 import virtual_size
from boxlite_cli.errors import DiskError
from boxlite_cli.shim.vmspec import ROOTFS_LAYER, TEMPLATE_META
from boxlite_cli.vmm.base import NET_NONE, NET_USER, VmSpec
from boxlite_cli.vmm.cmdline import accel_cmdline
from boxlite_cli.vmm.qmp import MEMORY_FILE
from boxlite_cli.vmm.ramimage import ram_image

# 2: saved after a warm-up call; 3: primed templates; 4: the RAM as an image
TEMPLATE_FORMAT = 4
# Before a template is saved, the others are pruned: those not used for this long,
# and all but the most recently used ones (each holds ~the guest's used RAM on disk).
KEEP_TEMPLATES = 8
TEMPLATE_MAX_IDLE_S = 14 * 86400
PARTIAL_MAX_AGE_S = 3600  # a save that died (a live one takes seconds)
WARM_DRIVERS = ("qemu",)  # cloud-hypervisor's snapshots name the original box's files


def _file_identity(path: Path | str | None) -> list[object]:
    if not path:
        return []
    try:
        st = os.stat(path)
    except OSError:
        return [str(path)]
    return [str(path), st.st_size, st.st_mtime_ns]


def _disk_size(path: Path | str | None) -> int | None:
    try:
        return virtual_size(Path(path)) if path else None
    except (OSError, DiskError):
        return None


def template_key(driver: str, vmm_binary: str | None, spec: VmSpec, image_id: str,
                 primed_on: Path | None = None) -> str | None:
    """The key of the template `spec` could start from, or None when it cannot use one;
    `primed_on`: the base disk of a box whose disk is still fresh (a primed template)."""
    if driver not in WARM_DRIVERS or spec.mode != "agent":
        return None
    if spec.network not in (NET_NONE, NET_USER):
        return None
    inputs = {
        "format": TEMPLATE_FORMAT,
        "driver": driver,
        "vmm": _file_identity(vmm_binary),
        "kernel": _file_identity(spec.kernel),
        "initrd": _file_identity(spec.initrd),
        "agent_root": _file_identity(spec.agent_root),
        "cpus": spec.cpus,
        "memory_mib": spec.memory_mib,
        "accel": spec.accel,
        # (the whole command line: the TCG guest's TSC rate is in the accelerator's part)
        "cmdline": [*accel_cmdline(spec.accel), *spec.extra_cmdline],
        "network": spec.network,
        # The VM's 9p devices (a template is saved before the guest mounts any: their
        # state migrates; their host paths are each box's own, not part of the key)
        "shares": [[s.tag, s.readonly] for s in spec.shares],
        "image": image_id,
        # The root disk's size: the guest's kernel keeps the size it read, and its
        # filesystem is grown to it once (--disk-size)
        "disk_size": _disk_size(spec.rootfs_disk),
        "primed_on": _file_identity(primed_on),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


class Templates:
    """The templates of one home, under `<cache>/templates/<key>/`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key

    def ready(self, key: str, primed: bool = False) -> Path | None:
        """The template directory for `key` when it is complete (marked as used now)."""
        path = self.path(key)
        parts = (TEMPLATE_META, *((ROOTFS_LAYER,) if primed else ()))
        memory = (path / MEMORY_FILE).is_file() or ram_image(path) is not None
        if memory and all((path / part).is_file() for part in parts):
            with contextlib.suppress(OSError):
                os.utime(path / TEMPLATE_META)  # its last use, for prune()
            return path
        return None

    def drop_orphans(self) -> list[str]:
        """Delete the primed templates whose image's base disk is gone (`rmi`): no box
        starts from them again (a base made anew is another key); the names deleted."""
        gone = []
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            layer = entry / ROOTFS_LAYER
            backing = qcow2_backing(layer) if ".partial-" not in entry.name else None
            if backing is not None and not (entry / backing).exists():  # (relative: to it)
                shutil.rmtree(entry, ignore_errors=True)
                entry.with_name(f"{entry.name}.lock").unlink(missing_ok=True)
                gone.append(entry.name)
        return sorted(gone)

    def prune(self, keep: int = KEEP_TEMPLATES, max_idle_s: float = TEMPLATE_MAX_IDLE_S,
              now: float | None = None) -> list[str]:
        """Delete the templates not used for `max_idle_s` and all but the `keep` most
        recently used ones, those of removed images, and saves that died half-way; the
        names deleted. (A box restored from a deleted template runs on: its RAM image
        stays mapped.)"""
        now = time.time() if now is None else now
        if not self.root.is_dir():
            return []
        orphans = self.drop_orphans()
        used: list[tuple[float, Path]] = []
        gone: list[Path] = []
        for entry in self.root.iterdir():
            if not entry.is_dir():
                continue
            try:
                if ".partial-" in entry.name:
                    if now - entry.stat().st_mtime > PARTIAL_MAX_AGE_S:
                        gone.append(entry)
                    continue
                used.append(((entry / TEMPLATE_META).stat().st_mtime, entry))
            except OSError:  # no metadata: not a template of ours, or being removed
                continue
        used.sort(reverse=True)
        gone += [entry for i, (last, entry) in enumerate(used)
                 if i >= keep or now - last > max_idle_s]
        for entry in gone:
            shutil.rmtree(entry, ignore_errors=True)
            if ".partial-" not in entry.name:
                entry.with_name(f"{entry.name}.lock").unlink(missing_ok=True)
        return sorted([*orphans, *(entry.name for entry in gone)])

    def remove_all(self) -> int:
        """Delete every template (they are rebuilt by the next cold starts); bytes freed."""
        freed = 0
        if not self.root.is_dir():
            return 0
        for entry in self.root.iterdir():
            for f in entry.rglob("*") if entry.is_dir() else [entry]:
                with contextlib.suppress(OSError):
                    freed += f.stat().st_blocks * 512
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return freed
