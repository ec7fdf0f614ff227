"""The guest payload builder's pure parts (images/build.py, images/guestbuild/).

Nothing here downloads or needs root: the real build is checked by running it.
"""

from __future__ import annotations

import gzip
import importlib.util
import lzma
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from boxlite_cli import payload as payload_mod

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
sys.path.insert(0, str(IMAGES))

from guestbuild import agentroot, initramfs  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from guestbuild.kernel import extract_vmlinux  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from guestbuild.proc import BuildError  # type: ignore[import-not-found, unused-ignore]  # noqa: E402


def load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("boxlite_images_build", IMAGES / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = load_build_script()


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(dep.split("==", 1) for dep in deps if "==" in dep)


def test_guest_wheels_pinned_like_the_host() -> None:
    pins = pyproject_pins()
    assert pins["grpcio"] == agentroot.GRPCIO_VERSION
    assert pins["protobuf"] == agentroot.PROTOBUF_VERSION


def test_every_host_tool_comes_from_a_listed_or_essential_package() -> None:
    always_there = {"apt", "dpkg", "coreutils"}
    assert set(build.HOST_TOOLS.values()) <= set(build.HOST_PACKAGES) | always_there


def test_readme_names_every_host_package() -> None:
    readme = (IMAGES / "README.md").read_text()
    for package in build.HOST_PACKAGES:
        assert package in readme


def test_init_script_uses_the_payload_constants() -> None:
    script = (IMAGES / "init.sh").read_text()
    assert f"AGENT_SERIAL={payload_mod.AGENT_DISK_SERIAL}\n" in script
    assert "BOXLITE-PROBE-OK" in script
    assert "switch_root" in script and "-m \"$AGENT_MODULE\"" in script
    assert "AGENT_MODULE=boxlite_agent.init" in script
    assert f"AGENT_LIB=/{agentroot.AGENT_LIB}\n" in script


@pytest.mark.skipif(shutil.which("busybox") is None, reason="no busybox to parse the script")
def test_init_script_parses_with_busybox_sh() -> None:
    subprocess.run(["busybox", "sh", "-n", str(IMAGES / "init.sh")], check=True)


def test_init_script_applets_are_all_linked() -> None:
    script = (IMAGES / "init.sh").read_text()
    for applet in ("mount", "insmod", "switch_root", "poweroff", "reboot", "sleep", "cat"):
        assert applet in initramfs.BUSYBOX_APPLETS
        assert applet in script


def fake_bzimage(compress: object) -> tuple[bytes, bytes]:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    assert callable(compress)
    packed: bytes = compress(elf)
    # Setup code, a decoy magic, then the payload and trailing data, like a bzImage.
    return b"MZ" + b"\0" * 500 + b"\xfd7zXZ\0broken" + packed + b"\0" * 64, elf


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress])
def test_extract_vmlinux_finds_the_elf(compress: object) -> None:
    image, elf = fake_bzimage(compress)
    assert extract_vmlinux(image) == elf


def test_extract_vmlinux_without_payload_is_an_error() -> None:
    with pytest.raises(BuildError):
        extract_vmlinux(b"MZ" + b"\0" * 1000)


def test_busybox_static_check(tmp_path: Path) -> None:
    assert not initramfs.is_static_elf(Path(sys.executable).resolve())
    not_elf = tmp_path / "script"
    not_elf.write_text("#!/bin/sh\n")
    assert not initramfs.is_static_elf(not_elf)
    if Path("/bin/busybox").is_file():
        assert initramfs.is_static_elf(Path("/bin/busybox"))


def test_archive_members_put_parents_first(tmp_path: Path) -> None:
    for d in ("bin", "lib/modules", "etc/boxlite"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "init").write_text("")
    (tmp_path / "lib/modules/ext4.ko").write_text("")
    (tmp_path / "bin/sh").symlink_to("busybox")
    members = initramfs.archive_members(tmp_path)
    assert members[0] == "."
    assert len(members) == len(set(members))
    for member in members[1:]:
        parent = os.path.dirname(member)
        if parent:
            assert members.index(parent) < members.index(member)


def test_image_size_leaves_room(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/big").write_bytes(b"x" * 100_000)
    (tmp_path / "d/link").hardlink_to(tmp_path / "d/big")
    (tmp_path / "short").symlink_to("d/big")
    data, inodes = agentroot.tree_usage(tmp_path)
    assert data == 4096 * 25 + 4096  # the file once (25 blocks) and the directory
    assert inodes == 4  # root, d, big (once), short
    size, inode_count = agentroot.image_size(tmp_path)
    assert size > data and size % 2**20 == 0
    assert inode_count > inodes


def test_current_symlink_is_relative_and_replaced(tmp_path: Path) -> None:
    build.point_current(tmp_path, "aaaa")
    build.point_current(tmp_path, "bbbb")
    assert os.readlink(tmp_path / "current") == "bbbb"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current"]


def test_built_payload_is_a_fast_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is checked, locked or built: it only points `current` at the payload."""
    monkeypatch.setenv("BOXLITE_PAYLOAD_CACHE", str(tmp_path))
    digest = payload_mod.source_hash()
    (tmp_path / digest).mkdir()
    (tmp_path / digest / "manifest.json").write_text("{}")

    def not_now(*args: object) -> None:
        raise AssertionError("a built payload is being built again")

    for step in ("raise_on_sigterm", "check_host", "build_locked"):
        monkeypatch.setattr(build, step, not_now)
    assert build.main([]) == 0
    assert os.readlink(tmp_path / "current") == digest
    assert not (tmp_path / "build.lock").exists()


def test_manifest_has_the_agreed_keys() -> None:
    built = build.Built(kernel_version="6.1.0-56-amd64",
                        kernel_package="linux-image-6.1.0-56-amd64=6.1.192-2",
                        agent_root_bytes=1, python="3.11.2", grpcio="1.76.0",
                        protobuf="6.33.5", initrd_modules=["virtio_ring"],
                        default_image_digest="sha256:00")
    data = build.manifest("0123456789abcdef", built)
    for key in ("format", "hash", "kernel_version", "kernel_package", "built_at",
                "agent_root_bytes", "python", "grpcio", "protobuf"):
        assert key in data
    assert data["format"] == 1
    assert data["default_image"] == {"ref": payload_mod.DEFAULT_IMAGE, "digest": "sha256:00"}
