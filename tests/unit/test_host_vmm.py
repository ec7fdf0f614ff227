"""The QEMU command line, the guest kernel command line and choosing the accelerator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from boxlite_cli import payload
from boxlite_cli.errors import UsageError
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.vmm import accel, cmdline, qemu
from boxlite_cli.vmm.base import VmSpec
from boxlite_cli.vmm.cmdline import BASE_CMDLINE, kernel_cmdline
from boxlite_cli.vmm.drivers import get_driver
from boxlite_cli.vmm.qemu import SANDBOX, QemuDriver

P = Path("/p")
HOST_TSC_KHZ = cmdline.host_tsc_khz  # the real one; the fixture pins it for command lines


def vm_spec(**kw: object) -> VmSpec:
    values: dict[str, object] = dict(
        kernel=P / "vmlinuz", initrd=P / "initrd.img", agent_root=P / "agent-root.ext4",
        rootfs_disk=Path("/b/disks/rootfs.qcow2"), console_log=Path("/b/console.log"),
        agent_socket=Path("/b/run/vm.sock"), control_socket=Path("/b/run/qmp.sock"),
        cpus=2, memory_mib=1024,
    )
    values.update(kw)
    return VmSpec(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _qemu_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(cmdline, "host_tsc_khz", lambda: 2445422)


def option_values(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd[:-1]) if arg == flag]


EXPECTED_APPEND = ("console=ttyS0 quiet loglevel=1 panic=-1 tsc=reliable random.trust_cpu=on "
                   "cryptomgr.notests initcall_blacklist=init_kprobe_trace boxlite.mode=agent "
                   "tsc_early_khz=2445422")


def test_tcg_command_line_is_exactly_this() -> None:
    assert QemuDriver().command(vm_spec(accel="tcg")) == [
        "/usr/bin/qemu-system-x86_64",
        "-M", "microvm",
        "-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max",
        "-smp", "2",
        "-m", "1024M",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-kernel", "/p/vmlinuz",
        "-initrd", "/p/initrd.img",
        "-append", EXPECTED_APPEND,
        "-chardev", "file,id=con,path=/b/console.log,append=on",
        "-serial", "chardev:con",
        "-qmp", "unix:/b/run/qmp.sock,server=on,wait=off",
        "-drive", "id=agent,file=/p/agent-root.ext4,format=raw,if=none,readonly=on",
        "-device", "virtio-blk-device,drive=agent,serial=boxlite-agent",
        "-drive", "id=rootfs,file=/b/disks/rootfs.qcow2,format=qcow2,if=none,discard=unmap",
        "-device", "virtio-blk-device,drive=rootfs,serial=boxlite-rootfs",
        "-device", "virtio-serial-device",
        "-chardev", "socket,id=agentch,path=/b/run/vm.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=agentch,name=org.boxlite.agent.0",
        "-device", "virtio-rng-device",
    ]


def test_kvm_differs_only_in_the_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cmdline, "host_tsc_khz", lambda: None)
    tcg = QemuDriver().command(vm_spec(accel="tcg"))
    kvm = QemuDriver().command(vm_spec(accel="kvm"))
    assert option_values(kvm, "-accel") == ["kvm"]
    assert option_values(kvm, "-cpu") == ["host"]
    strip = {"-accel", "-cpu"}

    def without_accel(cmd: list[str]) -> list[str]:
        return [a for i, a in enumerate(cmd) if a not in strip and cmd[i - 1] not in strip]

    assert without_accel(kvm) == without_accel(tcg)


def test_probe_mode_attaches_no_disks_and_no_agent_port() -> None:
    cmd = QemuDriver().command(vm_spec(accel="kvm", mode="probe", memory_mib=256))
    assert "-drive" not in cmd
    assert not any("virtio-blk" in a or "virtserialport" in a or "virtio-serial" in a
                   for a in cmd)
    assert option_values(cmd, "-append") == [kernel_cmdline("probe")]
    assert "boxlite.mode=probe" in option_values(cmd, "-append")[0]
    assert option_values(cmd, "-m") == ["256M"]
    assert option_values(cmd, "-sandbox")[0].startswith("on")


def test_agent_port_and_disk_serials_are_the_payload_contract() -> None:
    cmd = QemuDriver().command(vm_spec())
    devices = option_values(cmd, "-device")
    assert f"virtserialport,chardev=agentch,name={payload.AGENT_PORT_NAME}" in devices
    serials = [d.rpartition("serial=")[2] for d in devices if d.startswith("virtio-blk-device")]
    assert serials == [payload.AGENT_DISK_SERIAL, payload.ROOTFS_DISK_SERIAL]
    # The agent's own root is never writable by the guest.
    agent_drive = next(d for d in option_values(cmd, "-drive") if d.startswith("id=agent,"))
    assert "readonly=on" in agent_drive.split(",")


def test_qemu_is_sandboxed() -> None:
    cmd = QemuDriver().command(vm_spec())
    assert option_values(cmd, "-sandbox") == [SANDBOX]
    fields = SANDBOX.split(",")
    assert fields[0] == "on"
    assert {"spawn=deny", "elevateprivileges=deny"} <= set(fields)
    assert "-nodefaults" in cmd and "-no-user-config" in cmd


def test_commas_in_paths_are_escaped_for_qemu() -> None:
    # QEMU option values are comma-separated: a ',' in a path must be written ',,'
    # or it ends the value (and the rest is parsed as more options).
    cmd = QemuDriver().command(vm_spec(
        rootfs_disk=Path("/home/a,b/disks/rootfs.qcow2,readonly=on"),
        agent_socket=Path("/home/a,b/run/vm.sock"),
        console_log=Path("/home/a,b/console.log"),
    ))
    drives = option_values(cmd, "-drive")
    assert "id=rootfs,file=/home/a,,b/disks/rootfs.qcow2,,readonly=on,format=qcow2" in drives[1]
    assert any("path=/home/a,,b/run/vm.sock," in c for c in option_values(cmd, "-chardev"))
    assert "file,id=con,path=/home/a,,b/console.log,append=on" in option_values(cmd, "-chardev")


def test_agent_target_is_the_vm_socket() -> None:
    assert QemuDriver().agent_target(vm_spec()) == "unix:/b/run/vm.sock"


def test_extra_kernel_arguments_come_last() -> None:
    line = kernel_cmdline("agent", ("boxlite.debug=1", "init=/x"))
    assert line.split() == [*BASE_CMDLINE, "boxlite.mode=agent", "boxlite.debug=1", "init=/x"]
    cmd = QemuDriver().command(vm_spec(extra_cmdline=("boxlite.debug=1",)))
    assert option_values(cmd, "-append")[0].endswith("tsc_early_khz=2445422 boxlite.debug=1")


def test_kernel_cmdline_keeps_the_console_quiet_and_never_reboots() -> None:
    words = kernel_cmdline("agent").split()
    assert "console=ttyS0" in words and "quiet" in words
    assert "panic=-1" in words  # a panic powers off (-no-reboot) instead of hanging


def test_get_driver() -> None:
    assert get_driver("qemu").name == "qemu"
    with pytest.raises(UsageError, match="unknown VMM"):
        get_driver("bochs")


def test_launch_round_trips_through_vm_json(tmp_path: Path) -> None:
    launch = Launch("qemu", vm_spec(accel="kvm", extra_cmdline=("a=1",)), 42.5)
    launch.save(tmp_path / "vm.json")
    assert Launch.load(tmp_path / "vm.json") == launch
    assert json.loads((tmp_path / "vm.json").read_text())["vm"]["kernel"] == "/p/vmlinuz"
    direct = Launch("qemu", vm_spec(), 42.5, foreground=True, output_fds=(7, 8))
    direct.save(tmp_path / "direct.json")
    assert Launch.load(tmp_path / "direct.json").output_fds == (7, 8)


# the accelerator ----------------------------------------------------------------------------

def test_requested_accel_defaults_to_auto() -> None:
    assert accel.requested_accel(None) == "auto"


def test_requested_accel_flag_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_ACCEL", "kvm")
    assert accel.requested_accel(None) == "kvm"
    assert accel.requested_accel("tcg") == "tcg"
    assert accel.requested_accel("TCG") == "tcg"
    monkeypatch.setenv("BOXLITE_ACCEL", "")
    assert accel.requested_accel(None) == "auto"


@pytest.mark.parametrize(("flag", "env"), [("hvf", None), (None, "xen"), ("kvm ", None)])
def test_invalid_accel_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, flag: str | None,
                                        env: str | None) -> None:
    if env is not None:
        monkeypatch.setenv("BOXLITE_ACCEL", env)
    with pytest.raises(UsageError, match="invalid accelerator"):
        accel.requested_accel(flag)


class ProbeCounter:
    """Stands in for the real (seconds-long) KVM probe and counts its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, boot: str, problem: str | None = None,
                 ok: bool = True) -> None:
        self.boot = boot
        self.static_calls = 0
        self.probe_calls = 0
        self.problem = problem
        self.ok = ok
        monkeypatch.setattr(accel, "boot_id", lambda: self.boot)
        monkeypatch.setattr(accel, "static_kvm_problem", self._static)
        monkeypatch.setattr(accel, "probe_kvm", self._probe)

    def _static(self) -> str | None:
        self.static_calls += 1
        return self.problem

    def _probe(self, kernel: Path, initrd: Path, timeout_s: float = 0) -> tuple[bool, str]:
        self.probe_calls += 1
        return (self.ok, "a KVM guest booted" if self.ok else "a KVM guest failed to boot")


