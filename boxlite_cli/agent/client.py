"""A typed client of the guest agent's gRPC service, over a shim's agent.sock."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc

from boxlite_cli.agent.pb import agent_pb2 as pb
from boxlite_cli.agent.pb import agent_pb2_grpc as pb_grpc
from boxlite_cli.errors import (
    AgentError,
    AgentTimeout,
    BoxliteError,
    BoxRestarted,
    SignalHeld,
    UsageError,
)

T = TypeVar("T")

# A client's pin to one run of a box (the PID of its shim), sent with each of its calls:
# the shim refuses one that carries another (ABORTED), so that a CLI attached to a run
# never follows the next one (a `restart` meanwhile), as gRPC's reconnects to the same
# socket path would have it do.
PIN_METADATA = "boxlite-shim-pid"
RESTARTED = "the box was restarted: this is another run of it"
# The shim's answer to a Signal while the box is paused (FAILED_PRECONDITION): it holds
# the signal and delivers it at the unpause.
SIGNAL_HELD = "the box is paused: the process gets the signal once it is unpaused"

CHANNEL_OPTIONS = [
    # Retry a missing socket quickly...
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 250),
    # ...but give a connection attempt (connect + HTTP/2 handshake) a whole minute: gRPC
    # uses this as the minimum connect timeout. An emulated guest on a busy host can take
    # seconds to answer; an attempt abandoned half-way leaves its bytes in the agent
    # channel (one byte stream), where they corrupt the next connection.
    ("grpc.min_reconnect_backoff_ms", 60_000),
    ("grpc.enable_http_proxy", 0),
    # No bandwidth-delay probing: when this process is starved of CPU, its ping answers
    # come late, the estimate balloons, and gRPC widens the flow-control window until a
    # fast sender has pushed hundreds of MB into our buffers. The default window keeps
    # a stream's memory bounded whatever the load.
    ("grpc.http2.bdp_probe", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]
STDOUT = pb.OutputChunk.STDOUT
STDERR = pb.OutputChunk.STDERR
INPUT_CHUNK = 64 * 1024

INIT_FILLING_TIMEOUT_S = 1800.0  # (a volume filled from a large image directory)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    signal: int
    timed_out: bool
    oom_killed: bool = False  # the kernel's OOM killer killed a process of the box


@dataclass(frozen=True)
class Started:
    """An exec the agent started, or the docker-style code of why it could not."""

    exec_id: str
    pid: int
    error_exit_code: int
    error: str

    @classmethod
    def of(cls, resp: Any) -> Started:
        """From an ExecResponse."""
        return cls(resp.exec_id, resp.pid, resp.error_exit_code, resp.error)


@dataclass(frozen=True)
class PathInfo:
    """What a path in the box is (Stat)."""

    exists: bool
    mode: int
    size: int
    link_target: str
    name: str


@dataclass(frozen=True)
class TreeEntry:
    """An entry of the box's root file system, without its data (`kind`: file, dir,
    symlink, chr, blk or fifo)."""

    path: str  # relative to the root
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    link: str
    dev: tuple[int, int]
    capability: bytes
    ctime_ns: int = 0  # when its inode last changed (the guest's clock)


TREE_KINDS = {pb.TreeEntry.FILE: "file", pb.TreeEntry.DIR: "dir",
              pb.TreeEntry.SYMLINK: "symlink", pb.TreeEntry.CHR: "chr",
              pb.TreeEntry.BLK: "blk", pb.TreeEntry.FIFO: "fifo"}


@dataclass(frozen=True)
class ProcessInfo:
    """One of the box's processes (Processes: boxlite top)."""

    pid: int  # in the box
    ppid: int  # 0: the box's init's parent, outside the box
    uid: int
    user: str  # "" when the box's /etc/passwd has no entry
    state: str
    cpu_s: float
    rss_bytes: int
    started: float  # Unix time
    threads: int
    name: str
    argv: tuple[str, ...]
    argv_cut: bool = False  # argv is its first 8 KiB only, or was left out


@dataclass(frozen=True)
class BoxUsage:
    """A box's processes and its memory, from its guest (Processes: top, stats)."""

    processes: list[ProcessInfo]
    memory_bytes: int  # its processes' (its cgroup's, less inactive file cache); 0: unknown
    memory_limit_bytes: int  # the most they may use (its cgroup's memory.max); 0: unknown
    net_rx_bytes: int = 0  # what its network interfaces received and sent (0 from an
    net_tx_bytes: int = 0  # older guest)


