"""Networking end to end: real VMs against servers this test runs on the host's 127.0.0.1.

Boots: one NAT box (download, pip install, names, /etc files), two boxes for published
ports and isolation (one of them restarted), one `--network none` box. Port-in-use and
bad specs fail before anything boots.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import signal
import socket
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, bx, vm_processes

pytestmark = pytest.mark.e2e
PIP_WHEEL = Path("/usr/share/python-wheels/pip-23.0.1-py3-none-any.whl")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def build_wheel(dest: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel whose module says hello."""
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"GREETING = 'hello from {name} {version}'\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: boxlite-test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
            z.writestr(path, data)
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def simple_index(root: Path, wheel: Path, project: str) -> None:
    """A PEP 503 simple index with one project and one file."""
    (root / "files").mkdir(exist_ok=True)
    target = root / "files" / wheel.name
    target.write_bytes(wheel.read_bytes())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    page = root / "simple" / project
    page.mkdir(parents=True)
    (root / "simple" / "index.html").write_text(f'<a href="{project}/">{project}</a>\n')
    (page / "index.html").write_text(
        f'<a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>\n')


def run_json(*args: str) -> dict[str, object]:
    proc = bx(*args)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return dict(json.loads(proc.stdout.decode().strip().splitlines()[-1]))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NAT_SCRIPT = r"""
import hashlib, json, os, socket, subprocess, sys, urllib.request
port, pip = sys.argv[1], sys.argv[2] == "1"
base = f"http://host.boxlite.internal:{port}"
out = {}
data = urllib.request.urlopen(f"{base}/blob", timeout=120).read()
out["sha256"] = hashlib.sha256(data).hexdigest()
out["host_alias"] = socket.gethostbyname("host.boxlite.internal")
out["db"] = subprocess.run(["getent", "hosts", "db.internal"], capture_output=True,
                           text=True).stdout.split()
out["hostname"] = socket.gethostname()
for name in ("hostname", "hosts", "resolv.conf"):
    out[name + "_file"] = open("/etc/" + name).read()
out["nics"] = sorted(os.listdir("/sys/class/net"))
out["ipv6_nics"] = sorted({line.split()[-1] for line in open("/proc/net/if_inet6")})
if pip:
    with open("/tmp/pip.whl", "wb") as f:
        f.write(urllib.request.urlopen(f"{base}/pip.whl", timeout=120).read())
    proc = subprocess.run([sys.executable, "/tmp/pip.whl/pip", "install", "--quiet",
                           "--disable-pip-version-check", "--no-cache-dir", "--target",
                           "/tmp/site", "--index-url", f"{base}/simple/", "--trusted-host",
                           "host.boxlite.internal", "boxnettest"],
                          capture_output=True, text=True)
    out["pip"] = [proc.returncode, proc.stderr[-2000:]]
    sys.path.insert(0, "/tmp/site")
    try:
        import boxnettest
        out["greeting"] = boxnettest.GREETING
    except ImportError as e:
        out["greeting"] = repr(e)
print(json.dumps(out))
"""