def test_verdict_is_cached_per_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = ProbeCounter(monkeypatch, boot="boot-1")
    cache = tmp_path / "cache" / "accel.json"
    first = accel.kvm_verdict(cache, P / "k", P / "i")
    assert (first.kvm_ok, first.boot_id, counter.probe_calls) == (True, "boot-1", 1)
    second = accel.kvm_verdict(cache, P / "k", P / "i")
    assert second == first
    assert (first.fresh, second.fresh) == (True, False)  # the CLI warns on a fresh one only
    assert (counter.probe_calls, counter.static_calls) == (1, 1)
    # After a reboot the host may have changed: probe again.
    counter.boot = "boot-2"
    counter.ok = False
    third = accel.kvm_verdict(cache, P / "k", P / "i")
    assert (third.kvm_ok, third.boot_id, counter.probe_calls) == (False, "boot-2", 2)
    assert json.loads(cache.read_text())["boot_id"] == "boot-2"
    assert accel.kvm_verdict(cache, P / "k", P / "i") == third
    assert counter.probe_calls == 2


def test_static_problem_skips_the_probe_and_is_cached(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    counter = ProbeCounter(monkeypatch, boot="b", problem="/dev/kvm is served by kvm_pvm")
    cache = tmp_path / "accel.json"
    verdict = accel.kvm_verdict(cache, P / "k", P / "i")
    assert not verdict.kvm_ok and "kvm_pvm" in verdict.reason
    accel.kvm_verdict(cache, P / "k", P / "i")
    assert (counter.static_calls, counter.probe_calls) == (1, 0)


@pytest.mark.parametrize("content", ["", "{", "[]", '{"boot_id": "b"}', "null"])
def test_unreadable_cache_means_probe_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            content: str) -> None:
    counter = ProbeCounter(monkeypatch, boot="b")
    cache = tmp_path / "accel.json"
    cache.write_text(content)
    assert accel.kvm_verdict(cache, P / "k", P / "i").kvm_ok
    assert counter.probe_calls == 1
    assert json.loads(cache.read_text()) == {"boot_id": "b", "kvm_ok": True,
                                             "reason": "a KVM guest booted"}


