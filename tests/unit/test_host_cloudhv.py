"""The cloud-hypervisor driver: command lines, the REST client against a real HTTP server
on a unix socket, `--vmm auto` selection, config/env precedence and doctor's report."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from boxlite_cli.errors import UsageError, VmError
from boxlite_cli.runtime import doctor
from boxlite_cli.state.settings import vmm_setting
from boxlite_cli.vmm import chapi, cloudhv, drivers
from boxlite_cli.vmm.base import NET_NONE, NET_USER, PortForward, Share, VmmUnsupported, VmSpec
from boxlite_cli.vmm.chapi import ChApi, VmmApiError, VmmApiTimeout
from boxlite_cli.vmm.cloudhv import CloudHypervisorDriver
from boxlite_cli.vmm.drivers import (
    CLOUD_HYPERVISOR,
    QEMU,
    check_box_config,
    choose_vmm,
    get_driver,
    requested_vmm,
)

P = Path("/p")
CMDLINE = ("console=ttyS0 quiet loglevel=1 panic=-1 tsc=reliable random.trust_cpu=on "
           "cryptomgr.notests initcall_blacklist=init_kprobe_trace boxlite.mode=agent")


def vm_spec(**kw: object) -> VmSpec:
    values: dict[str, object] = dict(
        kernel=P / "vmlinux", initrd=P / "initrd.img", agent_root=P / "agent-root.ext4",
        rootfs_disk=Path("/b/disks/rootfs.qcow2"), console_log=Path("/b/console.log"),
        agent_socket=Path("/b/run/vm.sock"), control_socket=Path("/b/run/qmp.sock"),
        cpus=1, memory_mib=512, accel="kvm", network=NET_NONE,
    )
    values.update(kw)
    return VmSpec(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _ch_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("boxlite_cli.vmm.cloudhv.shutil.which",
                        lambda name: f"/usr/local/bin/{name}")


def expected(cpus: int, memory: str) -> list[str]:
    return [
        "/usr/local/bin/cloud-hypervisor",
        "--api-socket", "path=/b/run/qmp.sock",
        "--kernel", "/p/vmlinux",
        "--initramfs", "/p/initrd.img",
        "--cmdline", CMDLINE,
        "--cpus", f"boot={cpus}",
        "--memory", f"size={memory}",
        "--serial", "file=/b/console.log",
        "--console", "off",
        "--seccomp", "true",
        "--disk",
        "path=/p/agent-root.ext4,readonly=on,image_type=raw,serial=boxlite-agent",
        "path=/b/disks/rootfs.qcow2,image_type=qcow2,backing_files=on,serial=boxlite-rootfs",
        "--vsock", "cid=3,socket=/b/run/vm.sock",
        "--rng", "src=/dev/urandom",
    ]


def test_command_line_one_cpu_is_exactly_this() -> None:
    assert CloudHypervisorDriver().command(vm_spec()) == expected(1, "512M")


def test_command_line_four_cpus_two_gib() -> None:
    assert CloudHypervisorDriver().command(vm_spec(cpus=4, memory_mib=2048)) == \
        expected(4, "2048M")


def test_no_tcg_tuning_and_extra_cmdline_appended() -> None:
    cmd = CloudHypervisorDriver().command(vm_spec(extra_cmdline=("boxlite.vsock_loopback=1",)))
    line = cmd[cmd.index("--cmdline") + 1]
    assert line == CMDLINE + " boxlite.vsock_loopback=1"
    assert "tsc_early_khz" not in line


def test_probe_mode_has_no_devices() -> None:
    cmd = CloudHypervisorDriver().command(vm_spec(mode="probe"))
    assert "--disk" not in cmd and "--vsock" not in cmd
    assert "boxlite.mode=probe" in cmd[cmd.index("--cmdline") + 1]


def test_a_restore_starts_a_vm_less_vmm_for_the_api_to_restore_into() -> None:
    cmd = CloudHypervisorDriver().command(vm_spec(restore_from="/b/snap"))
    assert cmd == ["/usr/local/bin/cloud-hypervisor", "--api-socket", "path=/b/run/qmp.sock"]


def test_seccomp_is_never_turned_off() -> None:
    cmd = CloudHypervisorDriver().command(vm_spec())
    assert cmd[cmd.index("--seccomp") + 1] == "true"


@pytest.mark.parametrize(("spec", "words"), [
    (vm_spec(network=NET_USER), "no user-mode network"),
    (vm_spec(port_forwards=(PortForward("tcp", "127.0.0.1", 8080, 80),)), "no user-mode network"),
    (vm_spec(shares=(Share("v0", "/data"),)), "no virtio-9p"),
    (vm_spec(accel="tcg"), "needs KVM"),
    (vm_spec(rootfs_disk=Path("/b,c/rootfs.qcow2")), "comma"),
])
def test_what_cloud_hypervisor_cannot_run_is_a_clear_error(spec: VmSpec, words: str) -> None:
    with pytest.raises(VmmUnsupported, match=words) as e:
        CloudHypervisorDriver().command(spec)
    assert e.value.hint


def test_agent_channel_is_hybrid_vsock_without_a_direct_socket() -> None:
    ch = CloudHypervisorDriver().agent_channel(vm_spec())
    assert ch.unix_path is None and "vsock" in ch.description and "2695" in ch.description


def test_qemu_agent_channel_is_its_chardev_socket() -> None:
    ch = get_driver(QEMU).agent_channel(vm_spec())
    assert ch.unix_path == Path("/b/run/vm.sock")


def test_get_driver_knows_both() -> None:
    assert get_driver(CLOUD_HYPERVISOR).name == "cloud-hypervisor"
    assert get_driver(QEMU).name == "qemu"


def test_version_parsing() -> None:
    assert cloudhv.parse_version("cloud-hypervisor v51.1.0") == (51, 1)
    assert cloudhv.parse_version("cloud-hypervisor v40.0.0-dirty") == (40, 0)
    assert cloudhv.parse_version("garbage") is None


# the REST API ---------------------------------------------------------------------------


@dataclass
class Seen:
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)


class UnixHTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)
        self.server_name, self.server_port = "localhost", 0


def make_handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

        def handle_any(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            body = json.loads(raw) if raw else None
            seen.requests.append((self.command, self.path, body))
            endpoint = self.path.removeprefix("/api/v1/")
            if endpoint in seen.hang:
                seen.release.wait(10)
                return
            status, data = seen.answers.get(endpoint, (204, b""))
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = handle_any

    return Handler


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ChApi, Seen]]:
    seen = Seen()
    path = tmp_path / "api.sock"
    server = UnixHTTPServer(str(path), make_handler(seen))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ChApi(path, timeout_s=2.0), seen
    finally:
        seen.release.set()
        server.shutdown()
        server.server_close()


def test_every_action_is_the_right_request(api: tuple[ChApi, Seen], tmp_path: Path) -> None:
    client, seen = api
    client.pause()
    client.resume()
    client.power_button()
    client.snapshot(tmp_path / "snap")
    client.restore(tmp_path / "snap")
    client.shutdown()
    assert seen.requests == [
        ("PUT", "/api/v1/vm.pause", None),
        ("PUT", "/api/v1/vm.resume", None),
        ("PUT", "/api/v1/vm.power-button", None),
        ("PUT", "/api/v1/vm.snapshot", {"destination_url": f"file://{tmp_path}/snap"}),
        ("PUT", "/api/v1/vm.restore", {"source_url": f"file://{tmp_path}/snap",
                                       "prefault": False}),
        ("PUT", "/api/v1/vm.shutdown", None),
        ("PUT", "/api/v1/vmm.shutdown", None),
    ]


def test_info_and_ping_decode_json(api: tuple[ChApi, Seen]) -> None:
    client, seen = api
    seen.answers["vm.info"] = (200, json.dumps({"state": "Running", "config": {}}).encode())
    seen.answers["vmm.ping"] = (200, b'{"version": "v51.1.0", "pid": 7}')
    assert client.info()["state"] == "Running"
    assert client.ping() == {"version": "v51.1.0", "pid": 7}
    client.wait_ready(1.0)
    assert [r[:2] for r in seen.requests] == [("GET", "/api/v1/vm.info"),
                                               ("GET", "/api/v1/vmm.ping"),
                                               ("GET", "/api/v1/vmm.ping")]


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_error_statuses_carry_the_vmm_reason(api: tuple[ChApi, Seen], status: int) -> None:
    client, seen = api
    seen.answers["vm.pause"] = (status, b"Error from API: VM is not running")
    with pytest.raises(VmmApiError) as e:
        client.pause()
    assert e.value.status == status
    assert f"HTTP {status}" in str(e.value)
    assert "VM is not running" in str(e.value)
    assert "PUT /api/v1/vm.pause" in str(e.value)
    assert isinstance(e.value, VmError)


def test_invalid_json_is_an_error(api: tuple[ChApi, Seen]) -> None:
    client, seen = api
    seen.answers["vm.info"] = (200, b"{not json")
    with pytest.raises(VmmApiError, match="invalid JSON"):
        client.info()


def test_info_without_state_is_an_error(api: tuple[ChApi, Seen]) -> None:
    client, seen = api
    seen.answers["vm.info"] = (200, b'{"config": {}}')
    with pytest.raises(VmmApiError, match="no state"):
        client.info()


def test_a_server_that_never_answers_times_out(api: tuple[ChApi, Seen]) -> None:
    client, seen = api
    seen.hang.add("vm.pause")  # (it closes the connection after 10 s: no timeout, then)
    client.timeout_s = 0.3
    with pytest.raises(VmmApiTimeout, match=r"did not answer PUT /api/v1/vm\.pause within 0\.3 s"):
        client.pause()


def test_a_listener_that_never_accepts_times_out(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    try:
        with pytest.raises(VmmApiTimeout):
            ChApi(path, timeout_s=0.3).info()
    finally:
        s.close()


class FakeTime:
    """chapi's `time` in a test: its sleeps pass at once, on its own clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        assert len(self.sleeps) < 10_000, "still retrying"


