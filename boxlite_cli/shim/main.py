"""The shim: one per running box, started detached by the runtime.

It launches the VMM as its child, waits for the guest agent, initialises the guest,
starts the box's main process, serves the agent to any number of CLI processes on
agent.sock, and when the main process ends (or the VM dies, or it is told to stop)
shuts the VM down and writes the exit record into the box state.

Usage: python -m boxlite_cli.shim BOX_DIR READY_FD
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from boxlite_cli.agent.client import (
    AgentClient,
    ExecResult,
    Started,
    agent_error,
    open_channel,
)
from boxlite_cli.agent.clocksync import clock_setting
from boxlite_cli.agent.pb import agent_pb2 as pb
from boxlite_cli.agent.sink import OutputSink
from boxlite_cli.errors import SHIM_SIGNALLED, VM_SIGNALLED, BoxliteError, UsageError
from boxlite_cli.fdio import GIVE_UP_POLL_S, own_nonblocking, reader_gone
from boxlite_cli.payload import ROOTFS_DISK_SERIAL
from boxlite_cli.shim.backlog import widen_listen_backlogs
from boxlite_cli.shim.child import Process
from boxlite_cli.shim.consolecap import ConsoleBound
from boxlite_cli.shim.execserver import ExecServer
from boxlite_cli.shim.health import HealthMonitor
from boxlite_cli.shim.heldwatch import HeldWatch
from boxlite_cli.shim.logframes import LogWriter
from boxlite_cli.shim.proxy import AttachTracker, ProxyHandler
from boxlite_cli.shim.relay import StreamRelay
from boxlite_cli.shim.vmmproc import BootFailed, VmmProcess, finish_restore, start_vmm
from boxlite_cli.shim.vmspec import ROOTFS_LAYER, TEMPLATE_META, Launch
from boxlite_cli.shim.warmup import Adopted
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.boxes import LOCK_FILE, BoxStore
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.capabilities import drop_mask
from boxlite_cli.state.flock import FileLock, Timeout
from boxlite_cli.state.health import Health, started
from boxlite_cli.state.pidfile import ProcessRecord, write_pidfile
from boxlite_cli.state.records import BoxState, Status, load_state
from boxlite_cli.state.reserve import keep_reserve, written_with_reserve
from boxlite_cli.state.restartpolicy import backoff_s, restarts
from boxlite_cli.state.ulimits import parse_ulimit
from boxlite_cli.state.volumes import VolumeStore, remove_unused
from boxlite_cli.vmm.base import NET_USER
from boxlite_cli.vmm.drivers import get_driver

log = logging.getLogger("boxlite.shim")
MAIN = "main"
# How long the output of a foreground main process waits for its CLI to attach.
ATTACH_GRACE_S = 15.0
# How long the shim tries to take the main process's output over from a foreground
# client that left (the agent lets go of that client's attach meanwhile).
TAKE_OVER_S = 5.0
WAIT_DELIVERY_S = 5.0  # the longest a detached box's VM waits for a Wait's answer to go out
# Once a detached box's main process ended, its VM waits for the rest of what it wrote
# to reach the log. That rest is bounded: the agent ends the stream with what was in
# the pipe when the process exited (a background child that writes on is not waited
# for, and does not keep the box up: docker's ends with its main process too). Under
# emulation the copy can take several seconds, so the wait goes on in slices of
# LOG_DRAIN_S while each one copied something; LOG_DRAIN_MAX_S bounds a stuck stream.
LOG_DRAIN_S = 3.0
LOG_DRAIN_MAX_S = 60.0
READY_MARKER = b"boxlite-agent: ready"
SHUTDOWN_TIMEOUT_S = 10.0
# After the warm-up call, time for the guest to see the host hang up before a save.
WARM_SETTLE_S = 0.3


TELLING = ("boxlite-init:", "boxlite-agent:", "Kernel panic")


GUEST_LINE_MAX = 300  # characters of one console line quoted in an error


def guest_words(text: str) -> str:
    """Text the guest wrote (anything, from root in the box), fit to be quoted in a
    message: control characters escaped, cut to GUEST_LINE_MAX."""
    cut = text[:GUEST_LINE_MAX] + ("..." if len(text) > GUEST_LINE_MAX else "")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100
                   else f"\\u{ord(c):04x}" for c in cut)


def console_tail(path: Path, lines: int = 3) -> list[str]:
    """The last lines the guest printed, the most telling one last (why it failed)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            text = f.read(8192).decode(errors="replace")
    except OSError:
        return []
    all_lines = [guest_words(line.strip()) for line in text.splitlines() if line.strip()]
    telling = [line for line in all_lines if any(t in line for t in TELLING)]
    tail = all_lines[-lines:]
    if telling and telling[-1] not in tail[-1:]:
        tail = [*tail[1:], telling[-1]]
    return tail


AGENT_ENDED = re.compile(r"boxlite-init: the agent exited \(([^)]*)\)")


KERNEL_PANIC = re.compile(r"Kernel panic - not syncing: ?(.*)")


def agent_ended(tail: list[str]) -> str | None:
    """Why the guest powered off, when its agent ended (init's last words) or its
    kernel panicked (the kernel's)."""
    for line in reversed(tail):
        if found := KERNEL_PANIC.search(line):
            # (the guest's own words, quoted: root in the box can write that line too)
            return (f"the guest kernel panicked; its console says: "
                    f"\"{found.group(1).strip() or 'no reason given'}\"")
        if found := AGENT_ENDED.search(line):
            return (f"the guest agent was {found.group(1)} and the VM powered off (root "
                    "in the box keeping CAP_SYS_ADMIN can do that, through a sysrq-trigger)"
                    if found.group(1).startswith("killed") else
                    f"the guest agent ended ({found.group(1)}) and the VM powered off")
    return None


