"""The local image store end to end: `rmi`, `image prune`, `load`, against a real registry."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_pull import Store, assert_error, cat, create_base, fresh_store, pull_ok
from tests.support import testimages as ti
from tests.support.fixtures import TEST_PASSWORD, TEST_USER, ImageArchives
from tests.support.ocibuild import Image, Layer, directory, file
from tests.support.ocipush import PushedImage, push
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield from fresh_store(tmp_path)


# --- rmi ---------------------------------------------------------------------------------------

def test_rmi_refuses_an_image_a_box_uses_then_force(store: Store, busybox_image: PushedImage) -> None:
    ref = busybox_image.reference
    pull_ok(store, ref)
    create = store.bx("create", "--name", "user-of-image", ref, "sh", "-c", "echo still-runs")
    assert create.returncode == 0, create.stderr
    box_id = create.stdout.decode().strip()

    # one name of several is only untagged, a box using the image or not (docker's)
    assert store.bx("tag", ref, "extra:tag").returncode == 0
    untagged = store.bx("rmi", "extra:tag")
    assert (untagged.returncode, untagged.stdout) == (0, b"Untagged: extra:tag\n"), untagged.stderr
    refused = store.bx("rmi", ref)  # (the last name)
    assert_error(refused, "uses image")
    assert [r["reference"] for r in store.image_rows()] == [ref]
    assert store.base(busybox_image.config_digest).is_file()
    assert_error(store.bx("rmi", busybox_image.config_digest[7:19]), "uses image")  # (by id)

    forced = store.bx("rmi", "-f", ref)
    assert forced.returncode == 0, forced.stderr
    assert f"Untagged: {ref}" in forced.stdout.decode()
    assert "Deleted:" not in forced.stdout.decode()  # (the box's image stays, untagged)
    [row] = store.image_rows()  # (docker's <none>: by its digest)
    assert (row["id"], row["tag"]) == (busybox_image.config_digest, None)
    assert store.box_ids() == [box_id]
    assert_error(store.bx("rmi", "-f", busybox_image.config_digest[7:19]), "no name left")
    assert store.bx("image", "prune", "-f").returncode == 0
    assert len(store.image_rows()) == 1  # (a box uses it)

    # the box keeps what it was created from: it still starts (one boot)
    start = store.bx("start", box_id)
    assert start.returncode == 0, start.stderr
    waited = store.bx("wait", box_id)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.decode().strip() == "0"
    assert store.bx("logs", box_id).stdout == b"still-runs\n"
    assert store.bx("rm", box_id).returncode == 0
    assert store.bx("image", "prune", "-f").returncode == 0
    assert store.image_rows() == []  # (no box uses it now)


def test_rmi_by_id_prefix(store: Store, busybox_image: PushedImage,
                          busybox_variants: dict[str, PushedImage]) -> None:
    user = busybox_variants["user"]
    pull_ok(store, busybox_image.reference)
    pull_ok(store, user.reference)
    prefix = user.config_digest[7:19]
    proc = store.bx("rmi", prefix)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert f"Untagged: {user.reference}" in out
    assert f"Deleted: {user.config_digest}" in out
    assert [r["id"] for r in store.image_rows()] == [busybox_image.config_digest]
    blobs = store.blobs()
    assert user.config_digest not in blobs and user.manifest_digest not in blobs
    # the layer is shared with the image that is left
    assert set(busybox_image.layer_digests) <= set(blobs)
    store.assert_blobs_verified()
    assert_error(store.bx("rmi", "0123456789ab"))


def test_image_prune_all(store: Store, busybox_image: PushedImage, multilayer_image: PushedImage) -> None:
    pull_ok(store, busybox_image.reference)
    pull_ok(store, multilayer_image.reference)
    base = create_base(store, multilayer_image)  # a box uses multilayer
    [box_id] = store.box_ids()

    proc = store.bx("image", "prune", "-a", "-f")
    assert proc.returncode == 0, proc.stderr
    assert "Total reclaimed space:" in proc.stdout.decode()
    assert [r["reference"] for r in store.image_rows()] == [multilayer_image.reference]
    blobs = set(store.blobs())
    assert busybox_image.config_digest not in blobs and busybox_image.manifest_digest not in blobs
    ml = {multilayer_image.config_digest, multilayer_image.manifest_digest, *multilayer_image.layer_digests}
    assert blobs == ml
    assert base.is_file()

    assert store.bx("rm", box_id).returncode == 0
    again = store.bx("image", "prune", "-a", "-f")
    assert again.returncode == 0, again.stderr
    assert store.image_rows() == []
    assert store.blobs() == {}
    assert list((store.images / "rootfs").glob("*.ext4")) == []


def test_image_prune_takes_the_image_a_moved_tag_left(store: Store,
                                                      registry: RegistryServer) -> None:
    """A tag pulled again after it moved leaves the old image untagged (dangling, as
    docker shows it: TAG <none>); `image prune` removes it, the tagged one stays."""
    old = push(registry, "moving", ti.busybox_image("default"), tag="t")
    pull_ok(store, old.reference)
    new = push(registry, "moving", ti.busybox_image("workdir"), tag="t")
    pull_ok(store, new.reference)
    rows = {(r["reference"], r["id"]) for r in store.image_rows()}
    assert (new.reference, new.config_digest) in rows
    assert any(ref.endswith("@" + old.manifest_digest) for ref, _ in rows), rows
    proc = store.bx("image", "prune", "-f")
    assert proc.returncode == 0, proc.stderr
    assert f"Deleted: {old.config_digest}" in proc.stdout.decode()
    assert [(r["reference"], r["id"]) for r in store.image_rows()] == [
        (new.reference, new.config_digest)]
    assert old.config_digest not in store.blobs()


# --- load -------------------------------------------------------------------------------------

ARCHIVES = ("docker_save_legacy", "docker_save_oci", "oci_layout_dir", "oci_layout_tar")


@pytest.mark.parametrize("kind", ARCHIVES)
def test_load(kind: str, store: Store, image_archives: ImageArchives) -> None:
    path: Path = getattr(image_archives, kind)
    proc = store.bx("load", "-i", str(path))
    assert proc.returncode == 0, proc.stderr
    loaded = [line.removeprefix("Loaded image: ") for line in proc.stdout.decode().splitlines()]
    assert all(line.startswith("Loaded image: ") for line in proc.stdout.decode().splitlines())
    rows = {str(r["reference"]).removeprefix("docker.io/library/"): r for r in store.image_rows()}
    ids = {ref: r["id"] for ref, r in rows.items()}
    expected = {"busybox:latest": image_archives.busybox_id,
                "multilayer:latest": image_archives.multilayer_id}
    if kind.startswith("oci_layout"):
        assert sorted(loaded) == ["busybox:latest", "multiarch:latest", "multilayer:latest"]
        amd64 = ti.multiarch_index().for_platform("linux", "amd64")
        assert ids.pop("multiarch:latest") == amd64.config_blob.digest
        assert rows["busybox:latest"]["digest"] == image_archives.busybox_digest
        # the index's digest (docker's repo digest) or its amd64 manifest's
        assert rows["multiarch:latest"]["digest"] in (image_archives.multiarch_digest, amd64.digest)
    else:
        assert sorted(loaded) == ["busybox:latest", "multilayer:latest"]
    assert ids == expected
    store.assert_blobs_verified()
    # -q hides the progress only: the names stay, for `$(load -q -i F | cut -d' ' -f3)`
    quiet = store.bx("load", "-q", "-i", str(path))
    assert (quiet.returncode, quiet.stdout) == (0, proc.stdout), quiet.stderr


def test_loaded_image_unpacks(store: Store, image_archives: ImageArchives) -> None:
    assert store.bx("load", "-i", str(image_archives.docker_save_legacy)).returncode == 0
    create = store.bx("create", "multilayer:latest")
    assert create.returncode == 0, create.stderr
    base = store.base(image_archives.multilayer_id)
    assert cat(base, "/data/keep.txt") == b"keep\n"
    assert cat(base, "/replaced.txt") == b"v2\n"


def test_a_saved_image_loads_elsewhere_and_boots(store: Store, busybox_image: PushedImage,
                                                  tmp_path: Path) -> None:
    """save of a pulled image (a pipe, then a file), load in another home, then a box of
    it: the same manifest digest (the layout's), the same id, its command runs."""
    pull_ok(store, busybox_image.reference)
    piped = store.bx("save", busybox_image.reference)
    assert piped.returncode == 0, piped.stderr
    saved = tmp_path / "busybox.tar"
    assert store.bx("save", "-o", str(saved), busybox_image.reference).returncode == 0
    assert saved.read_bytes() == piped.stdout
    (tmp_path / "elsewhere").mkdir()
    other = Store(tmp_path / "elsewhere")
    try:
        loaded = other.bx("load", "-i", str(saved))
        assert loaded.stdout.decode() == f"Loaded image: {busybox_image.reference}\n"
        assert other.tags()[busybox_image.reference] == busybox_image.manifest_digest
        ran = other.bx("run", "--rm", busybox_image.reference, "echo", "from the saved image")
        assert ran.stdout == b"from the saved image\n", ran.stderr
    finally:
        ids = other.box_ids() if (other.home / "boxes").is_dir() else []
        if ids:
            other.bx("rm", "-f", *ids, timeout=120)


def test_an_image_saved_by_id_loads_as_none_and_boots_by_id(store: Store, busybox_image: PushedImage,
                                                           tmp_path: Path) -> None:
    """`save IMAGE_ID` writes no name (docker's): load elsewhere keeps the image as
    `<none>` by its id (`Loaded image ID:`), and a box of it starts by that id."""
    pull_ok(store, busybox_image.reference)
    image_id = busybox_image.config_digest
    saved = tmp_path / "by-id.tar"
    assert store.bx("save", "-o", str(saved), image_id[7:19]).returncode == 0
    (tmp_path / "elsewhere").mkdir()
    other = Store(tmp_path / "elsewhere")
    try:
        loaded = other.bx("load", "-i", str(saved))
        assert loaded.stdout.decode() == f"Loaded image ID: {image_id}\n", loaded.stderr
        assert other.bx("images", "-q").stdout.decode() == image_id[7:19] + "\n"
        ran = other.bx("run", "--rm", image_id[7:19], "echo", "from an unnamed image")
        assert ran.stdout == b"from an unnamed image\n", ran.stderr
    finally:
        ids = other.box_ids() if (other.home / "boxes").is_dir() else []
        if ids:
            other.bx("rm", "-f", *ids, timeout=120)


def _damage_layer(src: Path, dest: Path) -> None:
    """Copy a tar, flipping one byte in the middle of its biggest member (a layer)."""
    with tarfile.open(src) as tin:
        members = tin.getmembers()
        biggest = max((m for m in members if m.isfile()), key=lambda m: m.size)
        offset = biggest.offset_data + biggest.size // 2
    data = bytearray(src.read_bytes())
    data[offset] ^= 0xFF
    dest.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["docker_save_legacy", "docker_save_oci", "oci_layout_tar"])