def test_unwritable_cache_still_gives_a_verdict(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ProbeCounter(monkeypatch, boot="b")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert accel.kvm_verdict(blocker / "accel.json", P / "k", P / "i").kvm_ok


def test_static_kvm_problem_names_pvm(monkeypatch: pytest.MonkeyPatch) -> None:
    present = {"/dev/kvm", "/sys/module/kvm_pvm"}
    monkeypatch.setattr(accel.os.path, "exists", lambda p: p in present)
    monkeypatch.setattr(accel.os, "access", lambda p, mode: True)
    assert "kvm_pvm" in (accel.static_kvm_problem() or "")
    present.discard("/sys/module/kvm_pvm")
    assert accel.static_kvm_problem() is None
    present.discard("/dev/kvm")
    assert "/dev/kvm does not exist" in (accel.static_kvm_problem() or "")


def test_probe_that_cannot_run_qemu_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qemu.shutil, "which", lambda name: "/nonexistent/qemu-system-x86_64")
    ok, reason = accel.probe_kvm(P / "k", P / "i", timeout_s=5)
    assert not ok and "could not run QEMU" in reason


def test_boot_id_is_this_boot() -> None:
    assert accel.boot_id() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


CPUINFO = """processor\t: 0
model name\t: AMD EPYC
cpu MHz\t\t: 2445.422
flags\t\t: fpu tsc constant_tsc nonstop_tsc tsc_known_freq rdtsc
bogomips\t: 4890.84
processor\t: 1
cpu MHz\t\t: 1000.000
bogomips\t: 4890.84
"""


