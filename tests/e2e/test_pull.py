"""`boxlite pull` / `run --pull` end to end against a real registry (Debian's docker-registry).

Every test works in a fresh `BOXLITE_HOME` (the `store` fixture), so what a pull leaves behind
can be asserted exactly. Unpacked images are checked host-side in their ext4 base with
`debugfs`; only a few tests boot a VM.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import boxlite_bin, bx, interruptible, vm_processes
from tests.support import testimages as ti
from tests.support.faultproxy import BLOB_PATH, MANIFEST_PATH, FaultProxy
from tests.support.fixtures import PUBLIC_REPO, TEST_PASSWORD, TEST_USER
from tests.support.ocibuild import MT_OCI_INDEX, Blob, Image, Layer, directory, file, symlink
from tests.support.ocipush import PushedImage, RegistryClient, push
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.e2e


# --- helpers (test_images.py uses them too) ------------------------------------------------------

def error_lines(stderr: bytes) -> list[str]:
    """stderr without warnings (`boxlite: warning: ...`, the TCG notice)."""
    return [line for line in stderr.decode(errors="replace").splitlines()
            if not line.startswith("boxlite: warning:") and "warning: KVM" not in line]


def assert_error(proc: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """Exit 125 and one `boxlite: ...` line (a `  hint:` may follow), no traceback; returns it."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 125, f"rc={proc.returncode}\nstdout={proc.stdout!r}\nstderr={err}"
    lines = error_lines(proc.stderr)
    assert lines and lines[0].startswith("boxlite: "), err
    assert len(lines) <= 2, err
    if len(lines) == 2:
        assert lines[1].startswith("  hint: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), err
    return lines[0]


@contextlib.contextmanager
def hang_guard(what: str) -> Iterator[None]:
    """Around a command run with a `timeout=`: a hang guard, not a measurement. The
    timeout is generous for the working case, and the broken behaviour is made to take
    far longer (e.g. a large BOXLITE_REGISTRY_TIMEOUT), so outliving it means `what`."""
    try:
        yield
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{what} (still running when the {e.timeout:.0f} s hang guard ran out)",
                    pytrace=False)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Store:
    """A private boxlite home and a view of its image store."""

    home: Path

    @property
    def images(self) -> Path:
        return self.home / "images"

    def bx(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        return bx(*args, env={"BOXLITE_HOME": str(self.home), **(env or {})}, input=input, timeout=timeout)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen([boxlite_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, preexec_fn=interruptible,
                                env={**os.environ, "BOXLITE_HOME": str(self.home), **(env or {})})

    def tags(self) -> dict[str, str]:
        path = self.images / "repositories.json"
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    def tags_of(self, repository: str) -> list[str]:
        """Every key of repositories.json naming `repository` (host/repo), tag or digest."""
        return [k for k in self.tags() if re.split(r"[:@]", k.removeprefix(repository))[0] == ""
                and k.startswith(repository)]

    def image_rows(self) -> list[dict[str, object]]:
        proc = self.bx("images", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        return list(json.loads(proc.stdout))

    def blobs(self) -> dict[str, Path]:
        d = self.images / "blobs" / "sha256"
        return {"sha256:" + p.name: p for p in d.iterdir()} if d.is_dir() else {}

    def partials(self) -> list[Path]:
        d = self.images / "tmp"
        return sorted(d.glob("*.partial")) if d.is_dir() else []

    def assert_blobs_verified(self) -> None:
        for digest, path in self.blobs().items():
            assert "sha256:" + sha256_file(path) == digest, f"{path} does not hold {digest}"

    def box_ids(self) -> list[str]:
        proc = self.bx("ps", "-a", "--format", "json", timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [b["id"] for b in json.loads(proc.stdout)]

    def base(self, config_digest: str) -> Path:
        return self.images / "rootfs" / (config_digest.split(":", 1)[1] + ".ext4")

    def assert_nothing_of(self, pushed: PushedImage, bad_digests: tuple[str, ...] = ()) -> None:
        """No tag for the image, no image row, no blob of `bad_digests`, no box."""
        repo = f"{pushed.registry}/{pushed.repository}"
        assert self.tags_of(repo) == [], self.tags()
        assert [r for r in self.image_rows() if r["repository"] == repo] == []
        blobs = self.blobs()
        for d in bad_digests:
            assert d not in blobs
        self.assert_blobs_verified()
        assert self.box_ids() == []


def fresh_store(tmp_path: Path) -> Iterator[Store]:
    """A Store in `tmp_path/home`; removes the boxes made in it and checks no VM is left."""
    home = tmp_path / "home"
    home.mkdir()
    s = Store(home)
    yield s
    ids = s.box_ids() if (home / "boxes").is_dir() else []
    if ids:
        s.bx("rm", "-f", *ids, timeout=120)
    assert vm_processes(home) == []


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield from fresh_store(tmp_path)


# --- debugfs: reading an ext4 base without booting it ---------------------------------------------

def debugfs(fs: Path, request: str) -> str:
    out = subprocess.run(["debugfs", "-R", request, str(fs)], capture_output=True, timeout=60)
    return out.stdout.decode(errors="replace")


@dataclass(frozen=True)
class Inode:
    number: int
    kind: str
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    links: int
    symlink: str | None


def stat(fs: Path, path: str) -> Inode | None:
    out = debugfs(fs, f'stat "{path}"')
    m = re.search(r"Inode: (\d+)\s+Type: (\S+)\s+Mode:\s+(\d+)", out)
    if m is None:
        return None
    owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    links = re.search(r"Links: (\d+)", out)
    target = re.search(r'Fast link dest: "(.*)"', out)
    assert owner and links, out
    return Inode(int(m[1]), m[2], int(m[3], 8) & 0o7777, int(owner[1]), int(owner[2]), int(links[1]),
                 target[1] if target else None)


def cat(fs: Path, path: str) -> bytes:
    out = subprocess.run(["debugfs", "-R", f'cat "{path}"', str(fs)], capture_output=True, timeout=60)
    return out.stdout


def check_expect(fs: Path, expect: ti.Expect) -> None:
    for path, content in expect.files.items():
        ino = stat(fs, path)
        assert ino is not None and ino.kind == "regular", (path, ino)
        assert cat(fs, path) == content.encode(), path
    for path in expect.absent:
        assert stat(fs, path) is None, path
    for path, target in expect.symlinks.items():
        ino = stat(fs, path)
        assert ino is not None and ino.kind == "symlink" and ino.symlink == target, (path, ino)
    for path, mode in expect.modes.items():
        ino = stat(fs, path)
        assert ino is not None and ino.mode == mode, (path, ino, oct(mode))
    for path, (uid, gid) in expect.owners.items():
        ino = stat(fs, path)
        assert ino is not None and (ino.uid, ino.gid) == (uid, gid), (path, ino)
    for a, b in expect.hardlinks:
        ia, ib = stat(fs, a), stat(fs, b)
        assert ia is not None and ib is not None
        assert ia.number == ib.number and ia.links == 2, (ia, ib)
    for path, attrs in expect.xattrs.items():
        listing = debugfs(fs, f'ea_list "{path}"')
        for key, value in attrs.items():
            assert f'{key} ({len(value)}) = "{value}"' in listing, (path, listing)


def pull_ok(store: Store, ref: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = store.bx("pull", ref, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def create_base(store: Store, pushed: PushedImage) -> Path:
    """`boxlite create` the image (no boot) and return its ext4 base."""
    proc = store.bx("create", pushed.reference)
    assert proc.returncode == 0, proc.stderr
    base = store.base(pushed.config_digest)
    assert base.is_file(), sorted(p.name for p in (store.images / "rootfs").iterdir())
    return base


# --- 1. busybox: pull, up to date, images, inspect, run ------------------------------------------

def test_pull_busybox_output_images_and_inspect(store: Store, busybox_image: PushedImage) -> None:
    ref = busybox_image.reference
    first = pull_ok(store, ref)
    assert first.stdout.decode().splitlines() == [
        f"Digest: {busybox_image.manifest_digest}",
        f"Status: Downloaded newer image for {ref}",
        ref,
    ]
    assert b"\x1b[" not in first.stdout + first.stderr  # no progress bars off a terminal
    second = pull_ok(store, ref)
    assert second.stdout.decode().splitlines() == [
        f"Digest: {busybox_image.manifest_digest}",
        f"Status: Image is up to date for {ref}",
        ref,
    ]
    quiet = store.bx("pull", "-q", ref)
    assert quiet.returncode == 0 and quiet.stdout.decode() == ref + "\n"
    # a tag and a digest: the digest names the image and the tag is dropped (docker's)
    name = ref.rsplit(":", 1)[0]
    both = pull_ok(store, f"{name}:other@{busybox_image.manifest_digest}")
    assert both.stdout.decode().splitlines()[-1] == f"{name}@{busybox_image.manifest_digest}"
    assert not any("other" in key for key in store.tags())
    store.assert_blobs_verified()
    assert set(busybox_image.layer_digests) | {busybox_image.config_digest} <= set(store.blobs())
    assert store.partials() == []

    rows = store.image_rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["reference"] == ref
    assert row["repository"] == f"{busybox_image.registry}/busybox" and row["tag"] == "latest"
    assert row["id"] == busybox_image.config_digest
    assert row["digest"] == busybox_image.manifest_digest
    assert row["created"] == "2023-11-14T22:13:20Z"
    # (docker's SIZE: the layers' files, not the compressed blobs)
    files = 0
    for layer in busybox_image.image.layers:
        with tarfile.open(fileobj=io.BytesIO(layer.tar)) as tar:
            files += sum(m.size for m in tar if m.isreg())
    assert row["size"] == files != sum(b.size for b in busybox_image.image.layer_blobs)

    table = store.bx("images")
    assert table.returncode == 0
    assert busybox_image.config_digest[7:19] in table.stdout.decode()
    ids = store.bx("images", "-q")
    assert ids.stdout.decode().split() == [busybox_image.config_digest[7:19]]

    docs = []
    by_digest = busybox_image.digest_reference
    for cmd in (("image", "inspect", ref), ("inspect", ref), ("image", "inspect", by_digest)):
        proc = store.bx(*cmd)
        assert proc.returncode == 0, proc.stderr
        [doc] = json.loads(proc.stdout)
        assert doc["Id"] == busybox_image.config_digest
        assert doc["RepoTags"] == [ref]
        assert doc["RepoDigests"] == [f"{busybox_image.registry}/busybox@{busybox_image.manifest_digest}"]
        assert (doc["Architecture"], doc["Os"]) == ("amd64", "linux")
        assert doc["Config"]["Cmd"] == ["sh"]
        assert doc["Config"]["Env"] == list(ti.BUSYBOX_ENV)
        docs.append(doc)
    # as docker: the layers' diff_ids (digests of the uncompressed tars), not the blob digests
    for doc in docs:
        assert doc["RootFS"]["Layers"] == [la.diff_id for la in busybox_image.image.layers]


CONFIG_SCRIPT = 'echo "$(id -u):$(id -g)|$(pwd)|$HOME|$GREETING|$EXTRA|$0"'


@pytest.fixture(scope="module")
def config_image(registry: RegistryServer) -> PushedImage:
    """Entrypoint + Cmd, Env, a WorkingDir not in the layer, User by name (app, 1000:1000)."""
    config = {"Env": [*ti.BUSYBOX_ENV, "EXTRA=from-config"],
              "Entrypoint": ["/bin/sh", "-c", CONFIG_SCRIPT], "Cmd": ["default-arg"],
              "User": "app", "WorkingDir": "/srv/work"}
    return push(registry, "busybox", Image((ti.busybox_layer(),), config), tag="config")


def test_run_uses_the_image_config(store: Store, config_image: PushedImage) -> None:
    proc = store.bx("run", "--rm", config_image.reference)  # boot
    assert proc.returncode == 0, proc.stderr
    expected = "1000:1000|/srv/work|/home/app|hello from the image|from-config|default-arg\n"
    assert proc.stdout.decode() == expected
    assert store.box_ids() == []


def test_the_volumes_of_an_image_are_directories_of_its_base(store: Store,
                                                            registry: RegistryServer) -> None:
    """A VOLUME that no layer makes (docker mounts a volume there, so it always exists)
    is a directory of the box's root: root's, 0755 (no boot: read with debugfs)."""
    config = {"Env": list(ti.BUSYBOX_ENV), "Cmd": ["sh"],
              "Volumes": {"/srv/data/db": {}, "/bin": {}, "/bin/sh/x": {}, "/var/lib/pg": {}}}
    # (a database image's link to a place no layer makes: docker's mount makes it)
    linked = Layer.of([directory("var"), directory("var/lib"), symlink("var/lib/pg", "/data/pg")])
    pushed = push(registry, "busybox", Image((ti.busybox_layer(), linked), config), tag="volumes")
    base = create_base(store, pushed)
    for path in ("/srv", "/srv/data", "/srv/data/db", "/data", "/data/pg"):
        ino = stat(base, path)
        assert ino is not None and (ino.kind, ino.mode, ino.uid, ino.gid) == (
            "directory", 0o755, 0, 0), (path, ino)
    sh = stat(base, "/bin/sh")
    assert sh is not None and sh.kind == "symlink"  # (what is there stays as it was)
    assert stat(base, "/bin/busybox/x") is None


def test_an_images_exposed_ports_and_stop_signal(store: Store, registry: RegistryServer) -> None:
    """-P publishes what the image EXPOSEs (on free ports, at each start); its
    StopSignal is what `stop` sends."""
    config = {"Env": list(ti.BUSYBOX_ENV), "Cmd": ["sh"], "StopSignal": "SIGUSR1",
              "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}}
    pushed = push(registry, "busybox", Image((ti.busybox_layer(),), config), tag="exposed")
    script = 'trap "exit 7" USR1; while :; do sleep 0.1; done'
    run = store.bx("run", "-d", "-P", "--name", "exposed", pushed.reference, "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    try:
        record = json.loads(store.bx("inspect", "exposed").stdout)[0]
        assert record["config"]["stop_signal"] == "SIGUSR1"
        assert record["Config"]["ExposedPorts"] == {"53/udp": {}, "8080/tcp": {}}
        assert [(p["box_port"], p["proto"], p["host_port"])
                for p in record["config"]["network"]["ports"]] == [(53, "udp", 0), (8080, "tcp", 0)]
        ports = store.bx("port", "exposed").stdout.decode().splitlines()
        assert [line.split(" -> ")[0] for line in ports] == ["53/udp", "8080/tcp"], ports
        assert all(line.split(" -> ")[1].startswith("127.0.0.1:") for line in ports), ports
        assert store.bx("stop", "exposed").returncode == 0
        assert store.bx("wait", "exposed").stdout == b"7\n"
    finally:
        store.bx("rm", "-f", "exposed")
    # without -P they are still the box's exposed ports, as docker's inspect has them
    assert store.bx("create", "--name", "exposed", "--expose", "9000", pushed.reference
                    ).returncode == 0
    shown = store.bx("inspect", "-f", "{{json .Config.ExposedPorts}}", "exposed").stdout
    assert json.loads(shown) == {"53/udp": {}, "8080/tcp": {}, "9000/tcp": {}}
    assert store.bx("rm", "exposed").returncode == 0


def test_an_images_healthcheck_runs_unless_the_box_says_otherwise(
        store: Store, registry: RegistryServer) -> None:
    """The image's HEALTHCHECK (exec form, nanosecond durations) is the box's check;
    --health-* tune it, --no-healthcheck drops it."""
    config = {"Env": list(ti.BUSYBOX_ENV), "Cmd": ["sleep", "600"],
              "Healthcheck": {"Test": ["CMD", "sh", "-c", "echo from the image; exit 3"],
                              "Interval": 3_600_000_000_000, "Retries": 1}}
    pushed = push(registry, "busybox", Image((ti.busybox_layer(),), config), tag="checked")
    run = store.bx("run", "-d", "--name", "imagecheck", "--health-interval", "1s",
                   pushed.reference)
    assert run.returncode == 0, run.stderr
    try:
        deadline = time.monotonic() + 120
        while (health := json.loads(store.bx("inspect", "-f", "{{json .State.Health}}",
                                             "imagecheck").stdout))["Status"] != "unhealthy":
            assert time.monotonic() < deadline, health
            time.sleep(0.5)
        assert health["Log"][-1]["ExitCode"] == 3
        assert health["Log"][-1]["Output"] == "from the image\n"
        check = json.loads(store.bx("inspect", "-f", "{{json .Config.Healthcheck}}",
                                    "imagecheck").stdout)
        assert (check["Test"], check["Interval"], check["Retries"]) == (
            ["CMD", "sh", "-c", "echo from the image; exit 3"], 1_000_000_000, 1)
    finally:
        store.bx("rm", "-f", "imagecheck")
    created = store.bx("create", "--name", "nocheck", "--no-healthcheck", pushed.reference)
    assert created.returncode == 0, created.stderr
    record = json.loads(store.bx("inspect", "nocheck").stdout)[0]
    assert record["Config"]["Healthcheck"] == {"Test": ["NONE"]}  # (docker's, as given)
    assert "Health" not in record["State"]
    store.bx("rm", "-f", "nocheck")


# --- 2. run --pull missing|never|always ---------------------------------------------------------------

def test_run_pull_missing_pulls_then_runs(store: Store, busybox_image: PushedImage) -> None:
    proc = store.bx("run", "--rm", busybox_image.reference, "echo", "hi")  # boot; default: missing
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hi\n"
    # (said on stderr, as docker's: not a silent wait)
    said = [line for line in proc.stderr.decode().splitlines() if "KVM" not in line]
    assert said == [f"Unable to find image '{busybox_image.reference}' locally",
                    f"Digest: {busybox_image.manifest_digest}",
                    f"Status: Downloaded newer image for {busybox_image.reference}"], said
    assert [r["id"] for r in store.image_rows()] == [busybox_image.config_digest]
    assert store.base(busybox_image.config_digest).is_file()
    assert store.box_ids() == []


def test_a_registry_on_ipv6_loopback_is_named_in_brackets(store: Store, tmp_path: Path) -> None:
    """`[::1]:PORT/repo:tag`, as docker takes it: pulled over plain HTTP (loopback), listed
    and tagged under that name."""
    try:
        server = RegistryServer(tmp_path / "v6", ip="::1").start()
    except (OSError, RuntimeError) as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    with server:
        pushed = push(server, "busybox", ti.busybox_image())
        assert pushed.reference.startswith("[::1]:")
        pull_ok(store, pushed.reference)
        assert [r["reference"] for r in store.image_rows()] == [pushed.reference]
        tagged = store.bx("tag", pushed.reference, "[::1]:1/other:t")
        assert tagged.returncode == 0, tagged.stderr
        assert "[::1]:1/other:t" in store.tags()


def test_run_pull_never_on_an_absent_image(store: Store, busybox_image: PushedImage) -> None:
    proc = store.bx("run", "--rm", "--pull", "never", busybox_image.reference, "true")
    assert_error(proc)
    assert store.box_ids() == []
    assert store.image_rows() == []
    create = store.bx("create", "--pull", "never", busybox_image.reference)
    assert_error(create)
    assert store.box_ids() == []


def test_pull_always_asks_the_registry_again(store: Store, busybox_image: PushedImage,
                                             fault_proxy: FaultProxy) -> None:
    ref = busybox_image.at(fault_proxy.host)
    pull_ok(store, ref)
    fault_proxy.reset()
    missing = store.bx("create", "--pull", "missing", ref)
    assert missing.returncode == 0, missing.stderr
    assert fault_proxy.count(MANIFEST_PATH) == 0
    always = store.bx("create", "--pull", "always", ref)
    assert always.returncode == 0, always.stderr
    assert fault_proxy.count(MANIFEST_PATH) >= 1
    assert fault_proxy.count(BLOB_PATH, "GET") == 0  # it had every blob already
    never = store.bx("create", "--pull", "never", ref)
    assert never.returncode == 0, never.stderr
    assert len(store.box_ids()) == 3


# --- 3. multi-layer: whiteouts, opaque dirs, links, modes, owners, xattrs --------------------------

def test_multilayer_image_unpacks_exactly(store: Store, multilayer_image: PushedImage) -> None:
    pull_ok(store, multilayer_image.reference)
    base = create_base(store, multilayer_image)
    check_expect(base, ti.MULTILAYER_EXPECT)
    assert cat(base, "/etc/os-release").startswith(b"ID=boxlite-test")
    assert stat(base, "/bin/sh") is not None


# --- 4. platforms ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["multiarch_image", "manifest_list_image"])
def test_index_resolves_to_linux_amd64(store: Store, fixture: str, request: pytest.FixtureRequest) -> None:
    pushed: PushedImage = request.getfixturevalue(fixture)
    proc = pull_ok(store, pushed.reference)
    assert f"Digest: {pushed.manifest_digest}" in proc.stdout.decode()  # the index's digest
    [row] = store.image_rows()
    assert row["id"] == pushed.config_digest  # the amd64 entry's config
    [doc] = json.loads(store.bx("image", "inspect", pushed.reference).stdout)
    assert doc["Architecture"] == "amd64"
    # one digest for the image everywhere: the index's, as the registry calls it
    assert row["digest"] == pushed.manifest_digest
    assert [d.split("@")[1] for d in doc["RepoDigests"]] == [pushed.manifest_digest]
    assert store.bx("images", "--format", "{{.Digest}}").stdout.decode() == \
        f"{pushed.manifest_digest}\n"
    table = store.bx("images", "--digests").stdout.decode().splitlines()
    assert table[1].split()[2] == pushed.manifest_digest, table
    base = create_base(store, pushed)
    assert cat(base, "/etc/arch") == b"amd64\n"
    arm64 = pushed.artifact.for_platform("linux", "arm64")  # type: ignore[union-attr]
    assert arm64.config_blob.digest not in store.blobs()  # only amd64 was fetched


def test_an_index_in_an_index_is_walked_into(store: Store, registry: RegistryServer,
                                             multiarch_image: PushedImage) -> None:
    """An outer index whose entry is the multi-arch index, with no platform (as some
    build tools write them): walked into to its linux/amd64 image, as containerd does."""
    inner = multiarch_image.artifact
    outer = Blob(MT_OCI_INDEX, json.dumps({
        "schemaVersion": 2, "mediaType": MT_OCI_INDEX,
        "manifests": [{"mediaType": MT_OCI_INDEX, "digest": inner.digest,
                       "size": inner.manifest.size}]}).encode())
    with RegistryClient(registry.url) as client:
        client.push_manifest("multiarch", "nested", outer)
    ref = registry.ref("multiarch", "nested")
    pull_ok(store, ref)
    [row] = store.image_rows()
    assert row["id"] == inner.for_platform("linux", "amd64").config_blob.digest  # type: ignore[union-attr]


def test_arm64_only_index_fails_clearly(store: Store, arm64_only_image: PushedImage) -> None:
    proc = store.bx("pull", arm64_only_image.reference)
    assert_error(proc, "linux/arm64")
    store.assert_nothing_of(arm64_only_image)
    run = store.bx("run", "--rm", arm64_only_image.reference, "true")
    assert_error(run, "linux/arm64")
    store.assert_nothing_of(arm64_only_image)


# --- 5. compressions and media types ------------------------------------------------------------

@pytest.mark.parametrize(("fixture", "marker", "content"), [
    ("zstd_image", "/etc/compression", b"zstd\n"),
    ("uncompressed_image", "/etc/compression", b"none\n"),
    ("mixed_compression_image", "/etc/layers", b"gzip\nzstd\nnone\n"),
    ("docker_image", "/etc/os-release", b'ID=boxlite-test\nNAME="boxlite test busybox"\n'),
])
def test_layer_formats_pull_and_unpack(store: Store, fixture: str, marker: str, content: bytes,
                                       request: pytest.FixtureRequest) -> None:
    pushed: PushedImage = request.getfixturevalue(fixture)
    pull_ok(store, pushed.reference)
    store.assert_blobs_verified()
    base = create_base(store, pushed)
    assert cat(base, marker) == content
    busybox = stat(base, "/bin/busybox")
    assert busybox is not None and busybox.mode == 0o755
    assert cat(base, "/bin/busybox") == ti.static_busybox()
    sh = stat(base, "/bin/sh")
    assert sh is not None and sh.symlink == "busybox"


# --- 6. authentication -------------------------------------------------------------------------------

def _auth_json(store: Store) -> dict[str, object]:
    path = store.home / "config" / "auth.json"
    return dict(json.loads(path.read_text()).get("auths", {})) if path.is_file() else {}


def test_basic_auth_login_logout(store: Store, auth_registry: RegistryServer,
                                 auth_busybox_image: PushedImage) -> None:
    ref, host = auth_busybox_image.reference, auth_registry.host
    anon = store.bx("pull", ref)
    line = assert_error(anon)
    assert "login" in anon.stderr.decode().lower(), line
    store.assert_nothing_of(auth_busybox_image)

    wrong = store.bx("login", "-u", TEST_USER, "--password-stdin", host, input=b"not-the-password\n")
    assert_error(wrong)
    assert host not in _auth_json(store)

    right = store.bx("login", "-u", TEST_USER, "--password-stdin", host, input=TEST_PASSWORD.encode() + b"\n")
    assert right.returncode == 0, right.stderr
    assert b"Login Succeeded" in right.stdout
    auth_file = store.home / "config" / "auth.json"
    assert auth_file.stat().st_mode & 0o777 == 0o600
    assert host in _auth_json(store)

    pull_ok(store, ref)
    assert [r["id"] for r in store.image_rows()] == [auth_busybox_image.config_digest]

    out = store.bx("logout", host)
    assert out.returncode == 0, out.stderr
    assert host not in _auth_json(store)
    twice = store.bx("logout", host)  # (docker's: not logged in is no failure)
    assert (twice.returncode, twice.stdout) == (0, f"Not logged in to {host}\n".encode())
    assert store.bx("rmi", ref).returncode == 0
    again = store.bx("pull", ref)
    assert_error(again)
    store.assert_nothing_of(auth_busybox_image)


def test_credentials_from_docker_config(store: Store, tmp_path: Path, auth_registry: RegistryServer,
                                        auth_busybox_image: PushedImage) -> None:
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    # a credential helper that fails: the pull that needs a login says so, as docker does
    helper = docker_dir / "docker-credential-broken"
    helper.write_text("#!/bin/sh\necho 'keyring locked' >&2\nexit 3\n")
    helper.chmod(0o755)
    (docker_dir / "config.json").write_text(json.dumps({"credHelpers": {auth_registry.host: "broken"}}))
    broken = store.bx("pull", auth_busybox_image.reference,
                      env={"DOCKER_CONFIG": str(docker_dir),
                           "PATH": f"{docker_dir}:{os.environ['PATH']}"})
    assert_error(broken)
    assert (b"hint: no credentials: the credential helper docker-credential-broken failed "
            b"(exit status 3: keyring locked)") in broken.stderr
    store.assert_nothing_of(auth_busybox_image)
    token = base64.b64encode(f"{TEST_USER}:{TEST_PASSWORD}".encode()).decode()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    proc = store.bx("pull", auth_busybox_image.reference, env={"DOCKER_CONFIG": str(docker_dir)})
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in store.image_rows()] == [auth_busybox_image.config_digest]
    assert _auth_json(store) == {}  # nothing copied into boxlite's own file


def test_token_auth_public_and_private(store: Store, token_registry: RegistryServer,
                                       token_public_image: PushedImage,
                                       token_busybox_image: PushedImage) -> None:
    ts = token_registry.token_server
    assert ts is not None
    ts.clear_requests()
    pull_ok(store, token_public_image.reference)
    fetched = ts.fetched(PUBLIC_REPO)
    assert fetched and fetched[0].username is None
    assert any(PUBLIC_REPO in name and "pull" in actions for r in fetched for name, actions in r.granted)

    private = store.bx("pull", token_busybox_image.reference)
    assert_error(private)
    assert "login" in private.stderr.decode().lower()
    store.assert_nothing_of(token_busybox_image)

    login = store.bx("login", "-u", TEST_USER, "--password-stdin", token_registry.host,
                     input=TEST_PASSWORD.encode())
    assert login.returncode == 0, login.stderr
    assert b"Login Succeeded" in login.stdout
    pull_ok(store, token_busybox_image.reference)
    assert any(r.username == TEST_USER for r in ts.fetched("private/busybox"))
    refs = {r["reference"] for r in store.image_rows()}
    assert refs == {token_public_image.reference, token_busybox_image.reference}


# --- 7. bad input: 125, one line, nothing left ---------------------------------------------------

def test_unknown_repository_and_tag(store: Store, registry: RegistryServer,
                                    busybox_image: PushedImage) -> None:
    assert_error(store.bx("pull", registry.ref("no-such-repo")), "no-such-repo")
    assert_error(store.bx("pull", registry.ref("busybox", "no-such-tag")), "no-such-tag")
    absent = "sha256:" + "00dd" * 16
    assert_error(store.bx("pull", f"{registry.host}/busybox@{absent}"),
                 f"manifest for {registry.host}/busybox@{absent} not found")
    assert store.tags() == {} and store.image_rows() == [] and store.blobs() == {}
    assert_error(store.bx("run", "--rm", registry.ref("no-such-repo"), "true"), "no-such-repo")
    assert store.box_ids() == []


def test_a_missing_blob_and_a_bare_401_say_what_they_are(store: Store, busybox_image: PushedImage,
                                                        fault_proxy: FaultProxy) -> None:
    [layer] = busybox_image.layer_digests
    fault_proxy.fail(404, path=re.escape(layer))
    ref = busybox_image.at(fault_proxy.host)
    assert_error(store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"}),
                 f"blob {layer} of {fault_proxy.host}/busybox not found in the registry")
    fault_proxy.fail(401, path=MANIFEST_PATH)  # and no WWW-Authenticate header
    unauthorized = store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"})
    assert_error(unauthorized, f"{fault_proxy.host} answered 401 Unauthorized")
    assert f"boxlite login {fault_proxy.host}" in unauthorized.stderr.decode()
    fault_proxy.reset()
    store.assert_nothing_of(busybox_image, busybox_image.layer_digests)


def test_digest_mismatch_is_refused(store: Store, busybox_image: PushedImage,
                                    fault_proxy: FaultProxy) -> None:
    fault_proxy.corrupt_blobs()
    proc = store.bx("pull", busybox_image.at(fault_proxy.host), env={"BOXLITE_REGISTRY_RETRIES": "1"})
    assert_error(proc)
    store.assert_nothing_of(busybox_image, (busybox_image.config_digest, *busybox_image.layer_digests))
    assert store.partials() == []


def test_truncated_blob_fails_after_bounded_attempts(store: Store, busybox_image: PushedImage,
                                                     fault_proxy: FaultProxy) -> None:
    [layer] = busybox_image.layer_digests
    fault_proxy.truncate_blobs(0, path=re.escape(layer))  # headers, then the connection is closed
    # a pull that waited for the rest of the body would wait out the read timeout (an
    # hour), 3 times: far past the guard
    with hang_guard("the pull kept waiting on a blob whose connection was closed"):
        proc = store.bx("pull", busybox_image.at(fault_proxy.host), timeout=60,
                        env={"BOXLITE_REGISTRY_RETRIES": "2", "BOXLITE_REGISTRY_TIMEOUT": "3600"})
    assert_error(proc)
    assert fault_proxy.count(re.escape(layer), "GET") == 3  # 1 + 2 retries
    store.assert_nothing_of(busybox_image, (layer,))


def test_malformed_manifest(store: Store, busybox_image: PushedImage, fault_proxy: FaultProxy) -> None:
    fault_proxy.serve(MANIFEST_PATH, b'{"schemaVersion": 2, "mediaType": ',
                      content_type="application/vnd.oci.image.manifest.v1+json")
    proc = store.bx("pull", busybox_image.at(fault_proxy.host))
    assert_error(proc)
    store.assert_nothing_of(busybox_image)
    assert store.blobs() == {}


def test_manifest_without_layers_list(store: Store, busybox_image: PushedImage,
                                      fault_proxy: FaultProxy) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + "0" * 64, "size": 2}})
    fault_proxy.serve(MANIFEST_PATH, body, content_type="application/vnd.oci.image.manifest.v1+json")
    proc = store.bx("pull", busybox_image.at(fault_proxy.host))
    assert_error(proc)
    store.assert_nothing_of(busybox_image)


def _escape_names() -> set[str]:
    return {Path(p).name for paths in ti.HOSTILE_ESCAPES.values() for p in paths}


@pytest.mark.parametrize("kind", ti.HOSTILE_KINDS)
def test_hostile_image(kind: str, store: Store, tmp_path: Path,
                       hostile_images: dict[str, PushedImage]) -> None:
    pushed = hostile_images[kind]
    for path in ti.HOSTILE_ESCAPES.get(kind, ()):
        if path.startswith("/"):
            Path(path).unlink(missing_ok=True)
    pulled = store.bx("pull", pushed.reference)
    base = store.base(pushed.config_digest)
    if kind in ("wrong_size", "unknown_layer_type"):  # (refused as it is fetched)
        assert_error(pulled)
        store.assert_nothing_of(pushed, pushed.layer_digests[1:])
    elif pulled.returncode != 0:
        # refused as it is unpacked (the pull's last step): which image and layer, and
        # nothing of it named or unpacked
        said = assert_error(pulled)
        assert f"image {pushed.reference} cannot be unpacked: layer sha256:" in said, said
        # (its blobs go with it, as a refused load's: they stayed until a prune)
        store.assert_nothing_of(pushed, (pushed.manifest_digest, *pushed.layer_digests))
        assert not base.exists()
        assert kind in ("dotdot", "hardlink_escape", "diff_id_mismatch", "not_gzip"), \
            "a pull refused a layer it could have confined"
    else:
        assert kind not in ("diff_id_mismatch", "not_gzip"), "a layer that cannot be read was kept"
        assert base.is_file()  # (unpacked by the pull: the first box starts from it)
        assert store.bx("create", pushed.reference).returncode == 0
        if kind == "absolute":  # confined: the entry landed inside the image
            assert cat(base, "/tmp/boxlite-escape-absolute") == b"x\n"
        if kind == "hardlink_escape":
            for name in ("/evil-hard-rel", "/evil-hard-abs"):
                assert cat(base, name) != Path("/etc/passwd").read_bytes()
    # nothing was written outside the target, wherever the unpacker works
    for path in ti.HOSTILE_ESCAPES.get(kind, ()):
        if path.startswith("/"):
            assert not os.path.lexists(path), path
    names = _escape_names()
    strays = [p for p in tmp_path.rglob("*") if p.name in names]
    assert strays == []
    for parent in [store.images / "tmp", store.images, store.home, *store.home.parents][:8]:
        for name in names:
            assert not os.path.lexists(parent / name), parent / name


def test_server_errors_are_retried_a_bounded_number_of_times(store: Store, busybox_image: PushedImage,
                                                              fault_proxy: FaultProxy) -> None:
    fault_proxy.fail(500, path=MANIFEST_PATH)
    with hang_guard("the pull kept retrying a registry that answers 500"):
        proc = store.bx("pull", busybox_image.at(fault_proxy.host), timeout=60,
                        env={"BOXLITE_REGISTRY_RETRIES": "2"})
    assert_error(proc, "(HTTP 500), gave up after 3 attempts")
    assert fault_proxy.count(MANIFEST_PATH) == 3
    # (the backoff between the attempts, 0.5 s then 1 s with jitter, is checked through
    # the client's sleep in tests/unit/test_host_registry_retries.py, not with a clock)
    store.assert_nothing_of(busybox_image)


def test_a_redirect_loop_is_a_registry_error_not_a_crash(store: Store, busybox_image: PushedImage,
                                                          fault_proxy: FaultProxy) -> None:
    fault_proxy.serve(MANIFEST_PATH, "", status=302, headers={"Location": "/v2/loop/manifests/x"})
    proc = store.bx("pull", busybox_image.at(fault_proxy.host))
    assert_error(proc, "too many redirects")
    store.assert_nothing_of(busybox_image)


def test_a_500_without_an_error_body_says_its_status_once(store: Store, busybox_image: PushedImage,
                                                          fault_proxy: FaultProxy) -> None:
    fault_proxy.serve(MANIFEST_PATH, "<html>oops</html>", status=500, content_type="text/html")
    proc = store.bx("pull", busybox_image.at(fault_proxy.host),
                    env={"BOXLITE_REGISTRY_RETRIES": "0"})
    assert assert_error(proc).endswith(": HTTP 500, gave up after 1 attempt")


def test_a_transient_503_is_retried(store: Store, busybox_image: PushedImage,
                                    fault_proxy: FaultProxy) -> None:
    fault_proxy.fail(503, times=1, path=BLOB_PATH)
    proc = store.bx("pull", busybox_image.at(fault_proxy.host))
    assert proc.returncode == 0, proc.stderr
    store.assert_blobs_verified()


def test_hanging_registry_times_out(store: Store, busybox_image: PushedImage,
                                    fault_proxy: FaultProxy) -> None:
    fault_proxy.hang(BLOB_PATH)
    # 2 attempts of 2 s each (plus 0.5 s backoff) per blob; without a read timeout the
    # pull waits for ever, and one that ignored BOXLITE_REGISTRY_TIMEOUT (30 s by default)
    # would take over 60 s: both past the guard
    with hang_guard("the pull did not time out on a registry that stopped answering"):
        proc = store.bx("pull", busybox_image.at(fault_proxy.host), timeout=30,
                        env={"BOXLITE_REGISTRY_TIMEOUT": "2", "BOXLITE_REGISTRY_RETRIES": "1"})
    assert_error(proc)
    assert fault_proxy.count(BLOB_PATH) <= 2 * (1 + len(busybox_image.layer_digests))
    fault_proxy.reset()
    store.assert_nothing_of(busybox_image, busybox_image.layer_digests)


def test_ctrl_c_ends_a_pull_whose_download_hangs(store: Store, busybox_image: PushedImage,
                                                fault_proxy: FaultProxy) -> None:
    """Ctrl-C during a layer download that hangs (a registry that stopped sending)
    ends the pull at once, not after the read timeouts of every retry."""
    [layer] = busybox_image.layer_digests
    fault_proxy.hang(re.escape(layer))  # (the config comes first, in the main thread)
    # (a read timeout of an hour: a pull that waited it out would outlive the guard below)
    proc = store.popen("pull", busybox_image.at(fault_proxy.host),
                       env={"BOXLITE_REGISTRY_TIMEOUT": "3600"})
    try:
        deadline = time.monotonic() + 60
        while fault_proxy.count(re.escape(layer), "GET") == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the pull never asked for its layer"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        with hang_guard("Ctrl-C did not end the pull (it waits out the read timeout?)"):
            _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    fault_proxy.reset()
    store.assert_nothing_of(busybox_image, busybox_image.layer_digests)


# --- 8. interrupted pulls resume ------------------------------------------------------------------

def test_interrupted_pull_resumes_with_range(store: Store, busybox_image: PushedImage,
                                             fault_proxy: FaultProxy) -> None:
    ref = busybox_image.at(fault_proxy.host)
    [layer] = busybox_image.layer_digests
    fault_proxy.truncate_blobs(300_000, path=re.escape(layer))
    first = store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"})
    assert_error(first)
    assert store.tags_of(f"{fault_proxy.host}/busybox") == []
    assert layer not in store.blobs()
    partials = store.partials()
    assert [p.name for p in partials] == [layer[7:] + ".partial"]
    assert partials[0].stat().st_size == 300_000

    fault_proxy.reset()
    second = store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"})
    assert second.returncode == 0, second.stderr
    resumed = [r for r in fault_proxy.requests if layer in r.path and r.method == "GET"]
    assert [r.status for r in resumed] == [206], resumed  # a Range request for the rest
    assert store.partials() == []
    store.assert_blobs_verified()
    assert layer in store.blobs()


def test_a_corrupt_partial_is_fetched_again_whole_in_the_same_pull(
        store: Store, busybox_image: PushedImage, fault_proxy: FaultProxy) -> None:
    """A partial whose bytes went bad on disk fails the digest once resumed: the same
    pull then fetches the blob from byte 0 (it failed, and only the next pull mended it)."""
    ref = busybox_image.at(fault_proxy.host)
    [layer] = busybox_image.layer_digests
    fault_proxy.truncate_blobs(300_000, path=re.escape(layer))
    assert_error(store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"}))
    [partial] = store.partials()
    with open(partial, "r+b") as f:
        f.seek(1000)
        f.write(b"\0corrupt")
    fault_proxy.reset()
    again = store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"})
    assert again.returncode == 0, again.stderr
    fetched = [r.status for r in fault_proxy.requests if layer in r.path and r.method == "GET"]
    assert fetched == [206, 200], fetched  # the rest, then the whole blob
    assert store.partials() == []
    store.assert_blobs_verified()


@pytest.mark.parametrize("whole", [True, False])
def test_a_partial_holding_every_byte_is_committed_without_a_request(
        store: Store, busybox_image: PushedImage, fault_proxy: FaultProxy,
        registry: RegistryServer, whole: bool) -> None:
    """A pull killed after the last byte, before its commit, left a partial that is all
    there: the next pull verifies and keeps it, asking for nothing (a range from its end
    is answered 416 and failed every pull after). One all there but damaged is fetched
    again whole."""
    ref = busybox_image.at(fault_proxy.host)
    [layer] = busybox_image.layer_digests
    fault_proxy.truncate_blobs(300_000, path=re.escape(layer))
    assert_error(store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"}))
    [partial] = store.partials()
    blob = registry.blob_file(layer).read_bytes()
    partial.write_bytes(blob if whole else blob[:-1] + bytes([blob[-1] ^ 1]))
    fault_proxy.reset()
    again = store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"})
    assert again.returncode == 0, again.stderr
    fetched = [r.status for r in fault_proxy.requests if layer in r.path and r.method == "GET"]
    assert fetched == ([] if whole else [200]), fetched
    assert store.partials() == []
    store.assert_blobs_verified()


def test_a_resumed_range_answered_416_starts_again_from_byte_0(
        store: Store, busybox_image: PushedImage, fault_proxy: FaultProxy) -> None:
    ref = busybox_image.at(fault_proxy.host)
    [layer] = busybox_image.layer_digests
    fault_proxy.truncate_blobs(300_000, path=re.escape(layer))
    assert_error(store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"}))
    fault_proxy.reset()
    fault_proxy.fail(416, times=1, path=re.escape(layer))
    again = store.bx("pull", ref, env={"BOXLITE_REGISTRY_RETRIES": "0"})
    assert again.returncode == 0, again.stderr
    fetched = [r.status for r in fault_proxy.requests if layer in r.path and r.method == "GET"]
    assert fetched == [416, 200], fetched
    store.assert_blobs_verified()


class SlowRelay:
    """A TCP relay to an upstream port that passes responses on at `rate` bytes/s."""

    def __init__(self, upstream_port: int, rate: int) -> None:
        self.upstream_port, self.rate = upstream_port, rate
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        chunk = max(1, self.rate // 50)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.5)
                for s in ready:
                    data = s.recv(chunk if s is upstream else 65536)
                    if not data:
                        return
                    (client if s is upstream else upstream).sendall(data)
                    if s is upstream:
                        time.sleep(len(data) / self.rate)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()


@pytest.fixture(scope="module")
def big_image(registry: RegistryServer) -> PushedImage:
    """Busybox plus 40 MB of incompressible data in a second layer."""
    data = random.Random(4).randbytes(40 << 20)
    image = Image((ti.busybox_layer(), Layer.of([file("data/big.bin", data)], "none")),
                  ti.BUSYBOX_CONFIGS["default"])
    return push(registry, "big", image)


def test_kill_9_mid_pull_then_rerun(store: Store, big_image: PushedImage, registry: RegistryServer,
                                    fault_proxy: FaultProxy) -> None:
    relay = SlowRelay(registry.port, rate=8 << 20)
    try:
        proc = store.popen("pull", big_image.at(relay.host))
        deadline = time.monotonic() + 60
        big = big_image.layer_digests[1]
        partial = store.images / "tmp" / (big[7:] + ".partial")
        while time.monotonic() < deadline and proc.poll() is None:
            if partial.is_file() and partial.stat().st_size > 4 << 20:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the pull finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        relay.close()
    assert proc.returncode == -signal.SIGKILL
    assert store.tags_of(f"{relay.host}/big") == []
    assert big not in store.blobs()

    again = store.bx("pull", big_image.at(fault_proxy.host))
    assert again.returncode == 0, again.stderr
    store.assert_blobs_verified()
    assert set(big_image.layer_digests) <= set(store.blobs())
    assert store.partials() == []
    statuses = [r.status for r in fault_proxy.requests if big in r.path and r.method == "GET"]
    assert statuses == [206], statuses  # it resumed what the killed pull had written


# --- 9. concurrent pulls ---------------------------------------------------------------------------

def test_concurrent_pulls_of_one_image(store: Store, big_image: PushedImage) -> None:
    procs = [store.popen("pull", big_image.reference) for _ in range(4)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    for (out, err), rc in results:
        assert rc == 0, err
        assert out.decode().splitlines()[-1] == big_image.reference
    rows = store.image_rows()
    assert [r["reference"] for r in rows] == [big_image.reference]
    assert sorted(store.tags_of(f"{big_image.registry}/big")) == sorted([
        big_image.reference, f"{big_image.registry}/big@{big_image.manifest_digest}"])
    store.assert_blobs_verified()
    wanted = {*big_image.layer_digests, big_image.config_digest, big_image.manifest_digest}
    assert wanted == set(store.blobs())
    assert store.partials() == []
