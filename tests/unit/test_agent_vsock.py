"""Guest side: which vsock transports the agent loads, and that it loads none on QEMU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent import channels


def test_transports_for_each_vm() -> None:
    assert channels.vsock_modules(has_device=False, loopback=False) == []
    assert channels.vsock_modules(True, False) == ["vmw_vsock_virtio_transport"]
    assert channels.vsock_modules(False, True) == ["vsock_loopback"]
    assert channels.vsock_modules(True, True) == ["vmw_vsock_virtio_transport", "vsock_loopback"]


def test_cmdline_flag(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 boxlite.vsock_loopback=1 quiet\n")
    assert channels._cmdline_has(channels.LOOPBACK_FLAG, str(cmdline))
    cmdline.write_text("console=ttyS0 boxlite.vsock_loopback=10\n")
    assert not channels._cmdline_has(channels.LOOPBACK_FLAG, str(cmdline))
    assert not channels._cmdline_has(channels.LOOPBACK_FLAG, str(tmp_path / "missing"))


def test_vsock_device_detection(tmp_path: Path) -> None:
    for name, dev_id in (("virtio0", "0x0002"), ("virtio1", "0x0013")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "device").write_text(dev_id + "\n")
    assert channels._has_vsock_device(str(tmp_path))
    (tmp_path / "virtio1" / "device").write_text("0x0003\n")
    assert not channels._has_vsock_device(str(tmp_path))


def test_no_vsock_means_nothing_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[object] = []
    monkeypatch.setattr(channels, "_has_vsock_device", lambda: False)
    monkeypatch.setattr(channels, "_cmdline_has", lambda flag: False)
    monkeypatch.setattr(channels.subprocess, "run", lambda *a, **k: ran.append(a))
    assert channels.listen_vsock() is None
    assert ran == []
