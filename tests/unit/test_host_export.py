"""export / import / clone without VMs: archives built byte by byte, hostile ones refused.

Every rejected import must fail with one typed error and leave nothing behind: no box
directory, no name reservation, no staging files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from boxlite_cli.disks.chain import qcow2_backing
from boxlite_cli.errors import BoxliteError, Conflict
from boxlite_cli.runtime import export as ex
from boxlite_cli.runtime import snapshots
from boxlite_cli.runtime.clone import clone, clone_names, dependent_boxes, removal_order
from boxlite_cli.runtime.runtime import Runtime
from boxlite_cli.runtime.staging import clean_stale, stage, staging_root, stale_bytes
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.boxes import new_box_id
from boxlite_cli.state.health import HealthConfig
from boxlite_cli.state.network import NetworkConfig, PortMapping
from boxlite_cli.state.paths import Paths
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status

IMAGE_ID = "sha256:" + "ab" * 32


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    home = tmp_path / "home"
    return Runtime(Paths(data=home, config=home / "config", cache=home / "cache"))


def qcow2(path: Path, size: str = "4M", *opts: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *opts, str(path), size], check=True)
    return path


def write_into(path: Path, data: bytes, offset: int = 0) -> None:
    """Write len(data) bytes of the pattern data[0] at `offset` of a qcow2."""
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {data[0]} {offset} {len(data)}",
                    str(path)], check=True, capture_output=True)


def manifest(disk: bytes, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "boxlite-box", "version": 1, "created": 0.0, "name": "orig",
        "image": {"reference": "localhost/debian:bookworm", "id": IMAGE_ID},
        "config": {"process": {"argv": ["sleep", "60"], "env": ["A=1"]}, "cpus": 1,
                   "memory_mib": 256, "network": {"mode": "nat", "ports": [
                       {"box_port": 80, "host_ip": "0.0.0.0", "host_port": 8080}]}},
        "disks": [{"name": "disks/rootfs.qcow2", "format": "qcow2", "size": len(disk),
                   "sha256": hashlib.sha256(disk).hexdigest(),
                   "virtual_size": 4 << 20}],
    }
    doc.update(over)
    return doc


Member = tuple[str, bytes] | tarfile.TarInfo


def archive(members: list[tuple[tarfile.TarInfo, bytes | None]], compress: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return zstandard.ZstdCompressor().compress(raw) if compress else raw


def reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def good_members(disk: bytes, **over: Any) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    return [reg("manifest.json", json.dumps(manifest(disk, **over)).encode()),
            reg("disks/rootfs.qcow2", disk)]


@pytest.fixture
def disk(tmp_path: Path) -> bytes:
    path = qcow2(tmp_path / "d.qcow2")
    write_into(path, b"x" * 4096, 65536)
    return path.read_bytes()


def leftovers(rt: Runtime) -> list[str]:
    found = []
    for d in (rt.paths.boxes, rt.boxes.names, staging_root(rt.paths)):
        if d.exists():
            found += [str(p) for p in d.iterdir()]
    return found


def do_import(rt: Runtime, data: bytes, name: str | None = None, max_disk: int | None = None
              ) -> BoxState:
    return ex.import_box(rt, io.BytesIO(data), "test.bx", name, max_disk=max_disk)


def rejected(rt: Runtime, data: bytes, needle: str, max_disk: int | None = None) -> None:
    with pytest.raises(BoxliteError) as err:
        do_import(rt, data, "victim", max_disk=max_disk)
    assert err.value.exit_code == 125
    assert needle in err.value.message, err.value.message
    assert leftovers(rt) == []


# good archives ----------------------------------------------------------------------------

def test_import_good_archive_makes_a_created_standalone_box(rt: Runtime, disk: bytes) -> None:
    warnings: list[str] = []
    state = ex.import_box(rt, io.BytesIO(archive(good_members(disk))), "a.bx", "imp",
                          warn=warnings.append)
    assert state.status == Status.CREATED
    assert rt.resolve("imp") == state.id
    stored = rt.boxes.read(state.id)
    assert stored.status == Status.CREATED and stored.creator is None
    assert stored.config.process.argv == ["sleep", "60"] and stored.config.memory_mib == 256
    assert stored.config.hostname == state.id[:12] and stored.config.mounts == []
    assert stored.config.network.ports == [PortMapping(80, "tcp", "127.0.0.1", 8080)]
    assert warnings and "127.0.0.1" in warnings[0]
    rootfs = rt.files(state.id).rootfs_disk
    assert rootfs.read_bytes() == disk and qcow2_backing(rootfs) is None
    assert list(staging_root(rt.paths).iterdir()) == []


def test_an_imported_ipv6_port_is_published_on_127_0_0_1(rt: Runtime, disk: bytes) -> None:
    doc = manifest(disk)
    doc["config"]["network"]["ports"] = [{"box_port": 80, "host_ip": "::1", "host_port": 0}]
    warnings: list[str] = []
    state = ex.import_box(rt, io.BytesIO(archive([reg("manifest.json", json.dumps(doc).encode()),
                                                  reg("disks/rootfs.qcow2", disk)])),
                          "a.bx", "v6", warn=warnings.append)
    assert rt.boxes.read(state.id).config.network.ports == [PortMapping(80, "tcp", "127.0.0.1", 0)]
    assert warnings


def test_an_imported_host_port_range_is_kept_and_checked(rt: Runtime, disk: bytes) -> None:
    doc = manifest(disk)
    doc["config"]["network"]["ports"] = [{"box_port": 80, "host_port": 8000, "host_port_end": 8010}]
    state = ex.import_box(rt, io.BytesIO(archive([reg("manifest.json", json.dumps(doc).encode()),
                                                  reg("disks/rootfs.qcow2", disk)])),
                          "a.bx", "ranged", warn=lambda _: None)
    assert rt.boxes.read(state.id).config.network.ports == [
        PortMapping(80, host_port=8000, host_port_end=8010)]
    doc["config"]["network"]["ports"][0]["host_port_end"] = 7000  # (runs backwards)
    with pytest.raises(ex.ArchiveError, match="host port range 8000-7000"):
        ex.import_box(rt, io.BytesIO(archive([reg("manifest.json", json.dumps(doc).encode()),
                                              reg("disks/rootfs.qcow2", disk)])),
                      "a.bx", "backwards", warn=lambda _: None)


def test_import_name_clash_leaves_nothing(rt: Runtime, disk: bytes) -> None:
    first = do_import(rt, archive(good_members(disk)), "dup")
    before = sorted(leftovers(rt))
    with pytest.raises(Conflict, match='"dup" is already in use'):
        do_import(rt, archive(good_members(disk)), "dup")
    assert sorted(leftovers(rt)) == before
    assert rt.resolve("dup") == first.id


# hostile archives -------------------------------------------------------------------------

def test_traversal_member_is_refused(rt: Runtime, disk: bytes) -> None:
    members = good_members(disk)
    members.insert(1, reg("../../evil", b"x"))
    rejected(rt, archive(members), "path traversal")
    rejected(rt, archive([reg("/etc/passwd", b"x")]), "absolute member name")


def test_links_and_directories_are_refused(rt: Runtime, disk: bytes) -> None:
    link = tarfile.TarInfo("disks/rootfs.qcow2")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    members = good_members(disk)
    rejected(rt, archive([members[0], (link, None)]), "not a regular file")
    hard = tarfile.TarInfo("disks/rootfs.qcow2")
    hard.type, hard.linkname = tarfile.LNKTYPE, "manifest.json"
    rejected(rt, archive([members[0], (hard, None)]), "not a regular file")


def test_unexpected_and_repeated_members_are_refused(rt: Runtime, disk: bytes) -> None:
    members = good_members(disk)
    rejected(rt, archive([*members, reg("extra", b"x")]), "unexpected member 'extra'")
    rejected(rt, archive([*members, members[1]]), "appears twice")
    rejected(rt, archive([members[1], members[0]]), "not manifest.json")
    rejected(rt, archive([members[0]]), "disks/rootfs.qcow2 is missing")
    rejected(rt, archive([]), "empty")
    rejected(rt, archive(members)[:20], "truncated or not a boxlite archive (it ends before "
                                        "its first member)")  # (head -c of a real one)


def test_unknown_version_and_format_are_refused(rt: Runtime, disk: bytes) -> None:
    rejected(rt, archive(good_members(disk, version=2)), "unknown archive format version 2")
    rejected(rt, archive(good_members(disk, version=1.0)), "unknown archive format version 1.0")
    rejected(rt, archive(good_members(disk, format="tarball")), "not a boxlite box archive")


def test_malformed_manifests_are_refused(rt: Runtime, disk: bytes) -> None:
    rejected(rt, archive([reg("manifest.json", b"{nope"), reg("disks/rootfs.qcow2", disk)]),
             "not valid JSON")
    big = b" " * (ex.MAX_MANIFEST + 1)
    rejected(rt, archive([reg("manifest.json", big)]), "larger than")
    bad_cfg = manifest(disk)
    bad_cfg["config"]["cpus"] = "lots"
    rejected(rt, archive([reg("manifest.json", json.dumps(bad_cfg).encode())]), "cpus")
    no_argv = manifest(disk)
    no_argv["config"]["process"]["argv"] = []
    rejected(rt, archive([reg("manifest.json", json.dumps(no_argv).encode())]), "argv")
    for field, value in (("env", ["A=1\0B=2"]), ("argv", ["sh\0"]), ("user", "root\0")):
        nul = manifest(disk)
        nul["config"]["process"][field] = value  # (no exec could carry it: refused here)
        rejected(rt, archive([reg("manifest.json", json.dumps(nul).encode())]),
                 f"{field} holds a NUL byte")
    for cwd in ("../../../etc", "relative"):  # (the CLI's -w refuses these too)
        relative = manifest(disk)
        relative["config"]["process"]["cwd"] = cwd
        rejected(rt, archive([reg("manifest.json", json.dumps(relative).encode())]),
                 "config.process.cwd is not an absolute path")
    for reference in ("\x1b]0;pwned\x07evil\nline", "", "a b", "x" * 513):
        odd = manifest(disk, image={"reference": reference, "id": IMAGE_ID})
        rejected(rt, archive([reg("manifest.json", json.dumps(odd).encode())]),
                 "image.reference is malformed")
    for host in ("1.2.3.4\n6.6.6.6 injected.example", "name:not-an-ip", "bad name:1.2.3.4"):
        hosts = manifest(disk)
        hosts["config"]["network"] = {"mode": "nat", "extra_hosts": [host]}
        rejected(rt, archive([reg("manifest.json", json.dumps(hosts).encode())]), "extra host")
    for key, word in (("dns_search", "x.example\nnameserver 6.6.6.6"), ("dns_search", "a."),
                      ("dns_options", "ndots:1 rotate"), ("dns_search", ["x"] * 33)):
        resolver = manifest(disk)
        resolver["config"]["network"] = {"mode": "nat", key: word if isinstance(word, list)
                                         else [word]}
        rejected(rt, archive([reg("manifest.json", json.dumps(resolver).encode())]), key)
    for sysctls in ({"net/../../x": "1"}, {"net.core.x": "1\n2"}, {"net.core.x": 1}, ["a"]):
        tuned = manifest(disk)
        tuned["config"]["sysctls"] = sysctls
        rejected(rt, archive([reg("manifest.json", json.dumps(tuned).encode())]), "sysctls")
    for check in ({"test": ["CMD-SHELL", "true"], "interval_s": -1}, {"test": ["RUN", "x"]},
                  {"test": ["CMD-SHELL", "true"], "retries": 1.5}, {"test": "true"},
                  {"test": ["CMD"]}, {"test": ["CMD", "true"], "surprise": 1}, ["CMD", "true"]):
        checked = manifest(disk)
        checked["config"]["healthcheck"] = check
        rejected(rt, archive([reg("manifest.json", json.dumps(checked).encode())]),
                 "healthcheck")
    small = manifest(disk)
    small["config"]["memory_mib"] = 16  # (the CLI's least is 128: the guest would not boot)
    rejected(rt, archive([reg("manifest.json", json.dumps(small).encode())]), "memory_mib")
    for size in (-1, "20g", 1.5, (512 << 30) + 1):
        sized = manifest(disk)
        sized["config"]["disk_size"] = size
        rejected(rt, archive([reg("manifest.json", json.dumps(sized).encode())]), "disk_size")
    for labels in (["a"], {"a": 1}, {"": "x"}, {"k": "v" * 70000}):
        labelled = manifest(disk)
        labelled["config"]["labels"] = labels
        rejected(rt, archive([reg("manifest.json", json.dumps(labelled).encode())]), "labels")
    for timeout in (-1, "10", True, 1e10):
        slow = manifest(disk)
        slow["config"]["stop_timeout"] = timeout
        rejected(rt, archive([reg("manifest.json", json.dumps(slow).encode())]), "stop_timeout")
    for key, caps in (("cap_drop", ["NET_FOO"]), ("cap_add", "ALL"), ("cap_drop", [1]),
                      ("cap_add", ["CHOWN"] * 65)):
        capped = manifest(disk)
        capped["config"][key] = caps
        rejected(rt, archive([reg("manifest.json", json.dumps(capped).encode())]), key)
    for key, value in (("tmpfs", "/tmp"), ("tmpfs", ["/proc"]), ("tmpfs", ["/t", "/t"]),
                       ("read_only", "yes"), ("ulimits", "nofile=1"), ("ulimits", [1]),
                       ("ulimits", ["nofile=5:3"]), ("ulimits", ["as=1"]),
                       ("no_new_privileges", "yes"), ("group_add", ["a:b"]),
                       ("group_add", "audio"), ("shm_size", -1), ("shm_size", "1g"),
                       ("exposed", ["80/sctp"]), ("exposed", "80/tcp")):
        mounted = manifest(disk)
        mounted["config"][key] = value
        rejected(rt, archive([reg("manifest.json", json.dumps(mounted).encode())]), key)
    for key, value in (("log_driver", "syslog"), ("log_driver", 1),
                       ("log_options", {"mode": "non-blocking"}), ("log_options", ["x"]),
                       ("log_options", {"max-size": "0"})):
        logged = manifest(disk)
        logged["config"][key] = value
        rejected(rt, archive([reg("manifest.json", json.dumps(logged).encode())]), "log")
    for limit in (-0.5, "1.5", True, 0.001, 1.5):  # (1.5 CPUs of a 1-vCPU box)
        limited = manifest(disk)
        limited["config"]["cpu_limit"] = limit
        rejected(rt, archive([reg("manifest.json", json.dumps(limited).encode())]), "cpu_limit")
    for policy in ("sometimes", 3, "always:2"):
        restarting = manifest(disk)
        restarting["config"]["restart"] = policy
        rejected(rt, archive([reg("manifest.json", json.dumps(restarting).encode())]),
                 "restart" if policy != 3 else "")
    sig = manifest(disk)
    sig["config"]["stop_signal"] = "SIGNOPE"
    rejected(rt, archive([reg("manifest.json", json.dumps(sig).encode())]), "stop signal")
    two = manifest(disk)
    two["disks"].append(dict(two["disks"][0], name="disks/other.qcow2"))
    rejected(rt, archive([reg("manifest.json", json.dumps(two).encode())]), "exactly 1 disk")


def test_checksum_mismatch_is_refused(rt: Runtime, disk: bytes) -> None:
    doc = manifest(disk)
    doc["disks"][0]["sha256"] = "0" * 64
    rejected(rt, archive([reg("manifest.json", json.dumps(doc).encode()),
                          reg("disks/rootfs.qcow2", disk)]), "checksum mismatch")


def test_oversized_members_are_refused(rt: Runtime, disk: bytes) -> None:
    rejected(rt, archive(good_members(disk)), "more than the 1024 bytes allowed", max_disk=1024)
    doc = manifest(disk)
    doc["disks"][0]["size"] = 1000  # the member is bigger than declared
    rejected(rt, archive([reg("manifest.json", json.dumps(doc).encode()),
                          reg("disks/rootfs.qcow2", disk)]), "the manifest says 1000")


def test_huge_pax_header_is_bounded(rt: Runtime, disk: bytes) -> None:
    info, data = reg("manifest.json", json.dumps(manifest(disk)).encode())
    info.pax_headers = {"comment": "x" * (3 << 20)}
    rejected(rt, archive([(info, data), reg("disks/rootfs.qcow2", disk)]), "more data than")


def test_backing_file_is_refused(rt: Runtime, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:secret\n" * 100)
    evil = qcow2(tmp_path / "evil.qcow2", "4M", "-F", "raw", "-b", str(secret)).read_bytes()
    rejected(rt, archive(good_members(evil)), "has a backing file")


def test_external_data_file_is_refused(rt: Runtime, tmp_path: Path) -> None:
    evil = qcow2(tmp_path / "evil.qcow2", "4M", "-o",
                 f"data_file={tmp_path / 'data.raw'}").read_bytes()
    rejected(rt, archive(good_members(evil)), "external file")


def test_not_a_qcow2_or_corrupt_is_refused(rt: Runtime, disk: bytes) -> None:
    raw = b"\0" * 4096
    rejected(rt, archive(good_members(raw)), "not a qcow2 image")
    corrupt = bytearray(disk)
    corrupt[0x30:0x38] = (2**40).to_bytes(8, "big")  # l1_table_offset far past the end
    rejected(rt, archive(good_members(bytes(corrupt))), "corrupt qcow2")


def test_truncated_archives_are_refused(rt: Runtime, disk: bytes) -> None:
    data = archive(good_members(disk))
    for cut in (len(data) // 2, len(data) - 40, 30):
        rejected(rt, data[:cut], "truncated")
    plain = archive(good_members(disk), compress=False)
    rejected(rt, zstandard.ZstdCompressor().compress(plain[: len(plain) // 2]), "truncated")
    rejected(rt, b"not zstd at all", "not a box archive of `boxlite export` (not zstd: ")


def test_a_foreign_archive_says_what_it_is_not_and_where_images_go(rt: Runtime) -> None:
    """A docker user's `import rootfs.tar` (or a `docker save` tar): said as not a box
    archive, with where an image archive goes (it was "not a readable zstd archive:
    Unknown frame descriptor", or "member '' is not a regular file")."""
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        info = tarfile.TarInfo(".")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        etc = tarfile.TarInfo("etc/hostname")
        etc.size = 3
        tar.addfile(etc, io.BytesIO(b"box"))
    for data, needle in ((rootfs.getvalue(), "(not zstd: "),
                         (zstandard.ZstdCompressor().compress(rootfs.getvalue()),
                          "(its first member is '.', not manifest.json)")):
        with pytest.raises(BoxliteError) as err:
            do_import(rt, data, "victim")
        assert err.value.message.startswith("test.bx is not a box archive of `boxlite "
                                            "export` " + needle), err.value.message
        assert err.value.hint is not None and "boxlite load -i FILE" in err.value.hint
        assert leftovers(rt) == []


# export, clone, staging -------------------------------------------------------------------

def make_box(rt: Runtime, name: str, tmp_path: Path) -> BoxState:
    box_id = new_box_id()
    rt.boxes.create_dir(box_id)
    rt.boxes.reserve_name(name, box_id)
    state = BoxState(id=box_id, name=name, status=Status.CREATED, config=BoxConfig(
        image="localhost/debian:bookworm", image_id=IMAGE_ID, rootfs_base="",
        process=ProcessSpec(["sh", "-c", "sleep 9"], env=["X=1"]), cpus=2, memory_mib=300,
        network=NetworkConfig(mode="none", dns_search=["corp.example"], dns_options=["ndots:2"]),
        restart="on-failure:2", sysctls={"net.core.somaxconn": "1024"},
        ulimits=["core=0:0", "nofile=1024:2048"], tmpfs=["/dev/shm:size=1048576"],
        no_new_privileges=True, group_add=["audio", "4242"], shm_size=1 << 30,
        healthcheck=HealthConfig(test=["CMD", "true"], interval_s=2.5, retries=4)))
    with rt.boxes.lock(box_id):
        rt.boxes.write(state)
    base = qcow2(tmp_path / f"{name}-base.qcow2")
    write_into(base, b"b" * 512)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
                    str(rt.files(box_id).rootfs_disk)], check=True)
    write_into(rt.files(box_id).rootfs_disk, b"o" * 512, 1 << 20)
    return state


