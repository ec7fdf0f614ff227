#!/usr/bin/env python3
"""Start-up benchmark: side by side in one run, on the same kernel and initramfs.

  floor      bare QEMU boot to the initramfs's /init and power-off (boxlite.mode=floor)
  restore    bare QEMU restore of the warm-start template (the same VM boxlite saves):
             QEMU start on the template's RAM image, device state load, running
  cold run   boxlite run --rm --cold localhost/debian:bookworm true
  warm run   boxlite run --rm localhost/debian:bookworm true, as it runs by default: it
             takes the spare VM the previous warm run left (restored from the template,
             warmed up, paused; runtime/spares.py), which the bench lets get ready first
  restore run  the same with BOXLITE_SPARES=0: restored from the template on its path
  exec       boxlite exec BOX true, on a running box

Prints the median of each and the ratios (targets: cold run <= 1.5x floor; warm run
<= 0.25x floor and <= 1.5x restore; exec <= 0.3 s). Between two measurements the
bench waits until no spare is being made (that work is done at nice 19, but on a
2-core host it would still be in the next measurement). Beside each wall-clock time: the
CPU time the whole host spent on it (every process: CLI, shim, QEMU's threads), from
/proc/stat, less the idle host's own rate. On a shared, noisy host the CPU times move
less than the wall-clock ones, and they show what overlapping work cannot hide: a warm
run that needs 1.4 CPU-seconds cannot take under 0.7 s on 2 cores.
Usage: .venv/bin/python bench/start.py [-n RUNS] [--accel auto|kvm|tcg] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boxlite_cli.disks.chain import qcow2_backing
from boxlite_cli.disks.qcow2 import create_overlay
from boxlite_cli.payload import DEFAULT_IMAGE, find_payload
from boxlite_cli.runtime.spares import Spares
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.vmm.base import VmSpec
from boxlite_cli.vmm.qemu import QemuDriver
from boxlite_cli.vmm.qmp import Qmp

BOXLITE = str(Path(sys.executable).with_name("boxlite"))


SETTLE_S = 0.25  # after a command returns, for its shim and VMM to finish exiting


def busy_cpu_s() -> float:
    """CPU seconds the host has spent busy since boot (all CPUs; steal and idle excluded)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def idle_rate(span_s: float = 1.0) -> float:
    """Busy CPU seconds per second of the host while the bench does nothing."""
    before = busy_cpu_s()
    time.sleep(span_s)
    return (busy_cpu_s() - before) / span_s


def timed(fn: Callable[[], object], idle: float) -> tuple[float, float]:
    """Wall-clock seconds of `fn` and the host's CPU seconds for it (see the module doc)."""
    cpu0 = busy_cpu_s()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    time.sleep(SETTLE_S)
    span = time.perf_counter() - start
    return wall, max(0.0, busy_cpu_s() - cpu0 - idle * span)


def floor_boot(accel: str, tmp: Path) -> None:
    payload = find_payload()
    spec = VmSpec(kernel=payload.kernel, initrd=payload.initrd, agent_root=tmp / "x",
                  rootfs_disk=tmp / "x", console_log=tmp / "console.log",
                  agent_socket=tmp / "a.sock", control_socket=tmp / "c.sock",
                  accel=accel, mode="floor")
    subprocess.run(QemuDriver().command(spec), check=True, capture_output=True, timeout=120)
    if b"BOXLITE-PROBE-OK" not in (tmp / "console.log").read_bytes():
        raise RuntimeError("the floor VM did not reach /init")


