"""Running a box's main process in the foreground, as `run` and `start -a` do."""

from __future__ import annotations

import contextlib
import json
import os
import select
import threading
import time
from pathlib import Path

from boxlite_cli.errors import BoxliteError, OutputLost, VmError
from boxlite_cli.runtime.runtime import MAIN, Runtime, StartResult
from boxlite_cli.runtime.terminal import forwarding_signals

STOP_WAIT_S = 60.0


def attach_main(rt: Runtime, box_id: str, stdin: bool, tty: bool) -> int:
    """Stream the main process until it ends; wait for the box to stop; its exit code."""
    from boxlite_cli.agent.client import AgentClient
    from boxlite_cli.runtime.session import Session

    client = AgentClient.connect(f"unix:{rt.files(box_id).agent_socket}")
    try:
        try:
            code = Session(client, MAIN, stdin=stdin, tty=tty).run().exit_code
        except BoxliteError:
            # The VM went away under us: the shim records why.
            rt.wait_stopped(box_id, STOP_WAIT_S)
            state = rt.boxes.read(box_id) if rt.boxes.box_dir(box_id).exists() else None
            if state is None or state.exit_code is None:
                raise
            code = state.exit_code
    finally:
        client.close()
    rt.wait_stopped(box_id, STOP_WAIT_S)
    return code


def _forward(agent_socket: Path, signum: int) -> None:
    from boxlite_cli.agent.client import AgentClient  # only when a signal comes

    with contextlib.suppress(BoxliteError):
        client = AgentClient.connect(f"unix:{agent_socket}")
        try:
            client.signal(MAIN, signum)
        finally:
            client.close()


def _read_until_eof(fd: int, data: bytes, deadline_after_exit: float) -> bytes:
    """The shim's reports: read until it exits (EOF), at most `deadline_after_exit`
    seconds once its exit report came."""
    deadline: float | None = None
    while True:
        if deadline is None and b"exit_code" in data:
            deadline = time.monotonic() + deadline_after_exit
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return data  # the shim takes too long to stop: the answer is known already
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


def wait_direct(rt: Runtime, box_id: str, started: StartResult) -> int:
    """A run whose output the shim writes to our stdout and stderr itself: forward
    signals, read how the main process ended from the shim, wait for the box to stop."""
    assert started.exit_pipe is not None
    try:
        agent_socket = rt.files(box_id).agent_socket
        with forwarding_signals(lambda signum: threading.Thread(
                target=_forward, args=(agent_socket, signum), daemon=True).start()):
            data = _read_until_eof(started.exit_pipe, started.pending, STOP_WAIT_S)
    finally:
        os.close(started.exit_pipe)
    # The shim closes the pipe once the box is stopped (and removed, with --rm).
    for line in data.splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            report = json.loads(line)
            if report.get("exit_code") is not None:
                if report.get("output_error"):
                    raise OutputLost(str(report["output_error"]), int(report["exit_code"]))
                return int(report["exit_code"])
    # The shim ended without a word: what it recorded, if anything.
    rt.wait_stopped(box_id, STOP_WAIT_S)
    state = rt.boxes.read(box_id) if rt.boxes.box_dir(box_id).exists() else None
    if state is None or state.exit_code is None:
        raise VmError("the box's shim ended without reporting how the command ended",
                      hint=f"see {rt.files(box_id).shim_log}")
    return state.exit_code