def test_nat_box_downloads_pip_installs_and_knows_its_names(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    blob = os.urandom(8 << 20)
    (root / "blob").write_bytes(blob)
    pip = PIP_WHEEL.is_file()  # the built-in image has python3 but no pip: bring one
    if pip:
        (root / "pip.whl").write_bytes(PIP_WHEEL.read_bytes())
        simple_index(root, build_wheel(tmp_path, "boxnettest", "1.0"), "boxnettest")
    with http_server(root) as port:
        r = run_json("run", "--rm", "--add-host", "db.internal:192.0.2.7",
                     "--dns", "10.0.2.3", "--dns", "192.0.2.53", "--dns-search", "corp.example.",
                     "--dns-search", "lab.example", "--dns-opt", "ndots:2", "--dns-option", "edns0",
                     IMAGE, "python3", "-c", NAT_SCRIPT, str(port), "1" if pip else "0")
    assert r["sha256"] == hashlib.sha256(blob).hexdigest()
    assert r["host_alias"] == "10.0.2.2"
    assert r["db"] == ["192.0.2.7", "db.internal"]
    assert r["nics"] == ["eth0", "lo"]
    assert r["ipv6_nics"] == ["lo"]  # IPv6 is off on the NIC, as on the host side
    hostname = r["hostname"]
    assert r["hostname_file"] == f"{hostname}\n"
    hosts = str(r["hosts_file"]).splitlines()
    assert "127.0.0.1\tlocalhost" in hosts
    assert hosts[-3:] == ["10.0.2.2\thost.boxlite.internal", "192.0.2.7\tdb.internal",
                          f"10.0.2.15\t{hostname}"]
    assert r["resolv.conf_file"] == ("nameserver 10.0.2.3\nnameserver 192.0.2.53\n"
                                     "search corp.example lab.example\noptions ndots:2 edns0\n")
    if pip:
        assert r["pip"][0] == 0, r["pip"]  # type: ignore[index]
        assert r["greeting"] == "hello from boxnettest 1.0"


SERVER_SCRIPT = r"""
import http.server, socket, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"box {self.server.server_address[1]}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
def udp_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999))
    while True:
        data, peer = s.recvfrom(65536); s.sendto(b"echo:" + data, peer)
threading.Thread(target=udp_echo, daemon=True).start()
threading.Thread(target=http.server.ThreadingHTTPServer(("0.0.0.0", 8001), H).serve_forever,
                 daemon=True).start()
print("serving", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
"""

PROBE_SCRIPT = r"""
import json, socket, sys, urllib.request
published, unpublished = int(sys.argv[1]), int(sys.argv[2])
out = {}
out["published"] = urllib.request.urlopen(
    f"http://host.boxlite.internal:{published}/", timeout=30).read().decode()
for name, addr in (("own_ip", ("10.0.2.15", 8001)), ("host", ("10.0.2.2", unpublished))):
    try:
        socket.create_connection(addr, timeout=5).close()
        out[name] = "connected"
    except OSError as e:
        out[name] = type(e).__name__
print(json.dumps(out))
"""


def http_get(port: int, deadline_s: float = 60) -> str:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def udp_echo(port: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for _ in range(15):
            s.sendto(b"ping", ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                return s.recvfrom(100)[0]
    raise AssertionError("no UDP echo")


def qemu_pid(box_id: str) -> int:
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            cmd = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
            if b"qemu-system" in cmd and box_id.encode() in cmd:
                return int(proc.name)
    raise AssertionError(f"no QEMU process of box {box_id}")


def host_ports(box: str) -> dict[str, str]:
    proc = bx("port", box)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    return dict(line.split(" -> ") for line in lines)


def test_published_ports_and_box_isolation() -> None:
    udp_port = free_port(socket.SOCK_DGRAM)
    proc = bx("run", "-d", "--name", "net-a", "-p", "8000",
              "-p", f"127.0.0.1:{udp_port}:9999/udp", IMAGE, "python3", "-c", SERVER_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    try:
        ports = host_ports("net-a")
        assert ports["9999/udp"] == f"127.0.0.1:{udp_port}"
        ip, _, tcp_port = ports["8000/tcp"].partition(":")
        assert ip == "127.0.0.1"
        assert bx("port", "net-a", "8000/tcp").stdout.decode() == f"127.0.0.1:{tcp_port}\n"
        missing = bx("port", "net-a", "8001")
        assert missing.returncode == 125 and b"8001/tcp" in missing.stderr
        # docker's idiom for the host port, and the box's address
        docker = bx("inspect", "-f", '{{.NetworkSettings.IPAddress}} '
                    '{{(index (index .NetworkSettings.Ports "8000/tcp") 0).HostPort}}', "net-a")
        assert docker.stdout.decode() == f"10.0.2.15 {tcp_port}\n", docker.stderr
        listed = bx("ps", "-f", "name=net-a").stdout.decode().splitlines()[1]
        assert f"127.0.0.1:{tcp_port}->8000/tcp" in listed  # (docker's PORTS column)
        assert http_get(int(tcp_port)) == "box 8000"
        assert udp_echo(udp_port) == b"echo:ping"
        inspected = json.loads(bx("inspect", "net-a").stdout)[0]
        assert {(p["box_port"], p["proto"], p["host_port"]) for p in inspected["ports"]} == {
            (8000, "tcp", int(tcp_port)), (9999, "udp", udp_port)}
        assert inspected["config"]["network"]["mode"] == "nat"

        # A burst of connections waits in the host's queue while QEMU cannot accept
        # (stopped): the published port listens with a deep queue, where slirp's own
        # backlog of 1 holds two and leaves the others in SYN retransmits.
        pid = qemu_pid(inspected["id"])
        os.kill(pid, signal.SIGSTOP)
        try:
            held = [socket.create_connection(("127.0.0.1", int(tcp_port)), timeout=2)
                    for _ in range(8)]
        finally:
            os.kill(pid, signal.SIGCONT)
        for s in held:
            s.close()
        assert http_get(int(tcp_port)) == "box 8000"

        # Box B reaches A only through A's published port, via the host.
        r = run_json("run", "--rm", IMAGE, "python3", "-c", PROBE_SCRIPT, tcp_port,
                     str(free_port()))
        assert r == {"published": "box 8000", "own_ip": "ConnectionRefusedError",
                     "host": "ConnectionRefusedError"}

        # A restart publishes again; the omitted host port is chosen afresh.
        assert bx("stop", "-t", "0", "net-a").returncode == 0
        assert bx("port", "net-a").stdout == b""
        assert bx("start", "net-a").returncode == 0
        again = host_ports("net-a")
        assert again["9999/udp"] == f"127.0.0.1:{udp_port}"
        assert http_get(int(again["8000/tcp"].partition(":")[2])) == "box 8000"
    finally:
        bx("rm", "-f", "net-a")


NONE_SCRIPT = r"""
import json, os, socket, sys
port = int(sys.argv[1])
out = {"nics": sorted(os.listdir("/sys/class/net"))}
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
socket.create_connection(s.getsockname(), timeout=5).close()
out["loopback"] = "ok"
for name, host in (("gateway", "10.0.2.2"), ("alias", "host.boxlite.internal"),
                   ("loopback_host", "127.0.0.1"), ("dns", "10.0.2.3")):
    try:
        socket.create_connection((host, port), timeout=5).close()
        out[name] = "connected"
    except OSError as e:
        out[name] = type(e).__name__
out["resolv"] = open("/etc/resolv.conf").read()
print(json.dumps(out))
"""


def test_network_none_has_only_loopback() -> None:
    accepted: list[object] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        port = server.getsockname()[1]
        done = threading.Event()

        def accept() -> None:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(server.accept())

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        try:
            r = run_json("run", "--rm", "--network", "none", IMAGE, "python3", "-c", NONE_SCRIPT,
                         str(port))
        finally:
            done.set()
            t.join()
    assert accepted == []
    assert r["nics"] == ["lo"]
    assert r["loopback"] == "ok"
    assert r["gateway"] in ("OSError", "TimeoutError")  # ENETUNREACH
    assert r["alias"] == "gaierror"
    assert r["loopback_host"] == "ConnectionRefusedError"  # the box's own loopback
    assert "nameserver" not in str(r["resolv"])


def one_line_error(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_host_port_in_use_fails_before_boot(e2e_home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = bx("ps", "-a", "-q").stdout
        proc = bx("run", "--rm", "-p", f"{port}:80", IMAGE, "true")
        assert proc.returncode == 125
        assert one_line_error(proc.stderr) == (
            f"boxlite: cannot publish 80/tcp on 127.0.0.1:{port}: the host port is already in use")
        assert bx("ps", "-a", "-q").stdout == before  # the --rm box is gone
        # create + start: the box stays created, as docker's does.
        created = bx("create", "--name", "net-busy", "-p", f"127.0.0.1:{port}:80", IMAGE, "true")
        assert created.returncode == 0, created.stderr
        try:
            start = bx("start", "net-busy")
            assert start.returncode == 125
            assert "already in use" in one_line_error(start.stderr)
            status = json.loads(bx("inspect", "net-busy").stdout)[0]["status"]
            assert status == "created"
        finally:
            bx("rm", "-f", "net-busy")
    assert vm_processes(e2e_home) == []


def test_a_host_port_range_publishes_on_its_first_free_port() -> None:
    """docker's `-p 8000-8010:80`: one box port on a free port of the host range."""
    with socket.socket() as busy:
        for port in range(31000, 60000, 97):
            try:
                busy.bind(("127.0.0.1", port))
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + 1))
                break
            except OSError:
                continue
        else:
            pytest.skip("no two neighbouring free ports on this host")
        busy.listen()
        created = bx("create", "--name", "net-range", "-p", f"{port}-{port + 1}:80", IMAGE,
                     "sleep", "60")
        assert created.returncode == 0, created.stderr
        try:
            assert bx("start", "net-range").returncode == 0
            assert host_ports("net-range") == {"80/tcp": f"127.0.0.1:{port + 1}"}
            socket.create_connection(("127.0.0.1", port + 1), timeout=5).close()  # QEMU's
            bindings = bx("inspect", "-f", "{{json .HostConfig.PortBindings}}", "net-range")
            assert json.loads(bindings.stdout) == {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": f"{port}-{port + 1}"}]}
        finally:
            bx("rm", "-f", "net-range")


@pytest.mark.parametrize(("args", "says"), [
    (["--network", "none", "-p", "80"], "cannot publish ports (-p) of a box with --network none"),
    (["-p", "0"], "is not in 1-65535"),
    (["-p", "80/sctp"], "protocol 'sctp'"),
    (["-p", "999.1.1.1:80:80"], "not an IP address"),
    (["--add-host", "nocolon"], "use NAME:IP"),
    (["--dns", "resolver"], "not an IP address"),
    (["--dns-search", "two words"], "invalid --dns-search 'two words': not a domain name"),
    (["--dns-option", "ndots:1\nnameserver 192.0.2.66"], "invalid --dns-option"),
])
def test_bad_network_options_are_usage_errors(args: list[str], says: str) -> None:
    before = bx("ps", "-a", "-q").stdout
    proc = bx("run", "--rm", *args, IMAGE, "true")
    assert proc.returncode == 125
    assert says in one_line_error(proc.stderr)
    assert bx("ps", "-a", "-q").stdout == before


WARM_SERVER = r"""
import http.server, urllib.request, sys
host_port = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        mac = open('/sys/class/net/eth0/address').read().strip()
        back = urllib.request.urlopen(f'http://host.boxlite.internal:{host_port}/hello', timeout=30).read()
        body = f'{mac} {back.decode()}'.encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()
"""


def test_boxes_from_one_warm_template_each_have_their_own_mac_and_ports(
        tmp_path: Path, e2e_home: Path) -> None:
    from boxlite_cli.runtime.network import box_mac

    (tmp_path / "hello").write_text("from the host")
    assert bx("run", "--rm", IMAGE, "true").returncode == 0  # the template exists after this
    assert list((e2e_home / "cache" / "templates").glob("*/ram.img"))
    boxes: list[str] = []
    try:
        with http_server(tmp_path) as host_port:
            for _ in range(2):
                proc = bx("run", "-d", "-p", "8000", IMAGE, "python3", "-c", WARM_SERVER,
                          str(host_port))
                assert proc.returncode == 0, proc.stderr
                boxes.append(proc.stdout.decode().strip())
            for box in boxes:
                log = next((e2e_home / "boxes").glob(f"{box}*/shim.log")).read_text()
                assert "/ram.img,share=off" in log  # restored from the template, not booted
            # both answer at the same time on their own host ports, each with its own MAC,
            # and each reaches the host through host.boxlite.internal
            answers = [http_get(int(host_ports(b)["8000/tcp"].rpartition(":")[2])) for b in boxes]
            for box, answer in zip(boxes, answers, strict=True):
                assert answer == f"{box_mac(box)} from the host"
            assert box_mac(boxes[0]) != box_mac(boxes[1])
    finally:
        bx("rm", "-f", *boxes)
