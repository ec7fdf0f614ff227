"""A warm start that fails is retried cold; its template is discarded unless the VM
was killed from outside (a signal is never the template's fault)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from boxlite_cli.errors import VM_SIGNALLED
from boxlite_cli.runtime.runtime import Runtime, WarmStartFailed
from boxlite_cli.state.paths import Paths
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status

BOX_ID = "cd" * 32


@pytest.mark.parametrize(("reason", "kept"), [
    (f"the box failed to start: the VM stopped during boot ({VM_SIGNALLED} 9)", True),
    ("the box failed to start: the VM stopped during boot (the VM powered off: Guest moved "
     "used index from 7 to 0)", False),
])
def test_a_failed_warm_start_keeps_its_template_only_when_the_vm_was_killed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reason: str, kept: bool) -> None:
    monkeypatch.delenv("BOXLITE_WARM", raising=False)
    home = tmp_path / "home"
    rt = Runtime(Paths(data=home, config=home / "config", cache=home / "cache"),
                 warn=(warned := []).append)
    rt.boxes.create_dir(BOX_ID)
    rt.boxes.write(BoxState(id=BOX_ID, name="web", status=Status.CREATED, config=BoxConfig(
        image="localhost/debian:bookworm", image_id="sha256:" + "1" * 64, rootfs_base="",
        process=ProcessSpec(argv=["true"]))))
    template = tmp_path / "template"
    template.mkdir()
    tries: list[bool] = []

    def start(ref: str, foreground: bool, cold: bool, **_: Any) -> str:
        tries.append(cold)
        if not cold:
            raise WarmStartFailed(reason, template)
        return "started cold"

    monkeypatch.setattr(rt, "_start", start)
    assert rt._start_or_retry(BOX_ID, False, False, None, None, None, False, False) == (
        "started cold")
    assert tries == [False, True]
    assert template.exists() == kept
    assert warned == [f"the warm start failed ({reason}); starting cold"
                      + ("" if kept else " and discarding its template")]


def test_a_host_port_taken_under_a_warm_start_leaves_the_box_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another box took the port between the check and QEMU's bind (two CI jobs at
    once): the start's line is the port's, and the box is created, as when the check
    refuses it (it was "Exited (125)", with QEMU's words as its error)."""
    import socket

    from boxlite_cli.errors import Conflict
    from boxlite_cli.state.network import NetworkConfig, PortMapping

    monkeypatch.delenv("BOXLITE_WARM", raising=False)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    home = tmp_path / "home"
    rt = Runtime(Paths(data=home, config=home / "config", cache=home / "cache"))
    rt.boxes.create_dir(BOX_ID)
    network = NetworkConfig(ports=[PortMapping(80, host_port=port)])
    rt.boxes.write(BoxState(id=BOX_ID, name="web", status=Status.CREATED, config=BoxConfig(
        image="localhost/debian:bookworm", image_id="sha256:" + "1" * 64, rootfs_base="",
        process=ProcessSpec(argv=["true"]), network=network)))

    def start(ref: str, foreground: bool, cold: bool, **_: Any) -> str:
        with rt.boxes.lock(BOX_ID):  # (what the failed start's shim recorded)
            state = rt.boxes.read(BOX_ID)
            state.status, state.exit_code, state.error = Status.EXITED, 125, "qemu: hostfwd"
            rt.boxes.write(state)
        raise WarmStartFailed("the VM could not be restored: qemu: hostfwd", tmp_path / "t")

    monkeypatch.setattr(rt, "_start", start)
    try:
        with pytest.raises(Conflict, match="the host port is already in use"):
            rt._start_or_retry(BOX_ID, False, False, None, None, None, False, False)
    finally:
        taken.close()
    state = rt.boxes.read(BOX_ID)
    assert (state.status, state.exit_code, state.error) == (Status.CREATED, None, None)