def test_export_then_import_roundtrip(rt: Runtime, tmp_path: Path) -> None:
    src = make_box(rt, "src", tmp_path)
    out = tmp_path / "src.bx"
    ex.export_box(rt, "src", out)
    assert out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(Conflict, match="already exists"):
        ex.export_box(rt, "src", out)
    ex.export_box(rt, "src", out, force=True)
    assert [p.name for p in tmp_path.iterdir() if "boxlite" in p.name] == []
    with tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(out.open("rb")),
                      mode="r|") as tar:
        names = [m.name for m in tar]
    assert names == ["manifest.json", "disks/rootfs.qcow2"]
    state = ex.import_box(rt, out.open("rb"), str(out), "copy")
    disk = rt.files(state.id).rootfs_disk
    assert qcow2_backing(disk) is None
    assert state.config.process == src.config.process and state.config.cpus == 2
    assert state.config.network.mode == "none"
    assert state.config.restart == "on-failure:2"
    assert state.config.ulimits == ["core=0:0", "nofile=1024:2048"]
    assert state.config.tmpfs == ["/dev/shm:size=1048576"]  # (a --shm-size)
    assert state.config.no_new_privileges
    assert state.config.group_add == ["audio", "4242"]
    assert state.config.shm_size == 1 << 30
    assert state.config.sysctls == {"net.core.somaxconn": "1024"}
    assert state.config.healthcheck == HealthConfig(test=["CMD", "true"], interval_s=2.5,
                                                    retries=4)
    assert (state.config.network.dns_search, state.config.network.dns_options) == (
        ["corp.example"], ["ndots:2"])
    for offset in (0, 1 << 20):  # both layers, flattened
        pattern = ord("o") if offset else ord("b")
        a = subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"read -P {pattern} {offset} 512",
                            str(disk)], capture_output=True, text=True)
        assert "Pattern verification failed" not in a.stdout and a.returncode == 0, a.stdout
    assert list(staging_root(rt.paths).iterdir()) == []


