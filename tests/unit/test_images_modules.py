"""Kernel module load order resolved from modules.dep (images/guestbuild/kmods.py)."""

from __future__ import annotations

import lzma
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images"))

from guestbuild.kmods import (  # type: ignore[import-not-found, unused-ignore]
    DependencyCycle,
    ModuleIndex,
    UnknownModule,
    copy_module,
    module_name,
    plain_path,
)

# An excerpt of Debian bookworm's 6.1 generic kernel modules.dep.
MODULES_DEP = """\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/fs/fuse/fuse.ko:
kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko \
kernel/fs/fuse/fuse.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/net/vmw_vsock/vsock.ko:
kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko: kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vsock_loopback.ko: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko \
kernel/net/vmw_vsock/vsock.ko
"""
MODULES_BUILTIN = "kernel/drivers/tty/serial/8250/8250.ko\nkernel/fs/configfs/configfs.ko\n"


@pytest.fixture
def index() -> ModuleIndex:
    return ModuleIndex.parse(MODULES_DEP, MODULES_BUILTIN)


def assert_deps_first(index: ModuleIndex, order: list[str]) -> None:
    position = {name: i for i, name in enumerate(order)}
    for name in order:
        for dep in index.deps[name]:
            assert position[dep] < position[name], f"{dep} must load before {name}"


def test_module_names_drop_suffixes_and_dashes() -> None:
    assert module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz") == "virtio_rng"
    assert module_name("kernel/fs/ext4/ext4.ko") == "ext4"
    assert module_name("kernel/net/9p/9pnet_virtio.ko.zst") == "9pnet_virtio"
    assert plain_path("kernel/drivers/char/hw_random/virtio-rng.ko.xz") == (
        "kernel/drivers/char/hw_random/virtio-rng.ko")


def test_parse_keeps_paths_and_direct_deps(index: ModuleIndex) -> None:
    assert index.paths["virtio_rng"] == "kernel/drivers/char/hw_random/virtio-rng.ko.xz"
    assert index.deps["ext4"] == ("crc16", "mbcache", "jbd2")
    assert index.deps["virtio_ring"] == ()
    assert "configfs" in index.builtin


def test_virtio_ring_before_virtio_before_drivers(index: ModuleIndex) -> None:
    order = index.load_order(["virtio_mmio", "virtio_blk"])
    assert order == ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk"]


def test_ext4_after_all_its_deps(index: ModuleIndex) -> None:
    order = index.load_order(["ext4"])
    assert order[-1] == "ext4"
    assert sorted(order[:-1]) == ["crc16", "jbd2", "mbcache"]
    assert_deps_first(index, order)


def test_each_module_once_and_wanted_order_kept(index: ModuleIndex) -> None:
    wanted = ["virtio_mmio", "virtio_blk", "virtio-rng", "crc32c_generic", "ext4",
              "virtiofs", "vsock_loopback"]
    order = index.load_order(wanted)
    assert len(order) == len(set(order))
    assert_deps_first(index, order)
    wanted_positions = [order.index(name.replace("-", "_")) for name in wanted]
    assert wanted_positions == sorted(wanted_positions)
    assert order.index("vsock") < order.index("vmw_vsock_virtio_transport_common")


def test_transitive_deps_are_ordered_even_if_unlisted() -> None:
    index = ModuleIndex.parse("a.ko: b.ko\nb.ko: c.ko\nc.ko:\n")
    assert index.load_order(["a"]) == ["c", "b", "a"]


def test_builtin_modules_are_skipped(index: ModuleIndex) -> None:
    assert index.load_order(["configfs", "virtio_blk"]) == ["virtio_ring", "virtio", "virtio_blk"]


def test_unknown_module_is_an_error(index: ModuleIndex) -> None:
    with pytest.raises(UnknownModule, match="no_such_mod"):
        index.load_order(["no_such_mod"])


def test_cycle_is_an_error() -> None:
    index = ModuleIndex.parse("a.ko: b.ko\nb.ko: a.ko\n")
    with pytest.raises(DependencyCycle):
        index.load_order(["a"])


def test_compressed_modules_are_stored_plain(tmp_path: Path) -> None:
    payload = b"\x7fELF fake module"
    src = tmp_path / "virtio-rng.ko.xz"
    src.write_bytes(lzma.compress(payload))
    dest = tmp_path / "out" / "virtio_rng.ko"
    copy_module(src, dest)
    assert dest.read_bytes() == payload
