#!/usr/bin/env python3
"""Boot a built guest payload in QEMU (TCG) and drive the agent over virtio-serial.

    .venv/bin/python guest-agent/dev/vm_smoke.py PAYLOAD_DIR ROOTFS.ext4 [AGENT_ROOT.ext4]

A development check of the guest side only (the host side's e2e tests use the CLI):
it boots, Pings, Inits twice, runs execs (exit codes, 126/127, tty, stdin, timeout,
kill, users, /etc/hosts, mounts), streams 10 MiB byte-exact, reconnects twice and
shuts the VM down. ROOTFS.ext4 is any image tree, e.g. ``mkfs.ext4 -d TREE img 400M``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from boxlite_agent.pb import agent_pb2 as pb
from boxlite_agent.pb import agent_pb2_grpc

CMDLINE = (
    "console=ttyS0 quiet loglevel=1 panic=-1 reboot=t tsc=reliable no_timer_check "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on boxlite.mode=agent"
)
PRODUCER = (
    "import hashlib, os, sys\nh = hashlib.sha256()\nfor _ in range(160):\n"
    "    b = os.urandom(65536); h.update(b); sys.stdout.buffer.write(b)\n"
    "sys.stdout.flush(); sys.stderr.write(h.hexdigest())\n"
)
T0 = time.monotonic()


def log(*args: object) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s]", *args, flush=True)


def tsc_khz() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return str(int(float(line.split(":")[1]) * 1000))
    return "2000000"


def qemu_argv(payload: Path, rootfs: Path, agent_root: Path, work: Path) -> list[str]:
    return [
        "qemu-system-x86_64", "-M", "microvm", "-accel", "tcg,thread=multi", "-cpu", "max",
        "-smp", "2", "-m", "1024M", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", str(payload / "vmlinuz"), "-initrd", str(payload / "initrd.img"),
        "-append", f"{CMDLINE} tsc_early_khz={tsc_khz()}",
        "-chardev", f"file,id=con,path={work / 'console.log'}", "-serial", "chardev:con",
        "-drive", f"id=agent,file={agent_root},format=raw,if=none,readonly=on",
        "-device", "virtio-blk-device,drive=agent,serial=boxlite-agent",
        "-drive", f"id=rootfs,file={rootfs},format=raw,if=none",
        "-device", "virtio-blk-device,drive=rootfs,serial=boxlite-rootfs",
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=agentch,path={work / 'vm.sock'},server=on,wait=off",
        "-device", "virtserialport,chardev=agentch,name=org.boxlite.agent.0",
        "-device", "virtio-rng-device",
    ]  # fmt: skip


def connect(sock: Path) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(f"unix:{sock}", options=[("grpc.use_local_subchannel_pool", 1)])
    grpc.channel_ready_future(channel).result(timeout=300)
    return channel, agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]


def run(stub: Any, argv: list[str], **kw: Any) -> tuple[int, bytes, bytes]:
    r = stub.Exec(pb.ExecRequest(argv=argv, hold_output=True, **kw), timeout=60)
    if r.error:
        return r.error_exit_code, r.error.encode(), b""
    out, err = bytearray(), bytearray()
    for chunk in stub.Attach(pb.AttachRequest(exec_id=r.exec_id), timeout=300):
        (out if chunk.stream == pb.OutputChunk.STDOUT else err).extend(chunk.data)
    return stub.Wait(pb.WaitRequest(exec_id=r.exec_id), timeout=60).exit_code, bytes(out), bytes(err)


def exercise(stub: Any) -> None:
    for _ in range(2):  # Init is idempotent
        init = pb.InitRequest(
            hostname="smoke-box",
            clock_ns=time.time_ns(),
            entropy=os.urandom(64),
            rootfs_serial="boxlite-rootfs",
        )
        stub.Init(init, timeout=60)
    log("init done (twice)")
    show = "hostname; cat /etc/hosts; id; pwd; ls /dev; awk '{print $5, $9}' /proc/self/mountinfo"
    cases: list[tuple[list[str], dict[str, Any]]] = [
        (["sh", "-c", "echo out; echo err >&2; exit 7"], {}),
        (["no-such-command"], {}),
        (["/etc/passwd"], {}),
        (["sh", "-c", show], {"cwd": "/work/dir"}),
        (["id"], {"user": "nobody"}),
        (["sh", "-c", "stty size; tty"], {"tty": True, "rows": 30, "cols": 100}),
        (["sleep", "10"], {"timeout_s": 0.5}),
    ]
    for argv, kw in cases:
        code, out, err = run(stub, argv, **kw)
        log(f"{argv} {kw} -> {code}\n    out={out.decode(errors='replace')!r}\n    err={err!r}")
    r = stub.Exec(pb.ExecRequest(argv=["cat"], stdin=True, hold_output=True), timeout=60)
    data = os.urandom(300_000)
    chunks = [pb.InputChunk(exec_id=r.exec_id)]
    chunks += [pb.InputChunk(data=data[i : i + 65536]) for i in range(0, len(data), 65536)]
    stub.Input(iter(chunks), timeout=60)
    echoed = b"".join(c.data for c in stub.Attach(pb.AttachRequest(exec_id=r.exec_id), timeout=60))
    log("stdin round trip exact:", echoed == data)
    start = time.monotonic()
    code, out, err = run(stub, ["python3", "-c", PRODUCER])
    took = time.monotonic() - start
    exact = hashlib.sha256(out).hexdigest() == err.decode()
    log(f"10 MiB output exact: {exact}, {len(out) / took / 1e6:.1f} MB/s")
    r = stub.Exec(pb.ExecRequest(argv=["sleep", "100"]), timeout=60)
    stub.Signal(pb.SignalRequest(exec_id=r.exec_id, signal=9), timeout=60)
    log("SIGKILL ->", stub.Wait(pb.WaitRequest(exec_id=r.exec_id), timeout=60).exit_code)


def main() -> int:
    payload, rootfs = Path(sys.argv[1]), Path(sys.argv[2])
    agent_root = Path(sys.argv[3]) if len(sys.argv) > 3 else payload / "agent-root.ext4"
    work = Path(tempfile.mkdtemp(prefix="agent-smoke-"))
    qemu = subprocess.Popen(qemu_argv(payload, rootfs, agent_root, work))
    try:
        while not (work / "vm.sock").exists():
            time.sleep(0.01)
        channel, stub = connect(work / "vm.sock")
        log("ping:", stub.Ping(pb.PingRequest(), timeout=60))
        exercise(stub)
        for pause in (0.5, 0.0):  # a new host connection gets a new HTTP/2 session
            channel.close()
            time.sleep(pause)
            channel, stub = connect(work / "vm.sock")
            log(f"reconnected after {pause}s: uptime", stub.Ping(pb.PingRequest(), timeout=60).uptime_s)
        stub.Shutdown(pb.ShutdownRequest(), timeout=60)
        log("VM exited:", qemu.wait(timeout=60))
    finally:
        if qemu.poll() is None:
            qemu.kill()
        print((work / "console.log").read_text(errors="replace")[-2000:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