def test_host_tsc_khz_from_cpuinfo() -> None:
    assert HOST_TSC_KHZ(CPUINFO, cpufreq=False) == 2445422


def test_host_tsc_khz_needs_a_known_constant_tsc() -> None:
    assert HOST_TSC_KHZ(CPUINFO.replace(" tsc_known_freq", ""), cpufreq=False) is None
    assert HOST_TSC_KHZ(CPUINFO.replace(" constant_tsc", ""), cpufreq=False) is None
    assert HOST_TSC_KHZ("processor\t: 0\n", cpufreq=False) is None


def test_host_tsc_khz_is_not_a_current_cpu_frequency() -> None:
    """Bare metal reports the current (scaled) frequency as "cpu MHz": the TSC rate
    is read from bogomips there (TSC kHz / 500), or not at all."""
    scaled = CPUINFO.replace("cpu MHz\t\t: 2445.422", "cpu MHz\t\t: 1197.315")
    assert HOST_TSC_KHZ(scaled.replace(" rdtsc", " rdtsc aperfmperf"), cpufreq=False) == 2445420
    assert HOST_TSC_KHZ(scaled, cpufreq=True) == 2445420
    no_bogomips = "\n".join(line for line in scaled.splitlines() if "bogomips" not in line)
    assert HOST_TSC_KHZ(no_bogomips, cpufreq=True) is None


def test_tsc_rate_is_given_to_tcg_guests_only() -> None:
    tcg = option_values(QemuDriver().command(vm_spec(accel="tcg")), "-append")[0]
    kvm = option_values(QemuDriver().command(vm_spec(accel="kvm")), "-append")[0]
    assert "tsc_early_khz=2445422" in tcg.split()
    assert "tsc_early_khz" not in kvm


def test_a_restore_reads_its_memory_from_an_inherited_fd_or_waits_for_qmp() -> None:
    driver = QemuDriver()
    spec = vm_spec(restore_from="/cache/templates/k")
    assert driver.restore_file(spec) == Path("/cache/templates/k/memory.state")
    assert driver.restore_file(vm_spec()) is None
    assert option_values(driver.command(spec, restore_fd=7), "-incoming") == ["fd:7"]
    assert option_values(driver.command(spec), "-incoming") == ["defer"]
    assert "-incoming" not in driver.command(vm_spec(), restore_fd=7)


def test_guest_ram_is_qemus_own_shared_in_a_memfd_or_a_private_map_of_a_ram_image(
        tmp_path: Path) -> None:
    driver = QemuDriver()
    assert "-object" not in driver.command(vm_spec())
    shared = driver.command(vm_spec(memory_mib=256), ram_fd=9)
    assert option_values(shared, "-object") == [
        "memory-backend-file,id=microvm.ram,size=256M,mem-path=/proc/self/fd/9,share=on"]
    assert option_values(shared, "-machine") == ["memory-backend=microvm.ram"]
    template = tmp_path / "tpl,1"
    template.mkdir()
    (template / "device.state").write_bytes(b"")
    (template / "ram.img").write_bytes(b"")
    spec = vm_spec(restore_from=str(template))
    restored = driver.command(spec)
    assert option_values(restored, "-object") == [
        f"memory-backend-file,id=microvm.ram,size=1024M,mem-path={tmp_path}/tpl,,1/ram.img,"
        "share=off"]
    assert driver.restore_file(spec) is None, "the small device state goes over QMP"
    assert option_values(restored, "-incoming") == ["defer"]


def test_the_root_disk_can_be_opened_through_an_inherited_descriptor() -> None:
    """Not by its path, which a spare's disk leaves (QEMU reopens it for a migration)."""
    cmd = QemuDriver().command(vm_spec(), disk_fd=7)
    assert option_values(cmd, "-drive")[1] == (
        "id=rootfs,file=/proc/self/fd/7,format=qcow2,if=none,discard=unmap")