def bare_restore(launch_file: Path, tmp: Path) -> None:
    """QEMU alone: start it for a restore of the template, load it, run, kill."""
    launch = Launch.load(launch_file)
    overlay = tmp / "rootfs.qcow2"
    create_overlay(Path(str(qcow2_backing(launch.vm.rootfs_disk))), overlay)
    spec = dataclasses.replace(launch.vm, rootfs_disk=overlay, console_log=tmp / "console.log",
                               agent_socket=tmp / "a.sock", control_socket=tmp / "c.sock",
                               port_forwards=())
    vmm = subprocess.Popen(QemuDriver().command(spec), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        control = Qmp(spec.control_socket)
        control.wait_ready(30)
        control.restore(Path(spec.restore_from))
        control.resume()
        if control.info()["state"] != "running":
            raise RuntimeError("the restored VM does not run")
    finally:
        vmm.kill()
        vmm.wait()


def boxlite(*args: str, spares: bool = True) -> str:
    env = {**os.environ, "BOXLITE_SPARES": "1" if spares else "0"}
    out = subprocess.run([BOXLITE, *args], check=True, capture_output=True, text=True,
                         timeout=300, env=env)
    return out.stdout.strip()


def settle_spares(home: str, timeout_s: float = 120.0) -> None:
    """Wait until every spare of `home` is ready (none is being made)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        spares = Spares(Path(home) / "spares").list()
        if all(s.ready or s.pid is None for s in spares):
            return
        time.sleep(0.05)
    raise RuntimeError("a spare VM did not get ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--accel", default=os.environ.get("BOXLITE_ACCEL", "tcg"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="boxlite-bench-")
    os.environ["BOXLITE_HOME"] = home
    os.environ["BOXLITE_ACCEL"] = args.accel
    accel = args.accel if args.accel != "auto" else "tcg"
    # unpack the image and save the warm-start template once, outside the timing
    boxlite("run", "--rm", DEFAULT_IMAGE, "true")
    names = ("floor", "restore", "cold run", "warm run", "restore run", "exec")
    results: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    box = boxlite("run", "-d", DEFAULT_IMAGE, "sleep", "3600")
    launch_file = next(Path(home, "boxes").glob(f"{box}*/vm.json"))
    if not Launch.load(launch_file).vm.restore_from:
        raise RuntimeError("the bench box did not start from a warm-start template")

    def measure(name: str, fn: Callable[[], object]) -> None:
        settle_spares(home)
        wall, spent = timed(fn, idle)
        results[name].append(wall)
        cpu[name].append(spent)

    try:
        settle_spares(home)  # (the bench box left one: made before the idle rate is taken)
        idle = idle_rate()  # (the bench box idles meanwhile: its share counts as idle)
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                measure("floor", lambda: floor_boot(accel, Path(tmp)))
            with tempfile.TemporaryDirectory() as tmp:
                measure("restore", lambda: bare_restore(launch_file, Path(tmp)))
            measure("cold run", lambda: boxlite("run", "--rm", "--cold", DEFAULT_IMAGE, "true"))
            measure("warm run", lambda: boxlite("run", "--rm", DEFAULT_IMAGE, "true"))
            measure("restore run", lambda: boxlite("run", "--rm", DEFAULT_IMAGE, "true",
                                                   spares=False))
            measure("exec", lambda: boxlite("exec", box, "true"))
    finally:
        subprocess.run([BOXLITE, "rm", "-f", box], capture_output=True)
        Spares(Path(home) / "spares").stop_all()
        shutil.rmtree(home, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratios = {"cold run / floor": med["cold run"] / med["floor"],
              "warm run / floor": med["warm run"] / med["floor"],
              "warm run / restore": med["warm run"] / med["restore"],
              "restore run / floor": med["restore run"] / med["floor"],
              "exec / floor": med["exec"] / med["floor"],
              "warm run / floor, CPU time": med_cpu["warm run"] / med_cpu["floor"]}
    if args.json:
        print(json.dumps({"accel": args.accel, "median_s": med, "runs": results,
                          "median_cpu_s": med_cpu, "cpu_runs": cpu, "idle_cpu_per_s": idle,
                          "ratios": ratios}, indent=2))
        return 0
    print(f"accelerator: {args.accel}, {args.runs} runs each, medians (wall clock, host CPU)")
    for name, value in med.items():
        print(f"  {name:<11} {value:7.3f} s   {med_cpu[name]:7.3f} CPU-s")
    for name, value in ratios.items():
        print(f"  {name:<26} {value:5.2f}x")
    print("targets: cold run <= 1.50x floor; warm run <= 0.25x floor and <= 1.50x restore; "
          "exec <= 0.300 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