@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_load_damaged_archive(kind: str, damage: str, store: Store, tmp_path: Path,
                              image_archives: ImageArchives) -> None:
    src: Path = getattr(image_archives, kind)
    bad = tmp_path / "bad.tar"
    if damage == "truncated":
        bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    else:
        _damage_layer(src, bad)
    proc = store.bx("load", "-i", str(bad))
    assert_error(proc)
    assert store.tags() == {}
    assert store.image_rows() == []
    assert store.blobs() == {}  # what it wrote before the damage went again
    assert store.partials() == []


@pytest.mark.parametrize("layout", ["legacy", "oci"])
def test_load_of_an_image_that_cannot_be_unpacked_names_nothing(layout: str, store: Store,
                                                                tmp_path: Path) -> None:
    """A layer that escapes (`../`), in an archive with a good image: the load fails as
    it unpacks (docker's extracting), before any name, and leaves no file system."""
    from tests.support.ociarchive import write_docker_save

    hostile = ti.hostile_image("dotdot")
    archive = write_docker_save(tmp_path / "mixed.tar",
                                {"busybox:latest": ti.busybox_image(), "evil:latest": hostile},
                                layout=layout)  # type: ignore[arg-type]
    proc = store.bx("load", "-i", str(archive))
    said = assert_error(proc)
    assert "evil:latest cannot be unpacked: layer sha256:" in said, said
    assert store.tags() == {}
    assert store.image_rows() == []
    assert not store.base(hostile.config_blob.digest).exists()
    store.assert_blobs_verified()
    assert store.partials() == []


