"""The gRPC servicer: maps the Agent RPCs onto the exec table and the Guest.

Errors: AgentError subclasses become their status code with the message as details;
anything unexpected becomes INTERNAL with the exception's text (and a traceback on
stderr, which is the VM console).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from boxlite_agent import __version__
from boxlite_agent.cgroups import BOX_CGROUP
from boxlite_agent.copyfiles import (
    rechunk,
    root_fs_view,
    stat_path,
    tar_in,
    tar_out,
    tar_paths,
)
from boxlite_agent.errors import (
    AgentError,
    ExecFailure,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    UnknownUser,
)
from boxlite_agent.guest import Guest
from boxlite_agent.netconf import NetSetup
from boxlite_agent.netcount import net_bytes
from boxlite_agent.outbuf import BufferBusy, Status
from boxlite_agent.pb import agent_pb2 as pb
from boxlite_agent.pb import agent_pb2_grpc
from boxlite_agent.process import Execution
from boxlite_agent.quiesce import Freezer
from boxlite_agent.resolve import join_container, mkdir_all_in_root
from boxlite_agent.rootmounts import TmpfsSpec
from boxlite_agent.rootmounts import check as check_tmpfs
from boxlite_agent.spawn import STDERR, STDOUT, ExecSpec, spawn
from boxlite_agent.sysctls import apply_sysctls, check_sysctls
from boxlite_agent.table import ExecTable
from boxlite_agent.treemeta import tree_chunks
from boxlite_agent.ulimits import helper_spec
from boxlite_agent.volumes import VolumeSpec, mount_volumes
from boxlite_agent.volumes import check as check_volumes
from boxlite_agent.warmup import warm_page_cache, warm_spawn

ATTACH_POLL_S = 1.0
MAX_GROUP_ADD = 64  # --group-add values of a box
WAIT_POLL_S = 1.0
SHUTDOWN_DELAY_S = 0.05
MAX_SIGNAL = 64
MAX_WINSIZE = 65535
CANNOT_EXECUTE = 126  # (docker's exit code of a process that cannot be started)
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9._-]{0,62})\Z")

_HOST_ENTRY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})\Z")
_RESOLV_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,254}\Z")  # (no blank, no newline)
_RESOLV_ITEMS = 32
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")


def net_setup(msg: pb.NetworkConfig) -> NetSetup:
    """InitRequest.network, checked: every address parses, every host name is plain."""
    try:
        if msg.address:
            ipaddress.ip_interface(msg.address)
        for ip in [msg.gateway] * bool(msg.gateway) + list(msg.dns) + [h.ip for h in msg.hosts]:
            ipaddress.ip_address(ip)
    except ValueError as e:
        raise InvalidArgument(f"invalid network config: {e}") from None
    for h in msg.hosts:
        if not _HOST_ENTRY.match(h.name):
            raise InvalidArgument(f"invalid host name {h.name!r}")
    for what, words in (("search domain", msg.dns_search), ("resolver option", msg.dns_options)):
        if len(words) > _RESOLV_ITEMS:
            raise InvalidArgument(f"too many DNS {what}s ({len(words)})")
        for word in words:
            if not _RESOLV_WORD.match(word):
                raise InvalidArgument(f"invalid DNS {what} {word!r}")
    if msg.mac and not (_MAC.match(msg.mac) and int(msg.mac[:2], 16) % 2 == 0):
        raise InvalidArgument(f"invalid MAC address {msg.mac!r} (want a unicast xx:xx:xx:xx:xx:xx)")
    return NetSetup(mode=msg.mode or "none", address=msg.address, gateway=msg.gateway,
                    dns=tuple(msg.dns), hosts=tuple((h.name, h.ip) for h in msg.hosts),
                    mac=msg.mac, dns_search=tuple(msg.dns_search),
                    dns_options=tuple(msg.dns_options))


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Method = Callable[["AgentService", _Req, grpc.ServicerContext], _Resp]


def _describe(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        if e.filename is not None and str(e.filename) not in e.strerror:
            return f"{e.strerror}: {e.filename}"
        return e.strerror
    return f"{type(e).__name__}: {e}"


def _abort_for(context: grpc.ServicerContext, e: Exception) -> None:
    if isinstance(e, AgentError):
        context.abort(getattr(grpc.StatusCode, e.code), e.message)
    import traceback  # the error path only

    traceback.print_exc()
    context.abort(grpc.StatusCode.INTERNAL, _describe(e))


def _rpc(method: _Method[_Req, _Resp]) -> _Method[_Req, _Resp]:
    """Turn AgentError and unexpected exceptions into gRPC statuses."""

    @functools.wraps(method)
    def wrapper(self: AgentService, request: _Req, context: grpc.ServicerContext) -> _Resp:
        try:
            return method(self, request, context)
        except Exception as e:
            _abort_for(context, e)
            raise  # not reached: abort raises

    return wrapper


def _peak_rss_kib() -> int:
    """The agent's VmHWM (0 when /proc does not say)."""
    with contextlib.suppress(OSError, ValueError, IndexError), \
            open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1])
    return 0