def open_channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def _rpc(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except grpc.RpcError as e:
        raise agent_error(what, e) from e


def agent_error(what: str, e: grpc.RpcError) -> AgentError:
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return UsageError(f"{what}: {details}")  # type: ignore[return-value]
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return AgentError(f"{what}: the box is not reachable ({details})")
    if code == grpc.StatusCode.ABORTED and details == RESTARTED:
        return BoxRestarted(f"{what}: {details}")
    if code == grpc.StatusCode.FAILED_PRECONDITION and details == SIGNAL_HELD:
        return SignalHeld(details)
    if code == grpc.StatusCode.UNIMPLEMENTED:  # (a box started by an older boxlite)
        return AgentError(f"{what}: the box's guest agent is older than this boxlite",
                          hint="restart the box to give it the current one")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        # (a guest starved by its own processes: a CPU hog at real-time priority, a fork
        # bomb; `stop` and `rm -f` still work, from the host)
        return AgentTimeout(f"{what}: the box's guest agent did not answer in time (its "
                            "processes may be taking all of its CPU or memory)",
                            hint="see boxlite stats; boxlite stop (or rm -f) ends it from "
                                 "the host")
    return AgentError(f"{what}: {details}")


def _tar_stream(call: Any) -> Iterator[bytes]:
    """The bytes of a call's TarChunk stream (cancelled if not read to its end)."""
    try:
        for chunk in call:
            yield chunk.data
    except grpc.RpcError as e:
        raise agent_error("copying out of the box", e) from e
    finally:
        call.cancel()


class _Pin(grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
           grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
           grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
           grpc.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    """Adds the pin (PIN_METADATA) to every call of a channel."""

    def __init__(self, pin: str) -> None:
        self.pin = pin

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), (PIN_METADATA, self.pin)]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class AgentClient:
    """Calls into one box's guest agent."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.stub = pb_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]

    @classmethod
    def connect(cls, target: str, pin: int | None = None) -> AgentClient:
        """A client of the agent at `target`; with `pin` (its shim's PID), of that run
        of the box only (PIN_METADATA)."""
        channel = open_channel(target)
        if pin is not None:
            channel = grpc.intercept_channel(channel, _Pin(str(pin)))
        return cls(channel)

    def close(self) -> None:
        self.channel.close()

    def ping(self, timeout: float = 5.0, wait_for_ready: bool = False) -> Any:
        return self.stub.Ping(pb.PingRequest(), timeout=timeout, wait_for_ready=wait_for_ready)

    @staticmethod
    def init_request(hostname: str, entropy: bytes, rootfs_serial: str, clock_ns: int = 0,
                     clock_step_ns: int = 0,
                     network: pb.NetworkConfig | None = None,
                     volumes: list[pb.VolumeMount] | None = None, pids_limit: int = 0,
                     cap_drop: int = 0, cpu_limit: float = 0.0, read_only: bool = False,
                     tmpfs: list[pb.TmpfsMount] | None = None,
                     ulimits: list[pb.Ulimit] | None = None,
                     no_new_privileges: bool = False, group_add: list[str] | None = None,
                     sysctls: dict[str, str] | None = None) -> Any:
        return pb.InitRequest(hostname=hostname, clock_ns=clock_ns, clock_step_ns=clock_step_ns,
                              entropy=entropy, rootfs_serial=rootfs_serial, network=network,
                              volumes=volumes,
                              pids_limit=pids_limit, cap_drop=cap_drop, cpu_limit=cpu_limit,
                              read_only=read_only, tmpfs=tmpfs, ulimits=ulimits,
                              no_new_privileges=no_new_privileges, group_add=group_add,
                              sysctls=sysctls)

    def init(self, hostname: str, clock_ns: int, entropy: bytes, rootfs_serial: str,
             network: pb.NetworkConfig | None = None,
             volumes: list[pb.VolumeMount] | None = None, read_only: bool = False) -> None:
        self.init_with(self.init_request(hostname, entropy, rootfs_serial, clock_ns=clock_ns,
                                         network=network, volumes=volumes,
                                         read_only=read_only))

    def init_with(self, request: Any) -> Any:
        """Init; its InitResponse. An Init that fills volumes from the image copies
        files in the guest first: it may take far longer."""
        timeout = INIT_FILLING_TIMEOUT_S if any(v.populate for v in request.volumes) else 60
        return _rpc("initialising the guest", lambda: self.stub.Init(request, timeout=timeout))

    def quiesce(self, freeze: bool, auto_thaw_s: float = 0.0) -> None:
        """Freeze (or thaw) the container's file system around a disk snapshot."""
        _rpc("freezing the box's file system" if freeze else "thawing the box's file system",
             lambda: self.stub.Quiesce(pb.QuiesceRequest(freeze=freeze, auto_thaw_s=auto_thaw_s),
                                       timeout=30))

    def resync(self, entropy: bytes) -> None:
        """After a restore from this box's checkpoint, or a pause: the clock (brought to
        the host's: clocksync.py) and the CRNG only."""
        from boxlite_cli.agent.clocksync import clock_setting

        clock = clock_setting(self)
        _rpc("resynchronising the guest", lambda: self.stub.Init(
            pb.InitRequest(entropy=entropy, resume=True, clock_ns=clock.clock_ns,
                           clock_step_ns=clock.clock_step_ns), timeout=60))

    @staticmethod
    def exec_request(*, argv: list[str], env: list[str], cwd: str, user: str, tty: bool,
                     rows: int, cols: int, stdin: bool, timeout_s: float, hold_output: bool,
                     exec_id: str = "", make_cwd: bool = False,
                     merge_stderr: bool = False, release_on_detach: bool = False) -> Any:
        return pb.ExecRequest(argv=argv, env=env, cwd=cwd, user=user, tty=tty, rows=rows,
                              cols=cols, stdin=stdin, timeout_s=timeout_s,
                              hold_output=hold_output, exec_id=exec_id, make_cwd=make_cwd,
                              merge_stderr=merge_stderr, release_on_detach=release_on_detach)

    def exec(self, *, argv: list[str], env: list[str], cwd: str, user: str, tty: bool,
             rows: int, cols: int, stdin: bool, timeout_s: float, hold_output: bool,
             exec_id: str = "", merge_stderr: bool = False,
             release_on_detach: bool = False) -> Started:
        return self.exec_with(self.exec_request(
            argv=argv, env=env, cwd=cwd, user=user, tty=tty, rows=rows, cols=cols, stdin=stdin,
            timeout_s=timeout_s, hold_output=hold_output, exec_id=exec_id,
            merge_stderr=merge_stderr, release_on_detach=release_on_detach))

    def exec_with(self, request: Any) -> Started:
        resp = _rpc("starting the process", lambda: self.stub.Exec(request, timeout=60))
        return Started.of(resp)

    def attach(self, exec_id: str, on_call: Callable[[Any], None] | None = None
               ) -> Iterator[tuple[int, bytes]]:
        """(stream, data) chunks until the process's output ends; `on_call` is given the
        call (to cancel it from another thread)."""
        call = self.stub.Attach(pb.AttachRequest(exec_id=exec_id))
        if on_call is not None:
            on_call(call)
        try:
            for chunk in call:
                yield chunk.stream, chunk.data
        except grpc.RpcError as e:
            raise agent_error("reading the output", e) from e
        finally:
            call.cancel()

    def wait(self, exec_id: str, timeout: float | None = None) -> ExecResult:
        resp = _rpc("waiting for the process",
                    lambda: self.stub.Wait(pb.WaitRequest(exec_id=exec_id), timeout=timeout))
        return ExecResult(resp.exit_code, resp.signal, resp.timed_out, resp.oom_killed)

    def wait_later(self, exec_id: str) -> Callable[[], ExecResult]:
        """Send Wait now; the function returned waits for its answer (as `wait`)."""
        future = self.stub.Wait.future(pb.WaitRequest(exec_id=exec_id))

        def result() -> ExecResult:
            resp = _rpc("waiting for the process", future.result)
            return ExecResult(resp.exit_code, resp.signal, resp.timed_out, resp.oom_killed)

        return result

    def signal(self, exec_id: str, signum: int, group: bool = False) -> None:
        """`signum` to the process (`group`: to its process group: an exec's client
        ended by a signal takes what the process started along, as `timeout` would)."""
        _rpc("signalling the process", lambda: self.stub.Signal(
            pb.SignalRequest(exec_id=exec_id, signal=signum, group=group), timeout=10))

    def close_output(self, exec_id: str, stream: int) -> None:
        """Our reader of `stream` went away: the process's next write into it fails
        (EPIPE, SIGPIPE), as on a host. Best effort: an error is ignored."""
        with contextlib.suppress(BoxliteError):
            _rpc("closing the output", lambda: self.stub.CloseOutput(
                pb.CloseOutputRequest(exec_id=exec_id, stream=cast(Any, stream)), timeout=10))

    def resize(self, exec_id: str, rows: int, cols: int) -> None:
        _rpc("resizing the terminal", lambda: self.stub.Resize(
            pb.ResizeRequest(exec_id=exec_id, rows=rows, cols=cols), timeout=10))

    def shutdown(self, timeout: float = 10.0) -> None:
        _rpc("shutting the guest down", lambda: self.stub.Shutdown(pb.ShutdownRequest(),
                                                                   timeout=timeout))

    # files (boxlite cp) -----------------------------------------------------------------

    def stat(self, path: str, follow_link: bool = False) -> PathInfo:
        resp = _rpc(f"looking at {path} in the box", lambda: self.stub.Stat(
            pb.StatRequest(path=path, follow_link=follow_link), timeout=60))
        return PathInfo(resp.exists, resp.mode, resp.size, resp.link_target, resp.name)

    def usage(self, timeout_s: float = 60) -> BoxUsage:
        resp = _rpc("listing the box's processes", lambda: self.stub.Processes(
            pb.ProcessesRequest(), timeout=timeout_s))
        return BoxUsage([ProcessInfo(p.pid, p.ppid, p.uid, p.user, p.state, p.cpu_s,
                                     p.rss_bytes, p.started, p.threads, p.name, tuple(p.argv),
                                     p.argv_cut) for p in resp.processes],
                        resp.memory_bytes, resp.memory_limit_bytes, resp.net_rx_bytes,
                        resp.net_tx_bytes)

    def tree(self) -> Iterator[TreeEntry]:
        """The box's root file system alone (nothing mounted on it), entry by entry, a
        directory before what is in it."""
        call = self.stub.Tree(pb.TreeRequest())
        try:
            for chunk in call:
                for e in chunk.entries:
                    yield TreeEntry(os.fsdecode(e.path), TREE_KINDS.get(e.kind, "other"),
                                    e.mode, e.uid, e.gid, e.size, e.mtime, os.fsdecode(e.link),
                                    (e.dev_major, e.dev_minor), e.capability, e.ctime_ns)
        except grpc.RpcError as e:
            raise agent_error("reading the box's files", e) from e
        finally:
            call.cancel()

    def copy_paths(self, paths: list[str]) -> Iterator[bytes]:
        """Tar bytes of `paths` (relative to the root) of the box's root file system
        alone, each by itself (a directory without what is in it)."""
        yield from _tar_stream(self.stub.CopyPaths(pb.CopyPathsRequest(
            paths=[os.fsencode(p) for p in paths])))

    def copy_in(self, dest_dir: str, keep_owner: bool, chunks: Iterator[bytes]) -> tuple[int, int]:
        """Stream the tar `chunks` into `dest_dir`; (entries, bytes) written."""

        source_failed: list[OSError | BoxliteError] = []

        def requests() -> Iterator[Any]:
            yield pb.CopyInChunk(header=pb.CopyInHeader(dest_dir=dest_dir, keep_owner=keep_owner))
            try:
                for data in chunks:
                    yield pb.CopyInChunk(data=data)
            except (OSError, BoxliteError) as e:  # (gRPC says "Exception iterating requests!")
                source_failed.append(e)
                raise

        try:
            resp = _rpc("copying into the box", lambda: self.stub.CopyIn(requests()))
        except BoxliteError:
            if source_failed:
                raise source_failed[0] from None
            raise
        return resp.entries, resp.bytes

    def copy_out(self, path: str, follow_link: bool, name: str,
                 sparse: bool = False) -> Iterator[bytes]:
        """Tar bytes of `path` in the box, its top entry named `name`; `sparse`: sparse
        files as GNU sparse members (for our own extractor)."""
        yield from _tar_stream(self.stub.CopyOut(pb.CopyOutRequest(
            path=path, follow_link=follow_link, name=name, sparse=sparse)))

    def send_input(self, exec_id: str, chunks: Iterator[bytes], close: bool = True) -> None:
        """Stream `chunks` to the process's stdin; close it (EOF) at the end."""

        def requests() -> Iterator[Any]:
            yield pb.InputChunk(exec_id=exec_id)
            for data in chunks:
                for i in range(0, len(data), INPUT_CHUNK):
                    yield pb.InputChunk(data=data[i:i + INPUT_CHUNK])
            if close:
                yield pb.InputChunk(close=True)

        _rpc("sending input", lambda: self.stub.Input(requests()))


class InputPump:
    """Feeds an exec's stdin from a thread-safe queue of byte chunks (None = EOF)."""

    def __init__(self, client: AgentClient, exec_id: str) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(client, exec_id), daemon=True)
        self.thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while (data := self.queue.get()) is not None:
            yield data

    def _run(self, client: AgentClient, exec_id: str) -> None:
        try:
            client.send_input(exec_id, self._chunks())
        except BaseException as e:  # reported by the owner
            self.error = e
