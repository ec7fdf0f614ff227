"""Running a box's main process in the foreground, as `run` and `start -a` do."""

from __future__ import annotations

import contextlib
import json
import os
import select
import threading
import time
from pathlib import Path

from boxlite_cli.errors import (
    SHIM_SIGNALLED,
    BoxliteError,
    BoxRestarted,
    BoxStopped,
    Conflict,
    OutputLost,
    SignalEndedWait,
    VmError,
)
from boxlite_cli.runtime.detachkeys import DETACH_KEYS
from boxlite_cli.runtime.runtime import MAIN, Runtime, StartResult
from boxlite_cli.runtime.terminal import (
    FORWARDED_SIGNALS,
    PROXIED_SIGNALS,
    forwarding_signals,
    interrupt,
)

STOP_WAIT_S = 60.0


def attach_main(rt: Runtime, box_id: str, stdin: bool, tty: bool,
                started: StartResult | None = None, detach_keys: bytes = DETACH_KEYS,
                sig_proxy: bool = True) -> int:
    """Stream the main process until it ends; wait for the box to stop; its exit code.
    `detach_keys` end the session of a tty with input (the box runs on). `started`: a
    start with the shim's report pipe (Runtime.start's exit_report), read for why the
    box stopped when the stream broke; the pipe is closed here."""
    exit_pipe = started.exit_pipe if started is not None else None
    from boxlite_cli.runtime.session import Session

    try:
        client, _ = rt.connect_run(box_id)
        try:
            # (Ctrl-P Ctrl-Q leaves a tty box running, as docker run -it's: its shim
            # takes the output over, for `logs` and `attach`; Session raises Detached)
            code = Session(client, MAIN, stdin=stdin, tty=tty, sig_proxy=sig_proxy,
                           detach_keys=detach_keys if stdin and tty else None).run().exit_code
        except SignalEndedWait:  # (a signal ended this wait, not the box: said as it is)
            raise
        except OutputLost:  # (the process ended, its output not all written: said, not
            rt.wait_stopped(box_id, STOP_WAIT_S)  # taken for the VM's loss below)
            raise
        except BoxRestarted:  # (another shell's `restart`: that run ended, another began)
            raise Conflict(f"box {_name(rt, box_id)} was restarted: the run this followed "
                           "ended", hint="attach to the new run: boxlite attach "
                           + _name(rt, box_id)) from None
        except BoxliteError:
            # The VM went away under us: the shim says why (and records it).
            if started is not None and exit_pipe is not None:
                reported = _exit_report(_read_until_eof(exit_pipe, started.pending, STOP_WAIT_S))
                if reported is not None:
                    return reported
            rt.wait_stopped(box_id, STOP_WAIT_S)
            state = rt.boxes.read(box_id) if rt.boxes.box_dir(box_id).exists() else None
            if state is None or state.exit_code is None:
                raise
            return _recorded_exit(state.exit_code, state.error)
        finally:
            client.close()
    finally:
        if exit_pipe is not None:
            os.close(exit_pipe)
    rt.wait_stopped(box_id, STOP_WAIT_S)
    return code


def _name(rt: Runtime, box_id: str) -> str:
    with contextlib.suppress(BoxliteError, OSError):
        return rt.boxes.read(box_id).name
    return box_id[:12]


def _recorded_exit(code: int, error: str | None) -> int:
    """The exit code the box recorded; raised as BoxStopped, with that code, when the
    box stopped under its command for a reason (boxlite failed: 125; its QEMU was
    killed: 137), which the command's own exit never has. A box that boxlite was asked
    to end at once (rm -f) ends as a killed command does: its code, no word."""
    if code != 0 and error and error != SHIM_SIGNALLED:
        raise BoxStopped(error, code)
    return code


def _exit_report(data: bytes) -> int | None:
    """The exit code in the shim's reports (None when there is none); a lost output or
    a box that stopped under its command raises."""
    for line in data.splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            report = json.loads(line)
            if report.get("exit_code") is not None:
                code = int(report["exit_code"])
                if report.get("output_error"):
                    raise OutputLost(str(report["output_error"]), code)
                return _recorded_exit(code, report.get("error"))
    return None


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


def wait_direct(rt: Runtime, box_id: str, started: StartResult, sig_proxy: bool = True) -> int:
    """A run whose output the shim writes to our stdout and stderr itself: forward
    signals (not `sig_proxy`: they end this command, the box runs on), read how the
    main process ended from the shim, wait for the box to stop."""
    assert started.exit_pipe is not None
    try:
        agent_socket = rt.files(box_id).agent_socket
        with forwarding_signals(lambda signum: threading.Thread(
                target=_forward, args=(agent_socket, signum), daemon=True).start()
                if sig_proxy else interrupt(signum),
                PROXIED_SIGNALS if sig_proxy else FORWARDED_SIGNALS):
            data = _read_until_eof(started.exit_pipe, started.pending, STOP_WAIT_S)
    finally:
        os.close(started.exit_pipe)
    # The shim closes the pipe once the box is stopped (and removed, with --rm).
    reported = _exit_report(data)
    if reported is not None:
        return reported
    # The shim ended without a word: what it recorded, if anything.
    rt.wait_stopped(box_id, STOP_WAIT_S)
    state = rt.boxes.read(box_id) if rt.boxes.box_dir(box_id).exists() else None
    if state is None or state.exit_code is None:
        raise VmError("the box's shim ended without reporting how the command ended",
                      hint=f"see {rt.files(box_id).shim_log}")
    return _recorded_exit(state.exit_code, state.error)