def _uptime() -> float:
    try:
        with open("/proc/uptime", "rb") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, guest: Guest, table: ExecTable | None = None) -> None:
        self._guest = guest
        self._freezer = Freezer()
        self._table = table if table is not None else ExecTable()
        self._init_lock = threading.Lock()
        self._shutting_down = threading.Event()
        self._cap_drop = 0  # Init's: what every process started in the box goes without
        self._rlimits = ""  # Init's --ulimit: every process's limits (ulimits.py)
        self._no_new_privs = False  # Init's --security-opt no-new-privileges
        self._group_add: tuple[str, ...] = ()  # Init's --group-add (users.py)
        # When this VM's Init (or a checkpoint's resync) set the box up: a copy's partial
        # file older than that is a copy cut off by an earlier run's end (copyfiles.py)
        self._set_up_at = 0.0
        # (cap_drop, pids_limit, cpu_limit, read_only, tmpfs, ulimits, no-new-privileges,
        # group-add, sysctls) of the box, once its own
        # Init is done
        self._box_limits: tuple[object, ...] | None = None

    # -- machine -----------------------------------------------------------------

    @_rpc
    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        if request.warm_up:
            with contextlib.suppress(AgentError):  # (before Init: no container to warm)
                warm_spawn(self._guest.rootfs(), self._guest.hostname())
        return pb.PingResponse(agent_version=__version__, kernel=os.uname().release,
                               uptime_s=_uptime(), agent_peak_rss_kib=_peak_rss_kib(),
                               clock_ns=time.time_ns())

    @_rpc
    def Init(self, request: pb.InitRequest, context: grpc.ServicerContext) -> pb.InitResponse:
        if request.hostname and not _HOSTNAME.match(request.hostname):
            raise InvalidArgument(f"invalid hostname {request.hostname!r}")
        if request.clock_ns < 0:
            raise InvalidArgument("clock_ns must not be negative")
        if request.pids_limit < 0:
            raise InvalidArgument("pids_limit must not be negative")
        if not math.isfinite(request.cpu_limit) or request.cpu_limit < 0:
            raise InvalidArgument("cpu_limit must be a finite number >= 0")
        if request.resume:
            with self._init_lock:
                self._guest.resync(request.clock_ns, bytes(request.entropy),
                                   request.clock_step_ns)
                self._set_up_at = time.time()
            return pb.InitResponse()
        volumes = [VolumeSpec(v.tag, v.target, v.readonly, v.file_name, v.populate)
                   for v in request.volumes]
        check_volumes(volumes)
        tmpfs = [TmpfsSpec(t.target, t.size_bytes, t.mode, t.readonly, t.exec, t.suid, t.dev,
                           t.uid, t.gid) for t in request.tmpfs]
        check_tmpfs(tmpfs)
        rlimits = helper_spec(request.ulimits)
        sysctls = dict(request.sysctls)
        check_sysctls(sysctls)
        if len(request.group_add) > MAX_GROUP_ADD or any(
                not g or "\0" in g or ":" in g or "\n" in g for g in request.group_add):
            raise InvalidArgument("invalid group_add")
        with self._init_lock:
            # Once the box's own Init (the one with its main process) is done, its
            # limits are fixed for the VM's life: an Init sent again (its answer lost
            # on the way) repeats them, and one that would lift them (from a process
            # of the box that reached the agent) is refused.
            group_add = tuple(request.group_add)
            limits = (request.cap_drop, request.pids_limit, request.cpu_limit,
                      request.read_only, tuple(tmpfs), rlimits, request.no_new_privileges,
                      group_add, tuple(sorted(sysctls.items())))
            if self._box_limits is not None and self._box_limits != limits:
                raise FailedPrecondition("the box is set up already: its limits stay")
            self._guest.init(
                request.hostname, request.clock_ns, bytes(request.entropy), request.rootfs_serial,
                net_setup(request.network), pids_limit=request.pids_limit,
                cpu_limit=request.cpu_limit, clock_step_ns=request.clock_step_ns,
            )
            if volumes:
                mount_volumes(self._guest.rootfs(), volumes)
                if any(v.target.rstrip("/") == "/etc" for v in volumes):
                    self._guest.cover_etc_again(skip={v.target for v in volumes})
            if request.read_only and request.main.make_cwd and request.main.cwd:
                # (docker makes run -w's directory before the root turns read-only)
                with contextlib.suppress(OSError, AgentError):
                    mkdir_all_in_root(self._guest.rootfs(), join_container("/", request.main.cwd))
            if tmpfs or request.read_only:
                self._guest.set_up_root(tmpfs, request.read_only)
            if request.prime:
                warm_page_cache(self._guest.rootfs())
            apply_sysctls(sysctls)
            self._cap_drop = request.cap_drop
            self._rlimits = rlimits
            self._no_new_privs = request.no_new_privileges
            self._group_add = group_add
            self._set_up_at = time.time()
            if request.HasField("main"):
                self._box_limits = limits
        if request.HasField("main"):
            return pb.InitResponse(main=self._start_main(request.main))
        return pb.InitResponse()

    def _start_main(self, request: pb.ExecRequest) -> pb.ExecResponse:
        """Init's main process; an Init sent again (its answer was lost on the way) gets
        the process the first one started, not a second one."""
        if request.exec_id:
            with contextlib.suppress(NotFound):
                started = self._table.get(request.exec_id)
                return pb.ExecResponse(exec_id=started.id, pid=started.pid)
        return self._start(request)

    @_rpc
    def Quiesce(self, request: pb.QuiesceRequest, context: grpc.ServicerContext) -> pb.QuiesceResponse:
        if request.auto_thaw_s < 0:
            raise InvalidArgument("auto_thaw_s must not be negative")
        if request.freeze:
            self._freezer.freeze(self._guest.rootfs(), request.auto_thaw_s)
        else:
            self._freezer.thaw()
        return pb.QuiesceResponse()

    @_rpc
    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> pb.ShutdownResponse:
        if not self._shutting_down.is_set():
            self._shutting_down.set()
            replied = threading.Event()
            context.add_callback(replied.set)
            threading.Thread(target=self._shutdown, args=(replied,), name="shutdown", daemon=True).start()
        return pb.ShutdownResponse()

    def _shutdown(self, replied: threading.Event) -> None:
        replied.wait(2.0)  # the reply has been handed to the transport
        time.sleep(SHUTDOWN_DELAY_S)  # ... and the bridge forwards it to the host
        for execution in self._table.running():
            execution.kill_group()
        self._guest.shutdown()

    # -- processes ---------------------------------------------------------------

    @_rpc
    def Exec(self, request: pb.ExecRequest, context: grpc.ServicerContext) -> pb.ExecResponse:
        return self._start(request, main=False)

    def _start(self, request: pb.ExecRequest, main: bool = True) -> pb.ExecResponse:
        """Start one process (Exec, or Init's main); raises AgentError."""
        if self._shutting_down.is_set():
            raise FailedPrecondition("the box is shutting down")
        if not math.isfinite(request.timeout_s) or request.timeout_s < 0:
            raise InvalidArgument("timeout_s must be a finite number >= 0")
        if request.rows > MAX_WINSIZE or request.cols > MAX_WINSIZE:
            raise InvalidArgument("rows and cols must be at most 65535")
        spec = ExecSpec(
            argv=list(request.argv),
            env=list(request.env),
            cwd=request.cwd,
            user=request.user,
            tty=request.tty,
            rows=request.rows,
            cols=request.cols,
            stdin=request.stdin,
            timeout_s=request.timeout_s,
            hold_output=request.hold_output,
            exec_id=request.exec_id,
            make_cwd=request.make_cwd,
            merge_stderr=request.merge_stderr and not request.tty,
            cap_drop=self._cap_drop,
            rlimits=self._rlimits,
            no_new_privileges=self._no_new_privs,
            group_add=self._group_add,
        )
        root = self._guest.rootfs()
        exec_id = self._table.reserve(spec.exec_id)
        try:
            try:
                spawned = spawn(root, spec, self._guest.hostname())
            except UnknownUser as e:
                if main:
                    raise
                self._table.add(Execution.failed(exec_id, CANNOT_EXECUTE))
                return pb.ExecResponse(exec_id=exec_id, error_exit_code=CANNOT_EXECUTE,
                                       error=e.message)
            except ExecFailure as e:
                self._table.add(Execution.failed(exec_id, e.exit_code))
                return pb.ExecResponse(exec_id=exec_id, error_exit_code=e.exit_code, error=e.message)
            execution = Execution(
                exec_id,
                spawned,
                hold_output=spec.hold_output,
                timeout_s=spec.timeout_s,
                on_done=self._table.finished,
                stdin=spec.stdin,
                release_on_detach=request.release_on_detach,
            )
            self._table.add(execution)
        except BaseException:
            self._table.release(exec_id)
            raise
        return pb.ExecResponse(exec_id=exec_id, pid=execution.pid)

    def Attach(self, request: pb.AttachRequest, context: grpc.ServicerContext) -> Iterator[pb.OutputChunk]:
        try:
            execution = self._table.get(request.exec_id)
            token = execution.output.attach(context.is_active)
        except BufferBusy:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"exec {request.exec_id} already has a client attached",
            )
        except Exception as e:
            _abort_for(context, e)
            raise
        output = execution.output
        context.add_callback(lambda: output.detach(token))
        try:
            while True:
                item = output.peek(token, ATTACH_POLL_S)
                if item is Status.END or item is Status.DETACHED:
                    return
                if item is Status.TIMEOUT:
                    if not context.is_active():
                        return
                    continue
                # Taken before it is sent: a chunk handed to grpc counts as delivered, so
                # a client that cancels and re-attaches never sees a chunk twice (what
                # was in flight when it left is lost, as in any stream).
                output.commit(token, item)
                yield pb.OutputChunk(stream=item.stream, data=item.data)  # type: ignore[arg-type]
        finally:
            output.detach(token)

    @_rpc
    def Input(
        self, request_iterator: Iterator[pb.InputChunk], context: grpc.ServicerContext
    ) -> pb.InputResponse:
        execution: Execution | None = None
        closed = False
        try:
            for chunk in request_iterator:
                if execution is None:
                    if not chunk.exec_id:
                        raise InvalidArgument("the first InputChunk must name exec_id")
                    execution = self._table.get(chunk.exec_id)
                    if not execution.accepts_input:
                        raise FailedPrecondition(f"exec {chunk.exec_id} was started without stdin")
                if closed:
                    continue
                if chunk.data:
                    execution.write_input(chunk.data, context.is_active)
                if chunk.close:
                    execution.close_input()
                    closed = True
        except grpc.RpcError:
            pass  # the client went away: treat like the end of its stream
        if execution is not None and not closed and not execution.tty:
            execution.close_input()
        return pb.InputResponse()

    @_rpc
    def Wait(self, request: pb.WaitRequest, context: grpc.ServicerContext) -> pb.WaitResponse:
        execution = self._table.get(request.exec_id)
        while True:
            status = execution.wait(WAIT_POLL_S)
            if status is not None:
                return pb.WaitResponse(
                    exit_code=status.exit_code, signal=status.signal, timed_out=status.timed_out,
                    oom_killed=BOX_CGROUP.oom_kills() > 0,
                )
            if not context.is_active():
                return pb.WaitResponse()  # nobody is listening any more

    @_rpc
    def Signal(self, request: pb.SignalRequest, context: grpc.ServicerContext) -> pb.SignalResponse:
        if not 1 <= request.signal <= MAX_SIGNAL:
            raise InvalidArgument(f"invalid signal {request.signal}")
        execution = self._table.get(request.exec_id)
        execution.signal(request.signal, group=request.group)
        return pb.SignalResponse()

    @_rpc
    def CloseOutput(self, request: pb.CloseOutputRequest,
                    context: grpc.ServicerContext) -> pb.CloseOutputResponse:
        if request.stream not in (STDOUT, STDERR):
            raise InvalidArgument(f"invalid stream {request.stream}")
        self._table.get(request.exec_id).close_output(request.stream)
        return pb.CloseOutputResponse()

    @_rpc
    def Resize(self, request: pb.ResizeRequest, context: grpc.ServicerContext) -> pb.ResizeResponse:
        if not (0 < request.rows <= MAX_WINSIZE and 0 < request.cols <= MAX_WINSIZE):
            raise InvalidArgument("rows and cols must be between 1 and 65535")
        self._table.get(request.exec_id).resize(request.rows, request.cols)
        return pb.ResizeResponse()

    # -- files (boxlite cp) -------------------------------------------------------

    @_rpc
    def Stat(self, request: pb.StatRequest, context: grpc.ServicerContext) -> pb.StatResponse:
        _check_path(request.path)
        st = stat_path(self._guest.rootfs(), request.path, request.follow_link)
        return pb.StatResponse(exists=st.exists, mode=st.mode, size=st.size,
                               link_target=st.link_target, name=st.name)

    @_rpc
    def Processes(self, request: pb.ProcessesRequest,
                  context: grpc.ServicerContext) -> pb.ProcessesResponse:
        memory, limit = BOX_CGROUP.memory()
        received, sent = net_bytes()
        return pb.ProcessesResponse(net_rx_bytes=received, net_tx_bytes=sent, processes=[
            pb.ProcessInfo(pid=p.pid, ppid=p.ppid, uid=p.uid, user=p.user, state=p.state,
                           cpu_s=p.cpu_s, rss_bytes=p.rss_bytes, started=p.started,
                           threads=p.threads, name=p.name, argv=p.argv,
                           argv_cut=p.argv_cut)
            for p in self._guest.processes()], memory_bytes=memory, memory_limit_bytes=limit)

    @_rpc
    def CopyIn(self, request_iterator: Iterator[pb.CopyInChunk],
               context: grpc.ServicerContext) -> pb.CopyInResponse:
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            raise InvalidArgument("the first CopyInChunk must carry the header")
        _check_path(first.header.dest_dir)

        def data() -> Iterator[bytes]:
            if first.data:
                yield first.data
            for chunk in request_iterator:
                if chunk.data:
                    yield chunk.data

        result = tar_in(self._guest.rootfs(), first.header.dest_dir, first.header.keep_owner,
                        data(), stale_before=self._set_up_at)
        return pb.CopyInResponse(entries=result.entries, bytes=result.bytes)

    def CopyOut(self, request: pb.CopyOutRequest,
                context: grpc.ServicerContext) -> Iterator[pb.TarChunk]:
        def chunks(scope: contextlib.ExitStack) -> Iterator[pb.TarChunk]:
            _check_path(request.path)
            pieces = tar_out(self._guest.rootfs(), request.path, request.follow_link,
                             request.name, request.sparse)
            return (pb.TarChunk(data=piece) for piece in rechunk(pieces))

        yield from _stream(context, chunks)

    def CopyPaths(self, request: pb.CopyPathsRequest,
                  context: grpc.ServicerContext) -> Iterator[pb.TarChunk]:
        def chunks(scope: contextlib.ExitStack) -> Iterator[pb.TarChunk]:
            root = scope.enter_context(root_fs_view(self._guest.rootfs()))
            pieces = tar_paths(root, [os.fsdecode(path) for path in request.paths])
            return (pb.TarChunk(data=piece) for piece in rechunk(pieces))

        yield from _stream(context, chunks)

    def Tree(self, request: pb.TreeRequest,
             context: grpc.ServicerContext) -> Iterator[pb.TreeChunk]:
        yield from _stream(context, lambda scope: tree_chunks(
            scope.enter_context(root_fs_view(self._guest.rootfs()))))


def _stream(context: grpc.ServicerContext,
            make: Callable[[contextlib.ExitStack], Iterator[_Resp]]) -> Iterator[_Resp]:
    """A response stream from `make`'s messages: an error before the first (about the
    request: a path that is not there...) or after it ends the call with its status;
    it stops when the client has gone. What `make` enters in its scope lasts as long."""
    with contextlib.ExitStack() as scope:
        try:
            messages = make(scope)
            first = next(messages, None)
        except Exception as e:
            _abort_for(context, e)
            raise
        if first is None:
            return
        yield first
        try:
            for message in messages:
                if not context.is_active():
                    return
                yield message
        except Exception as e:
            _abort_for(context, e)
            raise


def _check_path(path: str) -> None:
    if not path or "\0" in path:
        raise InvalidArgument(f"invalid path {path!r}")
