"""The initramfs: static busybox, the modules that reach the agent root, /init.

Layout of the cpio archive (newc, uncompressed, see INITRD_COMPRESSION):

    /init                       images/init.sh
    /bin/busybox, /bin/<applet> -> busybox
    /dev/console                char 5:1, so that PID 1 starts with a console
    /lib/modules/<name>.ko      the modules /init loads
    /etc/boxlite/modules        their paths in load order, one a line
    /etc/boxlite/modules.optional  faster variants that may fail to load
    /etc/boxlite/modules.pci    virtio-pci, loaded when the VM has PCI devices
    /proc /sys /newroot         mount points
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
from pathlib import Path

from .kernel import Kernel
from .kmods import ModuleIndex, copy_module
from .proc import BuildError, Log

# What /init must load, in any order: dependencies are added and ordered from
# modules.dep. crc32c_generic is ext4's (and jbd2's) softdep "crypto-crc32c":
# without a crc32c implementation, ext4 with metadata_csum refuses to mount.
INITRAMFS_MODULES = (
    "virtio_mmio",  # virtio devices; QEMU microvm describes them in ACPI
    "virtio_blk",  # agent root and container rootfs disks
    "virtio_console",  # virtio-serial, the agent's channel to the host
    "virtio_rng",  # entropy from the host
    "virtio_net",  # the box's NIC (--network nat); the agent configures it in Init
    "crc32c_generic",
    "ext4",
)
# Loaded after the others when the CPU allows (SSE4.2); failures are ignored.
OPTIONAL_MODULES = ("crc32c_intel",)
# virtio over PCI (cloud-hypervisor; QEMU microvm uses virtio-mmio): loaded, after
# the required ones, only when the VM has a PCI device, so microvm boots pay nothing.
PCI_MODULES = ("virtio_pci",)
# Every command /init runs, as symlinks to busybox.
BUSYBOX_APPLETS = ("sh", "cat", "insmod", "mkdir", "mount", "poweroff", "reboot", "sleep",
                   "switch_root")
# None (plain cpio) or "gzip". Measured under TCG (4.7 MB plain, 1.7 MB gzip): the
# kernel unpacks the plain archive in ~115 ms, the gzip one in ~240 ms.
INITRD_COMPRESSION: str | None = None
# Fixed mtime of every archive member, so that equal inputs give equal archives.
ARCHIVE_MTIME = 946684800
_PT_INTERP = 3


def is_static_elf(path: Path) -> bool:
    """True for a 64-bit ELF executable without a program interpreter."""
    with path.open("rb") as f:
        header = f.read(64)
        if header[:5] != b"\x7fELF\x02":
            return False
        phoff, = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, = struct.unpack("<I", f.read(4))
            if p_type == _PT_INTERP:
                return False
    return True


def module_load_lists(index: ModuleIndex) -> tuple[list[str], list[str]]:
    """(required, optional) module names, each list in load order."""
    required = index.load_order(INITRAMFS_MODULES)
    optional = [name for name in index.load_order(OPTIONAL_MODULES) if name not in required]
    return required, optional


def pci_module_list(index: ModuleIndex, required: list[str]) -> list[str]:
    """PCI_MODULES and what they need beyond `required`, in load order."""
    return [name for name in index.load_order(PCI_MODULES) if name not in required]


def stage_tree(stage: Path, kernel: Kernel, index: ModuleIndex, init_script: Path,
               busybox: Path) -> list[str]:
    """Lay out the initramfs in `stage`; returns the required modules in load order."""
    for d in ("bin", "dev", "proc", "sys", "newroot", "etc/boxlite", "lib/modules"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox, stage / "bin/busybox")
    (stage / "bin/busybox").chmod(0o755)
    for applet in BUSYBOX_APPLETS:
        (stage / "bin" / applet).symlink_to("busybox")
    os.mknod(stage / "dev/console", 0o600 | 0o020000, os.makedev(5, 1))
    shutil.copyfile(init_script, stage / "init")
    (stage / "init").chmod(0o755)
    required, optional = module_load_lists(index)
    pci = pci_module_list(index, required)
    for listing, names in (("modules", required), ("modules.optional", optional),
                           ("modules.pci", pci)):
        lines = []
        for name in names:
            copy_module(kernel.moddir / index.paths[name], stage / f"lib/modules/{name}.ko")
            lines.append(f"/lib/modules/{name}.ko\n")
        (stage / "etc/boxlite" / listing).write_text("".join(lines))
    return required


def archive_members(stage: Path) -> list[str]:
    """Paths under `stage` as cpio wants them: `.` first, parents before children."""
    members = ["."]
    for dirpath, dirnames, filenames in os.walk(stage):
        rel = os.path.relpath(dirpath, stage)
        for name in dirnames + filenames:
            members.append(os.path.normpath(os.path.join(rel, name)))
    return sorted(members, key=lambda m: (m != ".", m))


def write_cpio(stage: Path, out: Path) -> None:
    """Pack `stage` into a newc cpio at `out` (gzip-compressed if so configured)."""
    members = archive_members(stage)
    for member in members:
        os.utime(stage / member, (ARCHIVE_MTIME, ARCHIVE_MTIME), follow_symlinks=False)
    names = "".join(f"{m}\n" for m in members).encode()
    cmd = ["cpio", "--create", "--format=newc", "--reproducible", "--owner=0:0", "--quiet"]
    proc = subprocess.run(cmd, cwd=stage, input=names, capture_output=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"cpio failed: {proc.stderr.decode(errors='replace').strip()}")
    data = proc.stdout
    if INITRD_COMPRESSION == "gzip":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    out.write_bytes(data)


def build_initramfs(work: Path, out: Path, kernel: Kernel, index: ModuleIndex,
                    init_script: Path, busybox: Path, log: Log) -> list[str]:
    """Write `out`; returns the modules /init loads, in order."""
    if not is_static_elf(busybox):
        raise BuildError(f"{busybox} is not a static binary (install busybox-static)")
    stage = work / "initramfs"
    modules = stage_tree(stage, kernel, index, init_script, busybox)
    write_cpio(stage, out)
    log(f"initramfs: {out.stat().st_size // 1024} KiB, modules: {' '.join(modules)}")
    return modules
