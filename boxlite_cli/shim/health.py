"""The shim's health monitor: runs a box's health check in it while it runs, and
records the health its results make (the rules: state/health.py)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable

from boxlite_cli.agent.client import AgentClient, Started
from boxlite_cli.errors import AgentError, BoxliteError
from boxlite_cli.state.health import (
    MAX_OUTPUT_BYTES,
    Health,
    HealthConfig,
    HealthResult,
    cut_output,
    next_check_in,
    recorded,
)
from boxlite_cli.state.records import ProcessSpec

log = logging.getLogger("boxlite.shim")
HEALTH_EXEC_ID = "healthcheck"  # (each check replaces the last one's in the agent's table)
# What a check may take beyond its timeout to be started, killed and reaped by the
# agent before the monitor gives up on it (a guest too busy to answer).
CHECK_SLACK_S = 30.0
UNREADABLE = -1  # docker's exit code of a check that could not run or ran too long
STALE_WAIT_S = 10.0


def _seconds(value: float) -> str:
    """A duration as Go prints one (30s, 1m30s, 500ms), for the timeout's message."""
    if value < 1:
        return f"{value * 1000:g}ms"
    minutes, seconds = divmod(value, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return text + f"{seconds:g}s"


def run_check(client: AgentClient, config: HealthConfig, process: ProcessSpec) -> HealthResult:
    """One run of the check in the box, as the box's user, in its working directory,
    with its environment; its stdout and stderr are one output."""
    start = time.time()

    def begin() -> Started:
        return client.exec(argv=config.argv, env=process.env, cwd=process.cwd,
                           user=process.user, tty=False, rows=0, cols=0, stdin=False,
                           timeout_s=config.timeout, hold_output=True,
                           exec_id=HEALTH_EXEC_ID, merge_stderr=True)

    try:
        try:
            started = begin()
        except AgentError as e:
            if "already exists" not in e.message:
                raise
            end_stale_check(client)  # (one a checkpoint was taken in, resumed with the box)
            started = begin()
        if started.error_exit_code:
            return HealthResult(start, time.time(), started.error_exit_code, started.error)
        output = bytearray()
        for _stream, data in client.attach(started.exec_id):
            if len(output) <= MAX_OUTPUT_BYTES:
                output += data[:MAX_OUTPUT_BYTES + 1 - len(output)]
        ended = client.wait(started.exec_id, timeout=config.timeout + CHECK_SLACK_S)
    except BoxliteError as e:
        return HealthResult(start, time.time(), UNREADABLE, f"the check could not run: {e}")
    text = cut_output(bytes(output))
    if ended.timed_out:
        message = f"Health check exceeded timeout ({_seconds(config.timeout)})"
        return HealthResult(start, time.time(), UNREADABLE,
                            f"{message}: {text}" if text else message)
    return HealthResult(start, time.time(), ended.exit_code, text)  # (128+N: killed by N)


def end_stale_check(client: AgentClient) -> None:
    """Kill the check that runs under our exec id (one a checkpoint of the box was taken
    in: its VM resumed with it), with its process group, and wait for its end."""
    with contextlib.suppress(BoxliteError):
        client.signal(HEALTH_EXEC_ID, signal.SIGKILL, group=True)
        client.wait(HEALTH_EXEC_ID, timeout=STALE_WAIT_S)


class HealthMonitor:
    """A thread that checks the box every interval until stopped; `record` is given
    the health after each check, `paused` says to skip a check (a paused VM)."""

    def __init__(self, client: AgentClient, config: HealthConfig, process: ProcessSpec,
                 started_at: float, health: Health, record: Callable[[Health], object],
                 paused: Callable[[], bool]) -> None:
        self.client = client
        self.config = config
        self.process = process
        self.started_at = started_at
        self.health = health
        self.record = record
        self.paused = paused
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="health", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """No check from now on, and no result recorded (one running is not waited for:
        the box is going)."""
        self.stopped.set()

    def run(self) -> None:
        end_stale_check(self.client)  # (a box resumed from a checkpoint taken mid-check)
        while not self.stopped.wait(next_check_in(self.config, self.health, self.started_at,
                                                  time.time())):
            if self.paused():
                continue
            result = run_check(self.client, self.config, self.process)
            if self.stopped.is_set():
                return  # (the box ended under it: not a result)
            health = recorded(self.health, result, self.config, self.started_at)
            if health.status != self.health.status:
                log.info("health: %s (check exit code %d)", health.status, result.exit_code)
            self.health = health
            with contextlib.suppress(BoxliteError, OSError):
                self.record(health)