def test_load_damaged_layout_dir(store: Store, tmp_path: Path, image_archives: ImageArchives) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(image_archives.oci_layout_dir, layout)
    blobs = sorted((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    biggest = blobs[-1]
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    proc = store.bx("load", "-i", str(layout))
    assert_error(proc)
    assert store.tags() == {}
    assert "sha256:" + biggest.name not in store.blobs()
    store.assert_blobs_verified()


def test_inspect_of_a_missing_image(store: Store) -> None:
    assert_error(store.bx("image", "inspect", "127.0.0.1:1/nothing:here"))
    proc = store.bx("inspect", "nothing-by-this-name")
    assert proc.returncode != 0
    assert b"nothing-by-this-name" in proc.stderr
    assert json.loads(proc.stdout or b"[]") == []


# --- push -------------------------------------------------------------------------------------

def test_push_sends_what_the_registry_lacks_and_the_image_keeps_its_digest(
        store: Store, busybox_image: PushedImage, registry: RegistryServer,
        tmp_path: Path) -> None:
    """A pulled image, tagged for another repository, pushed (twice: the second sends
    no blob), pulled in another home by that name: the same manifest digest; then a box
    of it is committed, pushed and run elsewhere."""
    pull_ok(store, busybox_image.reference)
    target = f"{registry.host}/pushed/busybox:1"
    assert store.bx("tag", busybox_image.reference, target).returncode == 0
    first = store.bx("push", target)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.decode().splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/pushed/busybox]"
    assert lines[-1] == f"1: digest: {busybox_image.manifest_digest} size: " + lines[-1].split()[-1]
    # (a line a layer, docker's: not one for the config blob)
    assert lines[1:-1] == [f"{d[7:19]}: Pushed" for d in busybox_image.layer_digests]
    again = store.bx("push", target).stdout.decode().splitlines()
    assert all(line.endswith(": Layer already exists") for line in again[1:-1])

    made = store.bx("create", "--name", "topush", busybox_image.reference, "sh", "-c",
                    "echo from-the-commit > /committed; cat /committed")
    assert made.returncode == 0, made.stderr
    assert store.bx("start", "-a", "topush").stdout == b"from-the-commit\n"
    committed = f"{registry.host}/pushed/committed:1"
    assert store.bx("commit", "-c", 'CMD ["cat", "/committed"]', "topush",
                    committed).returncode == 0
    unpushed = store.bx("image", "inspect", "-f", "{{json .RepoDigests}}", committed).stdout
    assert unpushed == b"[]\n"  # (made here: nowhere by digest yet, as docker's)
    assert store.bx("push", "-q", committed).stdout == b""
    pushed = json.loads(store.bx("image", "inspect", "-f", "{{json .RepoDigests}}",
                                 committed).stdout)
    assert [d.split("@")[0] for d in pushed] == [f"{registry.host}/pushed/committed"]

    (tmp_path / "elsewhere").mkdir()
    other = Store(tmp_path / "elsewhere")
    try:
        pull_ok(other, target)
        assert other.tags()[target] == busybox_image.manifest_digest
        pull_ok(other, committed)
        ran = other.bx("run", "--rm", committed)
        assert ran.stdout == b"from-the-commit\n", ran.stderr
    finally:
        ids = other.box_ids() if (other.home / "boxes").is_dir() else []
        if ids:
            other.bx("rm", "-f", *ids, timeout=120)


def test_push_without_rights_says_so_and_a_login_gives_them(
        store: Store, busybox_image: PushedImage, auth_registry: RegistryServer) -> None:
    pull_ok(store, busybox_image.reference)
    target = f"{auth_registry.host}/mine/busybox:1"
    assert store.bx("tag", busybox_image.reference, target).returncode == 0
    denied = store.bx("push", target)
    line = assert_error(denied)
    assert "login" in denied.stderr.decode(), line
    login = store.bx("login", "-u", TEST_USER, "--password-stdin", auth_registry.host,
                     input=TEST_PASSWORD.encode() + b"\n")
    assert login.returncode == 0, login.stderr
    pushed = store.bx("push", target)
    assert pushed.returncode == 0, pushed.stderr
    missing = store.bx("push", f"{auth_registry.host}/mine/nothing:1")
    assert assert_error(missing).startswith("boxlite: no such image")


def test_an_unchanged_box_of_a_minimal_image_has_no_diff_and_commits_no_layer(
        store: Store, registry: RegistryServer) -> None:
    """An image without /dev, /proc, /sys or /etc (FROM scratch), with a VOLUME no layer
    makes: the directories boxlite makes for them are no change of the box (diff listed
    them, and commit made a layer of empty directories)."""
    minimal = Layer.of([directory("bin"), file("bin/busybox", ti.static_busybox(), 0o755)])
    config = {"Env": list(ti.BUSYBOX_ENV), "Cmd": ["/bin/busybox", "true"],
              "Volumes": {"/var/lib/db": {}}}
    pushed = push(registry, "scratchlike", Image((minimal,), config), tag="1")
    pull_ok(store, pushed.reference)
    made = store.bx("create", "--name", "untouched", pushed.reference)
    assert made.returncode == 0, made.stderr
    listed = store.bx("diff", "untouched")
    assert (listed.returncode, listed.stdout) == (0, b""), listed.stderr
    committed = store.bx("commit", "untouched", "localhost/still:1")
    assert committed.returncode == 0, committed.stderr
    layers = [json.loads(store.bx("image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]
              for ref in (pushed.reference, "localhost/still:1")]
    assert layers[0] == layers[1]


def test_ps_shows_the_image_id_of_a_box_whose_tag_moved(store: Store,
                                                        registry: RegistryServer) -> None:
    """docker's IMAGE: the name a box was made from while it still means the box's
    image; its id once a newer pull moved the name (ps kept showing the name)."""
    old = push(registry, "moved", ti.busybox_image("default"), tag="t")
    pull_ok(store, old.reference)
    assert store.bx("create", "--name", "onold", old.reference).returncode == 0
    shown = store.bx("ps", "-a", "--format", "{{.Image}}")
    assert shown.stdout.decode() == old.reference + "\n", shown.stderr
    new = push(registry, "moved", ti.busybox_image("workdir"), tag="t")
    pull_ok(store, new.reference)
    assert store.bx("ps", "-a", "--format", "{{.Image}}").stdout.decode() == (
        old.config_digest.removeprefix("sha256:")[:12] + "\n")
    table = store.bx("ps", "-a").stdout.decode().splitlines()
    assert table[1].split()[1] == old.config_digest.removeprefix("sha256:")[:12]
    # ancestor= is the image the name means now (docker's)
    assert store.bx("ps", "-aq", "-f", f"ancestor={old.reference}").stdout == b""
    assert store.bx("ps", "-a", "-f", f"ancestor={old.config_digest[7:19]}", "--format",
                    "{{.Names}}").stdout == b"onold\n"
