"""The guest kernel: Debian bookworm's generic `linux-image-amd64` flavour.

Generic rather than `-cloud` because the cloud flavour lacks 9p (and the guest
wants 9p, virtiofs and vsock as modules). The package is fetched with the host's
apt (`apt-get download`), unpacked with `dpkg-deb -x`, and depmod is run on the
unpacked tree since the package ships no modules.dep. The unpacked kernel is a
cached stage, keyed by package version (unpacking takes seconds).
"""

from __future__ import annotations

import functools
import gzip
import lzma
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import kmods
from .proc import BuildError, Log, capture, run
from .stages import StageCache, recipe_key

KERNEL_META_PACKAGE = "linux-image-amd64"
# apt-get download writes as root; without this apt warns it cannot drop to _apt.
APT_AS_ROOT = ("-o", "APT::Sandbox::User=root")
# A flavoured image package, e.g. linux-image-6.1.0-56-amd64.
_IMAGE_PACKAGE = re.compile(r"linux-image-(\d[^\s,|()]*-amd64)\b")


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel package."""

    package: str
    """Package name, e.g. `linux-image-6.1.0-56-amd64`."""
    version: str
    """Debian package version, e.g. `6.1.192-2`."""
    release: str
    """`uname -r` of this kernel, e.g. `6.1.0-56-amd64`."""
    root: Path
    """Where the package was unpacked."""

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def vmlinux(self) -> Path:
        """The uncompressed ELF kernel, extracted from vmlinuz by this build."""
        return self.root / "boot" / f"vmlinux-{self.release}"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"

    @property
    def moddir(self) -> Path:
        """`/lib/modules/<release>` inside the unpacked package."""
        for base in ("lib/modules", "usr/lib/modules"):
            candidate = self.root / base / self.release
            if candidate.is_dir():
                return candidate
        raise BuildError(f"{self.package} has no /lib/modules/{self.release}")

    @property
    def apt_spec(self) -> str:
        return f"{self.package}={self.version}"


def apt_show(package: str) -> dict[str, str]:
    """Fields of the candidate version of `package` in the host's apt lists."""
    text = capture(["apt-cache", "show", "--no-all-versions", package])
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields[name] = value
    return fields


def resolve_kernel(log: Log) -> tuple[str, str]:
    """(package, version) of the flavoured image that linux-image-amd64 points at."""
    try:
        depends = apt_show(KERNEL_META_PACKAGE)["Depends"]
    except (BuildError, KeyError):
        log("apt knows no linux-image-amd64; running apt-get update")
        run(["apt-get", "update", "-q"])
        depends = apt_show(KERNEL_META_PACKAGE)["Depends"]
    match = _IMAGE_PACKAGE.search(depends)
    if not match:
        raise BuildError(f"{KERNEL_META_PACKAGE}: no linux-image dependency in {depends!r}")
    package = match.group(0)
    return package, apt_show(package)["Version"]


def apt_download(spec: str, dest: Path, log: Log) -> Path:
    """Download one .deb (`package=version`) into `dest`; apt-get update once on failure."""
    cmd = ["apt-get", *APT_AS_ROOT, "download", spec]
    try:
        run(cmd, cwd=dest)
    except BuildError:
        log("apt-get download failed; running apt-get update")
        run(["apt-get", "update", "-q"])
        run(cmd, cwd=dest)
    package = spec.partition("=")[0]
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise BuildError(f"expected one {package} .deb in {dest}, found {len(debs)}")
    return debs[0]


def kernel_stage(stages: StageCache, modules: tuple[str, ...], log: Log) -> Kernel:
    """The current bookworm generic kernel, unpacked once per package version.

    Only `modules` and what they depend on are kept of the ~4000 modules.
    """
    package, version = resolve_kernel(log)
    kernel_of = functools.partial(Kernel, package=package, version=version,
                                  release=package.removeprefix("linux-image-"))
    recipe = {"package": package, "version": version, "modules": sorted(modules)}
    key = recipe_key(recipe, Path(__file__), Path(kmods.__file__))
    stage = stages.get("kernel", key,
                       lambda tmp: unpack_kernel(kernel_of(root=tmp), modules, log))
    return kernel_of(root=stage)


def unpack_kernel(kernel: Kernel, modules: tuple[str, ...], log: Log) -> None:
    """Download and unpack `kernel` into kernel.root: depmod output, vmlinux, `modules`."""
    log(f"kernel: downloading {kernel.apt_spec}")
    debs = kernel.root / "debs"
    debs.mkdir()
    deb = apt_download(kernel.apt_spec, debs, log)
    run(["dpkg-deb", "-x", deb, kernel.root])
    shutil.rmtree(debs)
    if not kernel.vmlinuz.is_file():
        raise BuildError(f"{kernel.package} has no {kernel.vmlinuz.relative_to(kernel.root)}")
    run(["depmod", "-b", kernel.root, kernel.release])
    keep_only(kernel.moddir, modules)
    kernel.vmlinux.write_bytes(extract_vmlinux(kernel.vmlinuz.read_bytes()))


def keep_only(moddir: Path, modules: tuple[str, ...]) -> None:
    """Delete every module file but `modules` and their dependencies (the index stays)."""
    index = kmods.ModuleIndex.load(moddir)
    keep = {index.paths[name] for name in index.load_order(modules)}
    for rel in index.paths.values():
        if rel not in keep:
            (moddir / rel).unlink()


def _gunzip(data: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)


# (magic, decompress) of the payload formats a bzImage may carry.
_PAYLOADS = ((b"\xfd7zXZ\x00", _unxz), (b"\x1f\x8b\x08", _gunzip))


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage (like scripts/extract-vmlinux).

    QEMU boots it through the PVH entry point, which skips the in-guest
    decompression: seconds under TCG.
    """
    for magic, decompress in _PAYLOADS:
        start = bzimage.find(magic)
        while start != -1:
            try:
                elf = decompress(bzimage[start:])
            except (lzma.LZMAError, zlib.error, gzip.BadGzipFile, EOFError):
                elf = b""
            if elf.startswith(b"\x7fELF"):
                return elf
            start = bzimage.find(magic, start + 1)
    raise BuildError("no xz or gzip compressed ELF kernel found in the bzImage")
