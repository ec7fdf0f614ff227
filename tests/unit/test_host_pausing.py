"""pause against a command reading the box through its guest (cp, commit, diff): it is
refused while one does, instead of leaving that command waiting for the unpause."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from boxlite_cli.errors import Conflict
from boxlite_cli.runtime.pausing import no_guest_readers, reading_through_guest
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec

STATE = BoxState(id="b" * 64, name="web", config=BoxConfig(
    image="img", image_id="sha256:" + "0" * 64, rootfs_base="", process=ProcessSpec(["sh"])))


def test_a_pause_is_refused_while_a_command_reads_through_the_guest(tmp_path: Path) -> None:
    with reading_through_guest(tmp_path), reading_through_guest(tmp_path), \
            pytest.raises(Conflict) as e, no_guest_readers(STATE, tmp_path):  # (many readers)
        pass
    assert e.value.message == ("box web is being read through its guest (a commit, cp or "
                               "diff): it cannot be paused under it")
    assert e.value.hint == "pause it once that is done"
    with no_guest_readers(STATE, tmp_path):  # (they are done)
        pass


def _read_until_told(box_dir: Path, holding: multiprocessing.Event,  # type: ignore[type-arg]
                     done: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    with reading_through_guest(box_dir):
        holding.set()
        done.wait(30)


def test_a_reader_in_another_process_counts_and_its_death_lets_go(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # (a fork of pytest would copy its grpc threads)
    holding, done = ctx.Event(), ctx.Event()
    reader = ctx.Process(target=_read_until_told, args=(tmp_path, holding, done))
    reader.start()
    try:
        assert holding.wait(30)
        with pytest.raises(Conflict), no_guest_readers(STATE, tmp_path):
            pass
    finally:
        reader.kill()  # (killed, not finished: the kernel drops its lock)
        reader.join(30)
    with no_guest_readers(STATE, tmp_path):
        pass


@pytest.mark.parametrize(("qemu_state", "stopped"), [
    ("paused", True), ("io-error", True), ("running", False), ("shutdown", False)])
def test_unpause_takes_a_vm_stopped_by_a_full_host_disk_as_stopped(
        monkeypatch: pytest.MonkeyPatch, qemu_state: str, stopped: bool) -> None:
    """QEMU stops a VM whose disk write the host's full disk refused ("io-error"): ps says
    Up, every exec waits, and `unpause` said "not paused" (tester AR). It continues it."""
    import types

    import boxlite_cli.runtime.pausing as pausing

    control = types.SimpleNamespace(info=lambda: {"state": qemu_state})
    driver = types.SimpleNamespace(control=lambda vm: control)
    monkeypatch.setattr(pausing.Launch, "load", lambda path: types.SimpleNamespace(
        driver="qemu", vm=None))
    monkeypatch.setattr(pausing, "get_driver", lambda name: driver)
    rt = types.SimpleNamespace(files=lambda box_id: types.SimpleNamespace(dir=Path("/x")))
    assert pausing._vm_stopped(rt, "b" * 64) is stopped  # type: ignore[arg-type]