# `<data>/failed/` keeps the console and shim logs of the failed starts of `--rm` boxes
# (the box itself is gone): the newest ones only, so a retry loop cannot fill the disk.
KEEP_FAILED_LOGS = 64


def prune_kept_logs(directory: Path, keep: int) -> None:
    """Delete all but the `keep` newest files of `directory`."""
    entries = []
    for entry in os.scandir(directory):
        with contextlib.suppress(OSError):
            entries.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.path))
    for _, path in sorted(entries, reverse=True)[max(keep, 0):]:
        with contextlib.suppress(OSError):
            os.unlink(path)


class Shim:
    def __init__(self, files: BoxFiles, ready_fd: int, hold_fd: int = -1,
                 early: VmmProcess | BaseException | None = None,
                 output_fds: tuple[int, ...] | None = None,
                 adopted: Adopted | None = None) -> None:
        self.files = files
        self.early = early
        self.adopted = adopted  # a spare's VM and agent connection (shim/spare.py)
        self.ready_fd = ready_fd
        self.hold_fd = hold_fd
        self.launch = Launch.load(files.dir / "vm.json")
        self.driver = get_driver(self.launch.driver)
        self.vmm: Process | None = None
        self.ram_fd: int | None = None  # the memfd of a template-saving VM's RAM
        self.relay: StreamRelay | None = None
        self.tracker = AttachTracker(on_abandoned=self.attach_abandoned)
        self.client: AgentClient | None = None  # the shim's own, once the box runs
        self.main_ended = threading.Event()
        self.logger_lock = threading.Lock()
        self.server: grpc.Server | None = None
        self.stopping = threading.Event()
        self.log_lock = threading.Lock()
        self.logged = 0  # bytes of output the log took (drain_log)
        self.log = LogWriter(self.files.container_log, self.launch.log_max_bytes,
                             self.launch.log_files)
        self.killed_by: int | None = None
        self.deliverer: threading.Thread | None = None
        self.give_up_output = threading.Event()  # (watch_for_stop)
        self.logger: threading.Thread | None = None  # a detached box's log_output
        self.output_error: str | None = None  # why deliver_output could not write
        self.exec_server: ExecServer | None = None
        self.health_monitor: HealthMonitor | None = None
        self.held_watch: HeldWatch | None = None
        # (A prestarted shim got them under other numbers than the CLI's.)
        self.output_fds = self.launch.output_fds if output_fds is None else output_fds

    # state ----------------------------------------------------------------------------

    def update(self, **changes: Any) -> BoxState:
        with FileLock(str(self.files.dir / LOCK_FILE), timeout=30, create_parents=False):
            state = load_state(self.files.state)
            for key, value in changes.items():
                setattr(state, key, value)
            written_with_reserve(lambda: write_json_atomic(
                self.files.state, state.to_json(), durable=not state.config.auto_remove),
                self.files.space_reserve)
            return state

    def report(self, keep_open: bool = False, **message: Any) -> None:
        """Tell the starting CLI how the start went (one JSON line on the ready pipe);
        `keep_open`: a direct-output CLI hears how the main process ended there too."""
        if self.ready_fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, (json.dumps(message) + "\n").encode())
        if not keep_open:
            self.close_ready()
            if self.deliverer is None:
                self.close_output()  # a start that failed: the CLI's output is done

    def close_output(self) -> None:
        """Let go of a direct-output CLI's stdout and stderr (a `$(boxlite run ...)`
        waits for every holder of that pipe)."""
        fds, self.output_fds = self.output_fds, ()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close_ready(self) -> None:
        if self.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.ready_fd)
            self.ready_fd = -1

    # VM -------------------------------------------------------------------------------

    def start_vmm(self) -> None:
        """Start the VMM (unless `python -m boxlite_cli.shim` already did), and
        finish a restore (unless that was done early too): a restored VM comes back
        paused and is resumed. The agent is reached over new connections afterwards."""
        early, self.early = self.early, None
        if isinstance(early, BaseException):
            raise early
        started = early or start_vmm(self.files, self.launch, self.driver)
        log.info("starting VMM: %s", " ".join(started.command))
        self.vmm = started.process
        ConsoleBound(self.files.console_log).start()  # (for this process's life)
        self.ram_fd = started.ram_fd
        try:
            if started.restore_error is not None:
                raise started.restore_error
            if self.launch.vm.restore_from and not started.restored:
                finish_restore(started, self.launch, self.driver)
        except BoxliteError as e:
            if self.vmm.poll() is None:
                raise
            raise BootFailed(f"the VM could not be restored: {self.vmm_failure()}") from e

    def agent_target(self) -> str:
        """The gRPC target of the guest agent: the VMM's own unix socket when it has
        one, else a relay that opens a new agent stream (driver's connect) per connection."""
        channel = self.driver.agent_channel(self.launch.vm)
        log.info("agent channel: %s", channel.description)
        if channel.unix_path is not None:
            return f"unix:{channel.unix_path}"
        if self.relay is None:
            self.relay = StreamRelay(self.files.sockets / "relay.sock", channel.connect).start()
        return self.relay.target

    def vmm_failure(self) -> str:
        """What the VMM said last (its log's last three lines: QEMU says why a restore
        failed two lines before "load of migration failed")."""
        with contextlib.suppress(OSError):
            lines = (self.files.dir / "vmm.log").read_text(errors="replace").strip().splitlines()
            if lines:
                return "; ".join(line.strip() for line in lines[-3:])
        return self.vmm_exit_reason()

    def vmm_exit_reason(self) -> str:
        assert self.vmm is not None
        rc = self.vmm.poll()
        tail = ""
        with contextlib.suppress(OSError):
            lines = (self.files.dir / "vmm.log").read_text(errors="replace").strip().splitlines()
            tail = f": {lines[-1]}" if lines else ""
        if rc is None:
            return "the VM is still running"
        if rc < 0:
            return f"{VM_SIGNALLED} {-rc}"
        if rc == 0:  # (the guest powered it off, or its kernel stopped: -no-reboot)
            return f"the VM powered off{tail}"
        return f"the VM exited with status {rc}{tail}"

    def wait_for_console(self, marker: bytes, deadline: float) -> bool:
        """Wait for the agent's ready line on the console before connecting (True once
        seen; False when the VM stopped, the box is being stopped, or time ran out).

        The agent channel is one byte stream: connecting before the guest listens lets
        a stale HTTP/2 preface (from a timed-out early attempt) reach the agent ahead of
        the live one, which wedges the session. So the first connection is made only
        once the agent serves.
        """
        assert self.vmm is not None
        seen = b""
        with open(self.launch.vm.console_log, "rb") as console:
            while time.monotonic() < deadline:
                seen = (seen + console.read())[-4096:]
                if marker in seen:
                    return True
                if self.vmm.poll() is not None or self.stopping.is_set():
                    return False  # reported by wait_for_agent
                time.sleep(0.02)
        return False

    def save_template(self, target: Path) -> None:
        """Save the just-booted VM as a warm-start template (pause, save, resume).

        Nothing box-specific has happened in the guest yet. Best effort: a failure
        costs only the warm starts; concurrent first boots leave it to one of them."""
        lock = FileLock(str(target) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        control = self.driver.control(self.launch.vm)
        try:
            if target.exists():
                return
            started = time.monotonic()
            partial.mkdir(parents=True, exist_ok=True)
            control.snapshot(partial, ram_fd=self.ram_fd)
            if self.launch.prime_template:
                # The disk as the saved memory knows it (the VMM flushed it at the end
                # of the save and writes nothing until it resumes).
                shutil.copyfile(self.launch.vm.rootfs_disk, partial / ROOTFS_LAYER)
            write_json_atomic(partial / TEMPLATE_META, {"created": time.time(),
                                                        "box": self.files.dir.name})
            partial.rename(target)
            log.info("saved the warm-start template %s in %.2f s", target,
                     time.monotonic() - started)
        except (BoxliteError, OSError) as e:
            log.warning("could not save the warm-start template: %s", e)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
            try:
                control.resume()
            except BoxliteError as e:
                log.warning("could not resume the VM after saving the template: %s", e)
            lock.release()

    def release_ram(self) -> None:
        """Close our descriptor of the VM's shared RAM (the VMM keeps its own)."""
        if self.ram_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.ram_fd)
            self.ram_fd = None

    def prepare_template(self, deadline: float) -> bool:
        """Before a template is saved: one call on a connection of its own, closed
        again, so what the guest sets up lazily for its first connection (bridge and
        server threads, HTTP/2 session code, the handlers' first run) is already in
        the saved memory, and every box restored from it answers sooner.

        A plain template's call is a ping. A primed one's is a box-neutral Init: the
        container disk mounted, the interface up with the address every box of this
        network kind has; no hostname, clock, entropy, MAC or hosts of any box. False
        when that Init failed (no template then: the guest is in no known state)."""
        primed = self.launch.prime_template
        net = self.launch.network
        channel = open_channel(self.agent_target())
        try:
            timeout = max(deadline - time.monotonic(), 0.1)
            if primed:
                AgentClient(channel).stub.Init(
                    pb.InitRequest(rootfs_serial=ROOTFS_DISK_SERIAL, prime=True,
                                   network=pb.NetworkConfig(mode=net.mode, address=net.address,
                                                            gateway=net.gateway, dns=net.dns)),
                    timeout=timeout, wait_for_ready=True)
            else:
                AgentClient(channel).ping(timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as e:
            if primed:
                log.warning("could not prime the warm-start template: %s", e.details())
                return False
            log.info("warming the agent failed (the template is saved anyway): %s", e.details())
        finally:
            channel.close()
        time.sleep(WARM_SETTLE_S)  # the guest drops that connection before the save
        return True

    def wait_for_agent(self, client: AgentClient, deadline: float) -> None:
        """Ping until the agent answers; a connection that breaks early is retried."""
        self.first_call(lambda timeout: client.stub.Ping.future(
            pb.PingRequest(), timeout=timeout, wait_for_ready=True), deadline, "pinging the agent")

    def first_call(self, start: Callable[[float], Any], deadline: float, what: str) -> Any:
        """The first call to a booting agent: `start(timeout)` makes a gRPC future that
        waits for the connection. A connection that breaks early is retried; the wait
        ends with the VM, with a stop of the box, or at `deadline`. Other errors are
        the call's own, raised at once."""
        assert self.vmm is not None
        future: Any = None
        last_error = ""
        while time.monotonic() < deadline:
            if self.vmm.poll() is not None or self.stopping.is_set():
                break
            if future is None:
                future = start(max(deadline - time.monotonic(), 0.1))
            try:
                return future.result(timeout=0.02)
            except grpc.FutureTimeoutError:
                continue
            except grpc.RpcError as e:
                last_error = f" (last error: {e.details()})"
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    future = None
                    break
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    raise agent_error(what, e) from e
                log.info("agent not ready yet: %s", e.details())
                future = None
                time.sleep(0.05)
        if future is not None:
            future.cancel()
        if self.stopping.is_set():
            raise BootFailed("the box was stopped while booting")
        if self.vmm.poll() is not None:
            raise BootFailed(f"the VM stopped during boot ({self.vmm_exit_reason()})")
        raise BootFailed(f"the guest agent did not answer within "
                         f"{self.launch.boot_timeout_s:.0f} s{last_error}")

    def stop_vmm(self, client: AgentClient | None, graceful: bool) -> None:
        assert self.vmm is not None
        if graceful and client is not None and self.vmm.poll() is None:
            with contextlib.suppress(BoxliteError):
                client.shutdown(timeout=SHUTDOWN_TIMEOUT_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.vmm.wait(SHUTDOWN_TIMEOUT_S)
        if graceful and self.vmm.poll() is None:
            with contextlib.suppress(BoxliteError):
                self.driver.control(self.launch.vm, timeout_s=2.0).shutdown()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.vmm.wait(2.0)
        if self.vmm.poll() is None:
            self.vmm.kill()
        self.vmm.wait()
        if self.relay is not None:
            self.relay.close()

    # the agent ------------------------------------------------------------------------

    def serve(self, channel: grpc.Channel) -> None:
        server = grpc.server(ThreadPoolExecutor(max_workers=256, thread_name_prefix="proxy"),
                             handlers=[ProxyHandler(channel, self.tracker,
                                                    tee={MAIN: self.log_chunk},
                                                    paused=self.is_paused)],
                             options=[("grpc.so_reuseport", 0)])
        sock = self.files.agent_socket
        old_umask = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix:{sock}")
            server.start()
        finally:
            os.umask(old_umask)
        self.server = server
        self.exec_server = ExecServer(self.files.exec_socket, AgentClient(channel),
                                      self.why_stopped, self.stopping_orderly, self.is_paused,
                                      self.vm_held)

    def vm_held(self) -> str | None:
        """Why the VM stands stopped though the box is not paused: QEMU stops it when the
        host's disk refuses a write to the box's disk (werror=enospc's "io-error"), and
        continues it when asked (`unpause`), no write lost. None when it is not so."""
        with contextlib.suppress(BoxliteError, OSError, ValueError):
            control = get_driver(self.launch.driver).control(self.launch.vm)
            if str(control.info()["state"]).lower() == "io-error":
                name = load_state(self.files.state).name
                return (f"box {name}'s VM is stopped: its disk could not be written (the "
                        f"host's disk is full); free space there, then: boxlite unpause {name}")
        return None

    def is_paused(self) -> bool:
        """The box is paused (boxlite pause): its guest answers nothing until unpaused."""
        try:
            return load_state(self.files.state).is_paused
        except (OSError, BoxliteError):
            return False

    def stopping_orderly(self) -> bool:
        """The box is being stopped as it should be: its main process ended, or a stop
        (stop, kill, rm -f: a signal to this shim, or the stop-requested mark) came."""
        return (self.main_ended.is_set() or self.stopping.is_set()
                or self.files.stop_requested.exists())

    def why_stopped(self) -> str | None:
        """Why the box stopped under its processes: its agent ended, or its VM did
        (None while neither is known)."""
        reason = agent_ended(console_tail(self.launch.vm.console_log))
        if reason is None and self.vmm is not None and self.vmm.poll() is not None:
            reason = self.vmm_exit_reason()
        return reason

    def stop_serving(self) -> None:
        """No more CLIs: close agent.sock and exec.sock."""
        if self.exec_server is not None:
            self.exec_server.close()
        if self.server is not None:
            self.server.stop(grace=0.5).wait()
        self.files.agent_socket.unlink(missing_ok=True)

    def start_logging(self, client: AgentClient) -> None:
        with self.logger_lock:
            if self.logger is not None:
                return
            self.logger = threading.Thread(target=self.log_output, args=(client,),
                                           name="log", daemon=True)
            self.logger.start()

    def log_output(self, client: AgentClient) -> None:
        """Copy a detached main process's output into container.log."""
        deadline = time.monotonic() + TAKE_OVER_S
        while True:
            try:
                for stream, data in client.attach(MAIN):
                    self.append_log(stream, data)
                return
            except BoxliteError as e:
                # (the attach of a client that just left may still hold the output
                # for an instant: the agent lets one reader attach at a time)
                if "already has a client attached" in str(e) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                log.info("output logging ended: %s", e)
                return

    def attach_abandoned(self, key: str) -> None:
        """The foreground CLI's Attach of the main process ended before the output did
        (the CLI detached, or was killed): the output goes on into the log from here,
        so that the process is not held up by output nobody takes, and `logs` and
        `attach` show it."""
        if (key != MAIN or self.client is None or self.main_ended.is_set()
                or self.stopping.is_set()):
            return
        log.info("the foreground client left: the output goes to the log")
        self.start_logging(self.client)

    def deliver_output(self, client: AgentClient) -> None:
        """A direct-output foreground run: the main process's output goes to the CLI's
        own stdout and stderr (and into the box's log), for as long as that CLI lives.
        A stream whose reader went away gets no more, and its writer in the guest gets
        EPIPE as on a host (OutputSink). A CLI that is gone (killed) leaves the box
        running on: its output still goes into the log."""
        # (our own non-blocking copies of a pipe or terminal: a reader that stops reading
        # cannot hold this thread, and so the box, once a stop asks to give up)
        out, err = (own_nonblocking(fd) for fd in self.output_fds)
        sink = OutputSink(client, MAIN, out, err, give_up=self.give_up_output)
        delivered = threading.Event()
        threading.Thread(target=self.watch_for_stop, args=(delivered, sink),
                         name="stop-watch", daemon=True).start()
        try:
            with sink.watching():
                for stream, data in client.attach(MAIN):
                    self.append_log(stream, data)
                    if not (self.ready_fd >= 0 and reader_gone(self.ready_fd)):
                        sink.write(stream, data)
        except BoxliteError as e:
            log.info("output delivery ended: %s", e)
        finally:
            if sink.error is not None:
                log.warning("the output could not be written: %s", sink.error)
                self.output_error = sink.error.strerror or str(sink.error)
            delivered.set()
            for own, given in ((out, self.output_fds[0]), (err, self.output_fds[1])):
                if own != given:
                    os.close(own)
            self.close_output()

    def watch_for_stop(self, done: threading.Event, sink: OutputSink) -> None:
        """While the output is delivered (until `done`): a `stop` (or a signal to this
        shim) gives up on a reader that does not read, as docker's stop does not wait for
        an attached client. The rest of the output is read from the guest (the process's
        exit waits for that) and kept in the log only. A CLI that is gone (killed, or
        run --no-sig-proxy ended by a signal) has its stdout and stderr let go (their
        readers see their end, as when docker's client dies), the sink's copies of them
        too."""
        released = False
        while not done.wait(GIVE_UP_POLL_S):
            if self.stopping.is_set() or self.files.stop_requested.exists():
                log.info("a stop came: the output's reader is not waited for")
                self.give_up_output.set()
                return
            if not released and self.ready_fd >= 0 and reader_gone(self.ready_fd):
                released = True
                log.info("the CLI is gone: its stdout and stderr are let go")
                sink.let_go(*self.output_fds)

    def log_chunk(self, serialized: bytes) -> None:
        """The log's copy of what a foreground CLI receives of the main process."""
        chunk = pb.OutputChunk.FromString(serialized)
        self.append_log(chunk.stream, chunk.data)

    def append_log(self, stream: int, data: bytes) -> None:
        with self.log_lock:
            self.log.write(stream, data)
            self.logged += len(data)

    def drain_log(self) -> None:
        """Let the logger copy what the main process wrote last: slices of LOG_DRAIN_S
        for as long as each one copied something, LOG_DRAIN_MAX_S at most (a backlog of
        output under emulation can take more than one slice; a stuck stream, no more)."""
        assert self.logger is not None
        deadline = time.monotonic() + LOG_DRAIN_MAX_S
        copied = -1
        while self.logger.is_alive() and copied != self.logged and time.monotonic() < deadline:
            copied = self.logged
            self.logger.join(LOG_DRAIN_S)

    def on_signal(self, signum: int, _frame: object) -> None:
        log.info("got signal %d: stopping the VM", signum)
        self.killed_by = signum
        self.stopping.set()
        if self.vmm is not None and self.vmm.poll() is None:
            self.vmm.kill()

    # the whole life -------------------------------------------------------------------

    def volume_mounts(self) -> list[pb.VolumeMount]:
        return [pb.VolumeMount(tag=v.tag, target=v.target, readonly=v.readonly,
                               file_name=v.file_name, populate=v.populate)
                for v in self.launch.volumes]

    def boot(self) -> tuple[grpc.Channel, AgentClient]:
        """Start (or restore) the VM and connect to its agent once it answers. A
        spare's VM runs already, paused, its agent connected: it is resumed."""
        self.start_vmm()
        deadline = time.monotonic() + self.launch.boot_timeout_s
        if self.adopted is not None:
            self.driver.control(self.launch.vm).resume()
            log.info("took over a spare VM")
            return self.adopted.channel, self.adopted.client
        if not self.launch.vm.restore_from:  # a restored agent said so before its save
            ready = self.wait_for_console(READY_MARKER, deadline)
            if ready and self.launch.save_template and self.prepare_template(deadline):
                self.save_template(Path(self.launch.save_template))
            self.release_ram()
        channel = open_channel(self.agent_target())
        client = AgentClient(channel)
        self.wait_for_agent(client, deadline)
        return channel, client

    def run_maintenance(self, state: BoxState) -> int:
        """`cp` on a stopped box: boot, serve the agent until the CLI closes its hold
        pipe (or dies), power off. The box's state is not touched."""
        client: AgentClient | None = None
        try:
            channel, client = self.boot()
            client.init(hostname=state.config.hostname or state.id[:12], clock_ns=time.time_ns(),
                        entropy=os.urandom(64), rootfs_serial=ROOTFS_DISK_SERIAL,
                        network=pb.NetworkConfig(mode="none"), volumes=self.volume_mounts(),
                        read_only=state.config.read_only)  # (cp into it: its volumes only)
        except BoxliteError as e:
            log.error("maintenance start failed: %s", e)
            if self.vmm is not None:
                self.stop_vmm(None, graceful=False)
            self.report(ok=False, error=str(e), console=str(self.files.console_log),
                        console_tail=console_tail(self.files.console_log))
            return 1
        self.serve(channel)
        self.report(ok=True, exec_id="")
        assert self.vmm is not None
        while not self.stopping.is_set() and self.vmm.poll() is None:
            if self.hold_fd < 0:
                break
            ready, _, _ = select.select([self.hold_fd], [], [], 0.5)
            if ready and not os.read(self.hold_fd, 4096):
                break  # the CLI let go
        self.stop_vmm(client, graceful=self.killed_by is None)
        self.stop_serving()
        return 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        write_pidfile(self.files.shim_pid, ProcessRecord.current())
        keep_reserve(self.files.space_reserve)
        if self.files.stop_requested.exists():
            # A stop (kill_now of an interrupted `run -d`) came while the box was being
            # handed to this shim, before it could be signalled: the box does not start.
            log.info("a stop came before this shim had the box: not starting it")
            self.stopping.set()
        state = load_state(self.files.state)
        if self.launch.maintenance:
            return self.run_maintenance(state)
        client: AgentClient | None = None
        warm = bool(self.launch.vm.restore_from) and not self.launch.resume
        try:
            channel, client = self.boot()
            log.info("the agent answers")
            if self.launch.resume:
                client.resync(entropy=os.urandom(64))
                log.info("resumed from a checkpoint")
                return self.resumed(client, channel, state)
            # The guest's clock is stepped by the offset measured (clocksync.py): one
            # set to a time sent lags by the call (0.1-0.15 s for a warm start's, its
            # restored agent paging in as it takes it).
            clock = clock_setting(client)
            log.info("the guest's clock: %s", clock)
            net = self.launch.network
            request = client.init_request(
                hostname=state.config.hostname or state.id[:12], clock_ns=clock.clock_ns,
                clock_step_ns=clock.clock_step_ns,
                entropy=os.urandom(64), rootfs_serial=ROOTFS_DISK_SERIAL,
                network=pb.NetworkConfig(
                    mode=net.mode, address=net.address, gateway=net.gateway, dns=net.dns,
                    hosts=[pb.HostEntry(name=n, ip=ip) for n, ip in net.hosts], mac=net.mac,
                    dns_search=net.dns_search, dns_options=net.dns_options),
                volumes=self.volume_mounts(), pids_limit=state.config.pids_limit,
                cap_drop=0 if state.config.privileged
                else drop_mask(state.config.cap_add, state.config.cap_drop),
                cpu_limit=state.config.cpu_limit, read_only=state.config.read_only,
                tmpfs=[pb.TmpfsMount(target=t.target, size_bytes=t.size_bytes, mode=t.mode,
                                     readonly=t.readonly, exec=t.exec_, suid=t.suid, dev=t.dev,
                                     uid=t.uid, gid=t.gid) for t in self.launch.tmpfs],
                ulimits=[pb.Ulimit(name=name, soft=soft, hard=hard)
                         for name, soft, hard in map(parse_ulimit, state.config.ulimits)],
                no_new_privileges=state.config.no_new_privileges,
                group_add=state.config.group_add, sysctls=state.config.sysctls)
            proc = state.config.process
            main = client.exec_request(argv=proc.argv, env=proc.env, cwd=proc.cwd,
                                       user=proc.user, tty=proc.tty, rows=proc.rows,
                                       cols=proc.cols, stdin=proc.stdin,
                                       timeout_s=proc.timeout_s,
                                       hold_output=self.launch.foreground, exec_id=MAIN,
                                       make_cwd=True, merge_stderr=self.launch.merge_stderr)
            request.main.CopyFrom(main)  # Init starts it too: one round trip
            answer = client.init_with(request)
            log.info("the guest is initialised")
            # (An agent of an older payload ignores Init's main: then Exec starts it.)
            started = (Started.of(answer.main) if answer.HasField("main")
                       else client.exec_with(main))
            log.info("the main process started")
        except BoxliteError as e:
            log.error("start failed: %s", e)
            reason = str(e)
            # The agent refused the box's own settings (a user, a working directory...):
            # the VM is fine, and a warm start would fail the same way cold.
            refused = isinstance(e, UsageError)
            if self.vmm is not None:
                self.stop_vmm(None, graceful=False)
            # A stop, kill or `rm -f` meanwhile: not the VM's failure (nothing is retried),
            # and the box ends as a killed one (137), as docker's would.
            stopped = self.stopping.is_set()
            self.update(status=Status.EXITED, error=reason, finished_at=time.time(),
                        exit_code=128 + signal.SIGKILL if stopped else 125)
            # (kept for a look when the box goes: not a refusal's, not a stopped start's)
            console = self.files.console_log if refused or stopped else self.keep_console(state)
            self.report(ok=False, error=reason, refused=refused, console=str(console),
                        console_tail=console_tail(console), spare=self.adopted is not None,
                        stopped=stopped, hint=e.hint)
            if not warm or refused or stopped:  # a failed warm start is retried cold: keep it
                self.remove_if_auto(state)
            return 1
        if started.error_exit_code:
            self.update(status=Status.EXITED, error=started.error,
                        exit_code=started.error_exit_code, finished_at=time.time(),
                        started_at=time.time())
            self.report(ok=True, exit_code=started.error_exit_code, error=started.error)
            self.stop_vmm(client, graceful=not state.config.auto_remove)
            self.remove_if_auto(state)
            return 0
        # The guest hears Wait, and Attach for a direct-output run, before this process
        # goes on with serving the box and recording it (both sides work meanwhile).
        waiting = client.wait_later(MAIN)
        self.client = client
        direct = bool(self.output_fds)
        if direct:
            self.deliverer = threading.Thread(target=self.deliver_output, args=(client,),
                                              name="deliver", daemon=True)
            self.deliverer.start()
        self.serve(channel)
        running = self.update(status=Status.RUNNING, started_at=time.time(),
                              accel=self.launch.vm.accel, vmm=self.launch.driver,
                              exit_code=None, error=None, held=None,  # (FinishedAt: the
                              health=self.health_at_start(state))  # last run's until this one ends)
        self.watch_health(client, running)
        self.watch_held()
        self.widen_port_backlogs()  # (before the CLI hears the box runs)
        # A foreground CLI hears on the same pipe how the main process ended (it reads
        # that when its own stream breaks: why the box stopped).
        self.report(ok=True, exec_id=started.exec_id, pid=started.pid,
                    keep_open=direct or self.launch.foreground)
        if not direct and not self.launch.foreground:
            self.start_logging(client)
        return self.supervise(client, state, waiting)

    def resumed(self, client: AgentClient, channel: grpc.Channel, state: BoxState) -> int:
        """A box restored from its checkpoint: its main process runs on; supervise it."""
        self.client = client
        self.serve(channel)
        running = self.update(status=Status.RUNNING, started_at=time.time(),
                              accel=self.launch.vm.accel, vmm=self.launch.driver,
                              exit_code=None, error=None, held=None,
                              health=self.health_at_start(state))
        self.watch_health(client, running)
        self.watch_held()
        self.widen_port_backlogs()
        self.report(ok=True, exec_id=MAIN, pid=0)
        if not self.launch.foreground:  # (a foreground CLI attaches to it itself)
            self.start_logging(client)
        return self.supervise(client, state)

    @staticmethod
    def health_at_start(state: BoxState) -> Health | None:
        check = state.config.healthcheck
        return started(state.health) if check is not None and check.enabled else None

    def watch_held(self) -> None:
        """Watch for the VM stood stopped by a full host disk (shim/heldwatch.py)."""
        self.held_watch = HeldWatch(self.vm_held, self.on_held, self.recorded_held)
        self.held_watch.start()

    def recorded_held(self) -> str | None:
        try:
            return load_state(self.files.state).held
        except (OSError, BoxliteError):
            return None

    def on_held(self, why: str | None) -> None:
        self.update(held=why)
        if why and self.deliverer is not None and self.output_fds:
            # (a foreground run's terminal hears it, not only a later ps; never waited on)
            with contextlib.suppress(OSError, ValueError):
                if select.select([], [self.output_fds[1]], [], 0)[1]:
                    os.write(self.output_fds[1], f"boxlite: warning: {why}\n".encode())

    def watch_health(self, client: AgentClient, running: BoxState) -> None:
        """Start the box's health checks (shim/health.py), if it has them."""
        config, health = running.config.healthcheck, running.health
        if config is None or health is None or running.started_at is None:
            return
        self.health_monitor = HealthMonitor(
            client, config, running.config.process, running.started_at, health,
            record=lambda h: self.update(health=h),
            paused=self.is_paused)
        self.health_monitor.start()

    def widen_port_backlogs(self) -> None:
        """The published ports of QEMU's user networking take bursts (shim/backlog.py)."""
        vm = self.launch.vm
        if self.vmm is None or vm.network != NET_USER or not vm.port_forwards:
            return
        try:
            log.info("published ports: %d listen with a deeper queue",
                     widen_listen_backlogs(self.vmm.pid))
        except OSError as e:
            log.info("published ports keep QEMU's backlog of 1: %s", e)

    def supervise(self, client: AgentClient, state: BoxState,
                  waiting: Callable[[], ExecResult] | None = None) -> int:
        """Wait for the main process (`waiting`: its Wait was sent already), then bring
        the VM down and record how it ended."""
        exit_code: int | None = None
        error: str | None = None
        oom_killed = False
        try:
            result = waiting() if waiting is not None else client.wait(MAIN)
            exit_code = result.exit_code
            oom_killed = result.oom_killed
            self.main_ended.set()
            log.info("the main process ended")
            if self.deliverer is not None:
                self.deliverer.join()  # all the output is written before the exit status
            elif self.launch.foreground and self.logger is None:
                # The foreground CLI gets all the output and the exit status first.
                self.tracker.wait_delivered([MAIN, f"wait:{MAIN}"], ATTACH_GRACE_S)
            else:  # a `boxlite wait` on it hears the exit status before the VM goes
                self.tracker.wait_idle([f"wait:{MAIN}"], WAIT_DELIVERY_S)
            if self.logger is not None:
                self.drain_log()  # what it wrote last is in the log too
        except BoxliteError as e:
            assert self.vmm is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.vmm.wait(2)
            if self.killed_by is not None:
                # (a stop, kill or rm -f that had to end the VM: the user's, no error,
                # as docker's; a signal from anyone else to this process is said)
                error = "" if self.files.stop_requested.exists() else SHIM_SIGNALLED
                exit_code = 128 + signal.SIGKILL
            else:
                rc = self.vmm.poll()
                # (the VM gone says it all; a VM still up, the agent's loss does)
                error = (agent_ended(console_tail(self.launch.vm.console_log))
                         or (self.vmm_exit_reason() if rc is not None
                             else f"{self.vmm_exit_reason()} ({e})"))
                exit_code = 128 - rc if rc is not None and rc < 0 else 125
        if self.health_monitor is not None:
            self.health_monitor.stop()
        if self.held_watch is not None:
            self.held_watch.stop()
        self.update(status=Status.STOPPING, exit_code=exit_code, error=error,
                    oom_killed=oom_killed, held=None)
        # A direct-output CLI's answer; it reads on until we exit (the pipe closes).
        self.report(exit_code=exit_code, error=error, keep_open=True,
                    **({"output_error": self.output_error} if self.output_error else {}))
        self.stop_vmm(client, graceful=not state.config.auto_remove and self.killed_by is None)
        log.info("the VM is down")
        self.stop_serving()
        ended = self.update(status=Status.EXITED, finished_at=time.time(), ports=[])  # (unpublished)
        log.info("box exited with %s (%s)", exit_code, error or "main process ended")
        self.remove_if_auto(state)
        self.restart_by_policy(ended, exit_code)
        self.close_ready()  # a direct-output CLI is done now, before our own teardown
        return 0

    def restart_by_policy(self, ended: BoxState, exit_code: int) -> None:
        """The box's --restart policy starts it again (state/restartpolicy.py): a
        detached restarter waits the backoff and starts it, unless it was stopped,
        killed or restarted by hand (or removed) meanwhile."""
        policy = ended.config.restart
        if (ended.config.auto_remove or self.killed_by is not None or self.launch.maintenance
                or self.files.stop_requested.exists() or self.files.restarting.exists()
                or not restarts(policy, exit_code, ended.restart_count)):
            return
        ran_s = (ended.finished_at or 0.0) - (ended.started_at or 0.0)
        delay_s = backoff_s(ended.restart_delay_s, ran_s)
        log.info("restart policy %s: starting the box again in %.1f s", policy, delay_s)
        try:
            restarter = subprocess.Popen(
                [sys.executable, "-m", "boxlite_cli.runtime.autorestart", str(self.files.dir),
                 repr(delay_s), repr(ended.finished_at)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        except OSError as e:
            log.error("the restarter could not be started: %s", e)
            return
        record = ProcessRecord.of(restarter.pid)
        with contextlib.suppress(BoxliteError, OSError):  # (shown as restarting meanwhile)
            self.update(restarter=record.to_json() if record else None,
                        restart_delay_s=delay_s)

    def keep_console(self, state: BoxState) -> Path:
        """The console log of a failed start, moved out of the way when the box goes."""
        if not state.config.auto_remove:
            return self.files.console_log
        failed = self.files.dir.parent.parent / "failed"
        kept = failed / f"{state.id[:12]}-console.log"
        with contextlib.suppress(OSError):
            failed.mkdir(parents=True, exist_ok=True)
            prune_kept_logs(failed, KEEP_FAILED_LOGS - 2)
            shutil.copyfile(self.files.console_log, kept)
            shutil.copyfile(self.files.shim_log, failed / f"{state.id[:12]}-shim.log")
            return kept
        return self.files.console_log

    def remove_if_auto(self, state: BoxState) -> None:
        """`--rm`: the box goes away with its VM (not when `restart` stopped it)."""
        if not state.config.auto_remove or self.files.restarting.exists():
            return
        store = BoxStore.for_data_dir(self.files.dir.parent.parent)
        # Under the box's lock, and only while it is still the exited box: a `start` from
        # another shell in between owns it now (removing it would orphan that VM).
        try:
            with store.lock(state.id, timeout=30):
                if load_state(self.files.state).status != Status.EXITED:
                    log.info("not removed: the box was started again")
                    return
                store.remove_dir(state.id)
        except (BoxliteError, OSError) as e:
            log.info("not removed: %s", e)
            return
        store.release_name(state.name, state.id)
        if not self.files.sockets.is_relative_to(self.files.dir):
            shutil.rmtree(self.files.sockets, ignore_errors=True)
        # Its anonymous volumes go with it, as docker's --rm takes them (named ones stay).
        with contextlib.suppress(BoxliteError, OSError):
            remove_unused(VolumeStore(store.paths.data / "volumes"),
                          [m.source for m in state.config.mounts if m.anonymous],
                          store.mounted_volumes)


def report_failure(ready_fd: int, error: str) -> None:
    """A spare that could not become the box's shim tells the starting CLI so (which
    then starts the box without it)."""
    with contextlib.suppress(OSError):
        os.write(ready_fd, (json.dumps({"ok": False, "error": error, "spare": True}) + "\n")
                 .encode())
        os.close(ready_fd)


def main(argv: list[str], early: VmmProcess | BaseException | None = None,
         output_fds: tuple[int, ...] | None = None, adopted: Adopted | None = None) -> int:
    """The shim; `early`: the VMM that `python -m boxlite_cli.shim` started (or why not);
    `output_fds`: given to a prestarted shim (shim/prestart.py) or a spare
    (shim/spare.py) only, the numbers it got the output fds under; `adopted`: a
    spare's VM and agent connection."""
    box_dir, ready_fd = Path(argv[1]), int(argv[2])
    hold_fd = int(argv[3]) if len(argv) > 3 else -1
    files = BoxFiles(box_dir)
    logging.basicConfig(filename=files.shim_log, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    if output_fds is not None:
        log.info("%s: the CLI handed this shim its box",
                 "a spare" if adopted is not None else "prestarted")
    try:
        return Shim(files, ready_fd, hold_fd, early, output_fds, adopted).run()
    except Exception:
        log.exception("shim crashed")
        with contextlib.suppress(Exception), FileLock(str(files.dir / LOCK_FILE), timeout=10,
                                                      create_parents=False):
            st = load_state(files.state)
            if st.status not in (Status.EXITED, Status.CREATED):  # (a maintenance shim)
                st.status, st.error = Status.EXITED, "the shim crashed; see shim.log"
                st.finished_at = time.time()
                write_json_atomic(files.state, st.to_json())
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