def test_no_socket_is_an_error_and_wait_ready_gives_up(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    client = ChApi(tmp_path / "missing.sock", timeout_s=0.5)
    with pytest.raises(VmmApiError, match=r"missing\.sock"):
        client.ping()
    clock = FakeTime()
    monkeypatch.setattr(chapi, "time", clock)
    with pytest.raises(VmmApiError, match=r"missing\.sock"):
        client.wait_ready(0.2)
    # It retried (a VMM's socket comes a while after its start) until the timeout, no more.
    assert len(clock.sleeps) > 1
    assert 0.2 <= clock.now < 0.2 + max(clock.sleeps)


# choosing the VMM ----------------------------------------------------------------------


def fake_binary(directory: Path, name: str = "cloud-hypervisor") -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\necho 'cloud-hypervisor v51.1.0'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def path_with_ch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.undo()  # the real shutil.which, on a PATH we control
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_binary(bindir)
    monkeypatch.setenv("PATH", str(bindir))
    return bindir


def test_auto_takes_cloud_hypervisor_on_path_with_kvm(path_with_ch: Path) -> None:
    assert CloudHypervisorDriver().binary() == str(path_with_ch / "cloud-hypervisor")
    choice = choose_vmm("auto", "kvm", True, vm_spec())
    assert (choice.name, choice.accel, choice.note) == (CLOUD_HYPERVISOR, "kvm", "")


def test_auto_takes_qemu_without_kvm(path_with_ch: Path) -> None:
    choice = choose_vmm("auto", "tcg", False, vm_spec(accel="tcg"), kvm_reason="no /dev/kvm")
    assert (choice.name, choice.accel) == (QEMU, "tcg")
    assert "KVM" in choice.note


def test_auto_takes_qemu_without_the_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.undo()
    monkeypatch.setenv("PATH", str(tmp_path))
    choice = choose_vmm("auto", "kvm", True, vm_spec())
    assert (choice.name, choice.accel) == (QEMU, "kvm")
    assert "not on PATH" in choice.note


@pytest.mark.parametrize("spec", [vm_spec(network=NET_USER),
                                  vm_spec(shares=(Share("v0", "/d"),))])
def test_auto_takes_qemu_for_what_only_qemu_has(path_with_ch: Path, spec: VmSpec) -> None:
    choice = choose_vmm("auto", "kvm", True, spec)
    assert choice.name == QEMU and choice.note


def test_explicit_choices(path_with_ch: Path) -> None:
    assert choose_vmm("qemu", "kvm", True, vm_spec()).name == QEMU
    assert choose_vmm("cloud-hypervisor", "kvm", True, vm_spec()).name == CLOUD_HYPERVISOR
    with pytest.raises(VmmUnsupported, match=r"needs KVM.*kvm_pvm"):
        choose_vmm("cloud-hypervisor", "tcg", False, vm_spec(accel="tcg"), kvm_reason="kvm_pvm")


def test_requested_vmm_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOXLITE_VMM", raising=False)
    assert requested_vmm(None) == "auto"
    assert requested_vmm(None, "qemu") == "qemu"
    monkeypatch.setenv("BOXLITE_VMM", "cloud-hypervisor")
    assert requested_vmm(None, "qemu") == "cloud-hypervisor"
    assert requested_vmm("qemu", "auto") == "qemu"
    with pytest.raises(UsageError, match=r"invalid VMM 'bochs' \(--vmm\)"):
        requested_vmm("bochs")
    monkeypatch.delenv("BOXLITE_VMM")  # (one in the file is named so: no flag was given)
    with pytest.raises(UsageError, match=r"invalid VMM 'bogus' \(vmm in /h/config.toml\)"):
        requested_vmm(None, "bogus", "/h/config.toml")


def test_config_file_vmm(tmp_path: Path) -> None:
    assert vmm_setting(tmp_path) is None
    (tmp_path / "config.toml").write_text('vmm = "qemu"\n[registry]\ntimeout = 5\n')
    assert vmm_setting(tmp_path) == "qemu"
    (tmp_path / "config.toml").write_text("vmm = 3\n")
    with pytest.raises(UsageError, match="vmm must be a string"):
        vmm_setting(tmp_path)


def test_create_time_check() -> None:
    check_box_config("qemu", "nat", True, True)
    check_box_config("auto", "nat", True, True)
    check_box_config("cloud-hypervisor", "none", False, False)
    with pytest.raises(VmmUnsupported, match="--network nat"):
        check_box_config("cloud-hypervisor", "nat", False, False)
    with pytest.raises(VmmUnsupported, match="-p"):
        check_box_config("cloud-hypervisor", "none", True, False)
    with pytest.raises(VmmUnsupported, match="volumes"):
        check_box_config("cloud-hypervisor", "none", False, True)


# doctor -------------------------------------------------------------------------------


def test_doctor_cloud_hypervisor_rows(path_with_ch: Path) -> None:
    version = doctor.tool_version("cloud-hypervisor")
    assert version == "cloud-hypervisor v51.1.0"
    ok = doctor.cloud_hypervisor_check(version, True, "a KVM guest booted")
    assert ok.ok and "usable" in ok.detail and not ok.required
    no_kvm = doctor.cloud_hypervisor_check(version, False, "/dev/kvm is served by kvm_pvm")
    assert not no_kvm.ok and "needs KVM (/dev/kvm is served by kvm_pvm)" in no_kvm.detail
    missing = doctor.cloud_hypervisor_check(None, True, "")
    assert not missing.ok and cloudhv.RELEASES_URL in missing.fix and not missing.required
    old = doctor.cloud_hypervisor_check("cloud-hypervisor v40.0.0", True, "")
    assert not old.ok and "too old" in old.detail and cloudhv.RELEASES_URL in old.fix


def test_drivers_module_lists_vmms() -> None:
    assert drivers.VMMS == ("auto", "qemu", "cloud-hypervisor")
    assert os.environ.get("BOXLITE_VMM") in (None, "", "auto", "qemu", "cloud-hypervisor")
