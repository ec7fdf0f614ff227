"""A VM that QEMU stopped on a write the host's full disk refused (io-error): its shim
records why (HeldWatch), ps and inspect say it, and what needs the guest is refused at
once with the fix (instead of waiting out its timeout)."""

from __future__ import annotations

import threading

import pytest

from boxlite_cli.cli.dockerview import docker_state
from boxlite_cli.cli.ps import status_text
from boxlite_cli.errors import Conflict
from boxlite_cli.runtime.pausing import refuse_paused
from boxlite_cli.shim.heldwatch import HeldWatch
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status

WHY = ("box web's VM is stopped: its disk could not be written (the host's disk is full); "
       "free space there, then: boxlite unpause web")


def _state(held: str | None, status: Status = Status.RUNNING) -> BoxState:
    return BoxState(id="a" * 64, name="web", status=status, held=held, started_at=1.0,
                    config=BoxConfig(image="i", image_id="sha256:x", rootfs_base="",
                                     process=ProcessSpec(argv=["true"])))


def test_the_watch_records_each_change_of_the_vms_run_state() -> None:
    answers = iter([None, WHY, WHY, "(cleared by an unpause)", WHY, None, None])
    recorded: list[str | None] = []
    state: list[str | None] = [None]
    done = threading.Event()

    def query() -> str | None:
        answer = next(answers, None)
        if answer == "(cleared by an unpause)":  # (the VM stopped again at once: the
            state[0] = None                        # state's word is what counts)
            answer = WHY
        if len(recorded) == 3:
            done.set()
        return answer

    def record(why: str | None) -> None:
        recorded.append(why)
        state[0] = why

    watch = HeldWatch(query, record, lambda: state[0], interval=0.01)
    watch.start()
    assert done.wait(10)
    watch.stop()
    watch.thread.join(10)
    assert recorded == [WHY, WHY, None]  # (stopped; again after the unpause; running)


def test_ps_and_inspect_say_it_while_it_runs() -> None:
    held = _state(WHY)
    assert status_text(held).endswith(" (Stopped: host disk full)")
    assert docker_state(held, 0)["Error"] == WHY
    assert docker_state(held, 0)["Status"] == "running"
    ended = _state(WHY, Status.EXITED)  # (meaningful while it runs only)
    assert not ended.is_held and docker_state(ended, 0)["Error"] == ""
    assert status_text(_state(None)).startswith("Up ") and "(" not in status_text(_state(None))


def test_what_needs_the_guest_is_refused_at_once_with_the_fix() -> None:
    with pytest.raises(Conflict) as e:
        refuse_paused(_state(WHY), "exec in it")
    assert e.value.message == ("box web's VM is stopped: its disk could not be written (the "
                               "host's disk is full): cannot exec in it")
    assert e.value.hint == "free space there, then: boxlite unpause web"
    refuse_paused(_state(None), "exec in it")  # (no error)