def test_export_to_a_pipe_imports_again(rt: Runtime, tmp_path: Path) -> None:
    """`export -o -`: the archive streams to an fd (`... | boxlite import -`)."""
    src = make_box(rt, "src", tmp_path)
    read_end, write_end = os.pipe()
    received: list[bytes] = []

    def drain() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            received.append(pipe.read())

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        assert ex.export_box(rt, "src", write_end).size == -1
    finally:
        os.close(write_end)
        reader.join()
    state = ex.import_box(rt, io.BytesIO(received[0]), "-", "piped")
    assert state.config.process == src.config.process
    assert qcow2_backing(rt.files(state.id).rootfs_disk) is None
    assert list(staging_root(rt.paths).iterdir()) == []


def test_export_to_a_standard_output_that_cannot_take_it_says_so(rt: Runtime,
                                                                tmp_path: Path) -> None:
    """`export -o - > /dev/full`, or with stdout open read-only: one line naming standard
    output (it said "exporting to 1", or only "Bad file descriptor")."""
    make_box(rt, "src", tmp_path)
    full = os.open("/dev/full", os.O_WRONLY)
    read_only = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(BoxliteError) as caught:
            ex.export_box(rt, "src", full)
        assert caught.value.message == "No space left on device while exporting to standard output"
        with pytest.raises(BoxliteError) as caught:
            ex.export_box(rt, "src", read_only)
        assert caught.value.message == ("cannot write the archive to standard output: it is "
                                        "not open for writing")
    finally:
        os.close(full)
        os.close(read_only)
    assert list(staging_root(rt.paths).iterdir()) == []


def test_export_refuses_a_missing_directory_and_unknown_box(rt: Runtime, tmp_path: Path) -> None:
    make_box(rt, "src", tmp_path)
    with pytest.raises(BoxliteError, match="no such directory"):
        ex.export_box(rt, "src", tmp_path / "nope" / "x.bx")
    with pytest.raises(BoxliteError, match="no such box"):
        ex.export_box(rt, "ghost", tmp_path / "x.bx")
    with pytest.raises(BoxliteError) as caught:  # (where no file can be made)
        ex.export_box(rt, "src", Path("/proc/x.bx"))
    assert caught.value.message == "cannot write /proc/x.bx: No such file or directory"
    assert not (tmp_path / "x.bx").exists()


def test_export_out_of_space_leaves_no_file(rt: Runtime, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    make_box(rt, "src", tmp_path)
    real: Callable[..., Any] = ex.tarfile.TarFile.addfile

    def full(self: tarfile.TarFile, info: tarfile.TarInfo, f: Any = None) -> None:
        if info.name != "manifest.json":
            raise OSError(28, "No space left on device")
        real(self, info, f)

    monkeypatch.setattr(ex.tarfile.TarFile, "addfile", full)
    with pytest.raises(BoxliteError, match="No space left"):
        ex.export_box(rt, "src", tmp_path / "x.bx")
    assert not (tmp_path / "x.bx").exists()
    assert [p.name for p in tmp_path.iterdir() if "boxlite" in p.name] == []
    assert list(staging_root(rt.paths).iterdir()) == []


def test_clone_names() -> None:
    assert clone_names("web", 3) == ["web", "web-2", "web-3"]
    assert len(set(clone_names(None, 5))) == 5
    with pytest.raises(BoxliteError):
        clone_names("web", 0)
    with pytest.raises(BoxliteError):
        clone_names("bad name", 1)


def maker_gone(rt: Runtime, box_id: str) -> None:
    """As once the CLI that made the box's internal snapshots has exited."""
    index = rt.boxes.box_dir(box_id) / "disks" / "snapshots.json"
    data = json.loads(index.read_text())
    for snap in data["snapshots"]:
        if snap["owner"] is not None:
            snap["owner"] = {"pid": os.getpid(), "start_time": 1}  # not this process
    index.write_text(json.dumps(data))


def test_clone_of_stopped_box_and_rm_refusal(rt: Runtime, tmp_path: Path) -> None:
    src = make_box(rt, "src", tmp_path)
    own_chain = qcow2_backing(rt.files(src.id).rootfs_disk)
    clones = clone(rt, "src", name="cl", count=2)
    assert [c.name for c in clones] == ["cl", "cl-2"]
    # the clones' base is a copy: the source's own chain does not grow
    assert qcow2_backing(rt.files(src.id).rootfs_disk) == own_chain
    snap = rt.boxes.box_dir(src.id) / "disks" / "snapshots"
    frozen = {str(p) for p in snap.glob("*.qcow2")}
    assert len(frozen) == 1
    for c in clones:
        stored = rt.boxes.read(c.id)
        assert stored.status == Status.CREATED and stored.config.process == src.config.process
        assert qcow2_backing(rt.files(c.id).rootfs_disk) in frozen
    assert sorted(dependent_boxes(rt, src.id)) == ["cl", "cl-2"]
    with pytest.raises(Conflict, match="cl, cl-2"):
        rt.remove("src", force=True)
    with pytest.raises(Conflict, match='"cl" is already in use'):
        clone(rt, "src", name="cl")
    # rm's order: the source after its clones, whatever order they are given in
    assert removal_order(rt, ["src", "nope", "cl", "cl-2"]) == ["nope", "cl", "cl-2", "src"]
    assert removal_order(rt, ["cl", "src"]) == ["cl", "src"]
    maker_gone(rt, src.id)
    rt.remove("cl")
    assert {str(p) for p in snap.glob("*.qcow2")} == frozen  # cl-2 still uses it
    rt.remove("cl-2")  # the last one: the base they shared goes with it
    assert list(snap.glob("*.qcow2")) == [] and snapshots.list_all(rt, "src") == []
    rt.remove("src")
    assert leftovers(rt) == []


@pytest.mark.parametrize("when", ["before_overlay", "before_commit"])
def test_a_source_removed_while_it_is_cloned_makes_no_clone(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """An `rm -f` of the source between the clone's snapshot and its commit: no clone
    on a disk that is gone, one clear line, nothing left."""
    src = make_box(rt, "src", tmp_path)
    import boxlite_cli.runtime.clone as clone_module

    real_overlay, real_stage_state = clone_module.create_overlay, clone_module.stage_state

    def remove_source() -> None:
        shutil.rmtree(rt.boxes.box_dir(src.id) / "disks" / "snapshots")

    def overlay(base: Path, *args: Any, **kwargs: Any) -> None:
        if when == "before_overlay":
            remove_source()
        real_overlay(base, *args, **kwargs)

    def staged(box_dir: Path, state: BoxState) -> None:
        real_stage_state(box_dir, state)
        if when == "before_commit":
            remove_source()

    monkeypatch.setattr(clone_module, "create_overlay", overlay)
    monkeypatch.setattr(clone_module, "stage_state", staged)
    with pytest.raises(Conflict, match="box src was removed while it was being cloned"):
        clone(rt, "src", name="cl", count=2)
    assert [s.name for s in rt.boxes.all() if isinstance(s, BoxState)] == ["src"]
    assert list(staging_root(rt.paths).iterdir()) == []


def test_internal_snapshots_are_collected_once_their_maker_is_gone(rt: Runtime,
                                                                    tmp_path: Path) -> None:
    """What a killed clone or export left: removed by the next rm, clone or export,
    unless its maker still runs or a disk is built on it; a user's snapshot never."""
    src = make_box(rt, "src", tmp_path)
    snapshots.create(rt, "src", "export-0123", internal=True)
    snapshots.create(rt, "src", "mine")
    assert snapshots.collect_unused(rt) == []  # its maker (this process) still runs
    maker_gone(rt, src.id)
    assert snapshots.collect_unused(rt) == [f"{src.id[:12]}:export-0123"]
    assert [s.name for s in snapshots.list_all(rt, "src")] == ["mine"]


def test_stale_staging_is_cleaned(rt: Runtime, tmp_path: Path) -> None:
    partial = tmp_path / ".out.bx.boxlite-partial-1"
    partial.write_bytes(b"x")
    dead = staging_root(rt.paths) / "export-dead"
    dead.mkdir(parents=True)
    (dead / "rootfs.qcow2").write_bytes(b"x")
    write_json_atomic(dead / "owner.json", {"owner": {"pid": os.getpid(), "start_time": 1},
                                            "extra": [str(partial)]})
    with stage(rt.paths, "export") as live:
        (live.dir / "rootfs.qcow2").write_bytes(b"y" * 8192)
        # (system df counts what a killed export left as reclaimable, not a live one's)
        assert stale_bytes(rt.paths) == sum(p.stat().st_blocks * 512 for p in (
            dead / "rootfs.qcow2", dead / "owner.json", partial))
        assert clean_stale(rt.paths) == ["export-dead"]
        assert live.dir.exists() and not dead.exists() and not partial.exists()
    assert list(staging_root(rt.paths).iterdir()) == []


def test_a_deeply_nested_manifest_is_malformed_not_a_crash() -> None:
    with pytest.raises(ex.ArchiveError, match=r"manifest\.json is not valid JSON"):
        ex.parse_manifest(b"[" * 100_000 + b"]" * 100_000, "box.bx", 1 << 30)


def test_clones_of_a_box_with_a_fixed_host_port_get_free_ones(rt: Runtime, tmp_path: Path) -> None:
    """A fixed -p host port copied into clones kept them (and their source) from running
    at once: theirs are chosen at each start, and the user is told."""
    warned: list[str] = []
    rt.warn = warned.append
    src = make_box(rt, "web", tmp_path)
    src.config.network = NetworkConfig(ports=[PortMapping(80, "tcp", "127.0.0.1", 18080),
                                              PortMapping(53, "udp", "127.0.0.1", 0)])
    with rt.boxes.lock(src.id):
        rt.boxes.write(src)
    (made,) = clone(rt, "web", name="web-clone")
    ports = rt.boxes.read(made.id).config.network.ports
    assert [(p.box_port, p.proto, p.host_port) for p in ports] == [(80, "tcp", 0), (53, "udp", 0)]
    assert rt.boxes.read(src.id).config.network.ports[0].host_port == 18080  # its own stay
    assert warned and "18080" in warned[0] and "boxlite port" in warned[0]


def test_config_survives_export_and_import(rt: Runtime,
                                                                 disk: bytes) -> None:
    doc = manifest(disk)
    doc["config"]["stop_signal"] = "SIGINT"
    doc["config"]["disk_size"] = 9 << 30
    doc["config"]["stop_timeout"] = 2.5
    doc["config"]["labels"] = {"job": "7"}
    state = do_import(rt, archive([reg("manifest.json", json.dumps(doc).encode()),
                                   reg("disks/rootfs.qcow2", disk)]))
    assert rt.boxes.read(state.id).config.stop_signal == "SIGINT"
    assert rt.boxes.read(state.id).config.disk_size == doc["disks"][0]["virtual_size"]
    assert rt.boxes.read(state.id).config.stop_timeout == 2.5
    assert rt.boxes.read(state.id).config.labels == {"job": "7"}


def test_a_run_of_zeros_in_a_disk_is_written_as_a_hole(rt: Runtime, disk: bytes) -> None:
    """A zstd bomb (a small archive whose disk is mostly zeros) takes no disk space."""
    padded = disk + bytes(64 << 20)
    state = do_import(rt, archive(good_members(padded)))
    rootfs = rt.files(state.id).rootfs_disk
    assert rootfs.stat().st_size == len(padded)
    assert rootfs.stat().st_blocks * 512 < 8 << 20
    with open(rootfs, "rb") as f:
        assert f.read(len(disk)) == disk


def test_a_disk_bigger_than_the_free_space_is_refused_before_writing(
        rt: Runtime, disk: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.statvfs

    def tiny(path: Any) -> Any:
        st = real(path)
        return type("S", (), {"f_bavail": 1, "f_frsize": st.f_frsize})()

    monkeypatch.setattr(ex.os, "statvfs", tiny)
    rejected(rt, archive(good_members(disk)), "bytes are free in")
