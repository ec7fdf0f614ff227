"""The image store's blob ingest, garbage collection and rmi semantics."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import pytest

from boxlite_cli.errors import Conflict, ImageError, NotFound
from boxlite_cli.oci.reference import parse_reference
from boxlite_cli.oci.store import ImageStore
from boxlite_cli.runtime.images import Images
from boxlite_cli.state.paths import Paths


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_ingest_publishes_only_verified_blobs_and_resumes(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    data = os.urandom(3000)
    with store.ingest(digest(data), len(data)) as ing:
        ing.write(data[:1000])
        assert not store.has_blob(digest(data))  # nothing visible while partial
    with store.ingest(digest(data), len(data)) as ing:
        assert ing.offset == 1000  # a rerun resumes
        ing.write(data[1000:])
        ing.commit()
    assert store.blob_path(digest(data)).read_bytes() == data
    with store.ingest(digest(data), len(data)) as ing:
        assert ing.done


def test_ingest_rejects_mismatch_truncation_and_oversize(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    data = b"x" * 100
    with store.ingest(digest(data), 100) as ing, pytest.raises(ImageError, match="digest mismatch"):
        ing.write(b"y" * 100)
        ing.commit()
    with store.ingest(digest(data), 100) as ing, pytest.raises(ImageError, match="truncated"):
        assert ing.offset == 0  # the bad bytes were discarded
        ing.write(data[:50])
        ing.commit()
    with store.ingest(digest(data), 100) as ing, pytest.raises(ImageError, match="larger than"):
        ing.write(data + b"z")
    assert not store.has_blob(digest(data))
    assert not list((tmp_path / "tmp").glob("*.partial"))


def add_image(store: ImageStore, ref: str, layer: bytes, cmd: str = "sh") -> tuple[str, str]:
    """Put a one-layer image into the store and tag it; returns (manifest, config) digests."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
                         "config": {"Cmd": [cmd]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer),
                    "size": len(layer)}]}).encode()
    for blob in (config, layer, manifest):
        with store.ingest(digest(blob), len(blob)) as ing:
            if not ing.done:
                ing.write(blob)
                ing.commit()
    store.tag(parse_reference(ref), digest(manifest))
    return digest(manifest), digest(config)


def images_ops(tmp_path: Path, users: dict[str, list[str]] | None = None) -> Images:
    paths = Paths(data=tmp_path, config=tmp_path / "config", cache=tmp_path / "cache")
    paths.ensure()
    return Images(paths, ImageStore(paths.images), lambda: users or {})


def test_rmi_untags_then_deletes_only_unshared_blobs(tmp_path: Path) -> None:
    ops = images_ops(tmp_path)
    shared = b"shared layer"
    _, config_a = add_image(ops.store, "reg.lan/a:1", shared)
    add_image(ops.store, "reg.lan/a:2", shared)  # same config -> same image id, second tag
    _, config_b = add_image(ops.store, "reg.lan/b:1", b"other layer", cmd="b")
    done = ops.remove(["reg.lan/a:1"], force=False)
    assert done.untagged == ["reg.lan/a:1"] and done.deleted == []  # a:2 still names it
    assert ops.store.has_blob(digest(shared))
    done = ops.remove(["reg.lan/a:2"], force=False)
    assert done.deleted == [config_a]
    assert not ops.store.has_blob(digest(shared))
    assert ops.store.has_blob(digest(b"other layer"))
    with pytest.raises(NotFound, match="no such image"):
        ops.remove(["reg.lan/a:2"], force=False)
    assert [i.id for i in ops.store.all()] == [config_b]


def test_rmi_refuses_an_image_a_box_uses_unless_forced(tmp_path: Path) -> None:
    ops = images_ops(tmp_path)
    _, config = add_image(ops.store, "reg.lan/a:1", b"layer")
    base = ops.store.rootfs_dir / (config[7:] + ".ext4")
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_bytes(b"ext4")
    ops.boxes_using = lambda: {config: ["web"]}
    with pytest.raises(Conflict, match="box web uses image"):
        ops.remove(["reg.lan/a:1"], force=False)
    assert "reg.lan/a:1" in ops.store.tags()
    done = ops.remove([config[7:19]], force=True)
    assert done.deleted == []  # (untagged only: the box's image stays for it)
    assert base.exists()  # the box's disk still needs its base
    ops.boxes_using = dict
    ops.prune(all_unused=False)
    assert not base.exists()


def test_rmi_by_id_of_an_image_in_two_repositories_needs_force(tmp_path: Path) -> None:
    ops = images_ops(tmp_path)
    manifest, config = add_image(ops.store, "reg.lan/a:1", b"layer")
    ops.store.tag(parse_reference("reg.lan/c:1"), manifest)
    with pytest.raises(Conflict, match="several repositories"):
        ops.remove([config[7:19]], force=False)
    done = ops.remove([config[7:19]], force=True)
    assert sorted(done.untagged) == ["reg.lan/a:1", "reg.lan/c:1"]


def test_prune_all_keeps_images_in_use_and_gc_spares_running_pulls(tmp_path: Path) -> None:
    ops = images_ops(tmp_path)
    _, used = add_image(ops.store, "reg.lan/used:1", b"used")
    _, unused = add_image(ops.store, "reg.lan/unused:1", b"unused", cmd="other")
    ops.boxes_using = lambda: {used: ["box1"]}
    done = ops.prune(all_unused=True)
    assert done.deleted == [unused]
    assert [i.id for i in ops.store.all()] == [used]
    with ops.store.writing():
        time.sleep(0.01)
        orphan = b"a blob of a pull that has not tagged yet"
        ops.store.add_blob_stream(io.BytesIO(orphan), digest(orphan))
        ops.prune(all_unused=False)
        assert ops.store.has_blob(digest(orphan))
    ops.prune(all_unused=False)
    assert not ops.store.has_blob(digest(orphan))


def test_garbage_collection_takes_a_base_and_its_empty_overlay(tmp_path: Path) -> None:
    from boxlite_cli.disks.qcow2 import empty_overlay_of

    store = ImageStore(tmp_path / "images")
    store.rootfs_dir.mkdir(parents=True)
    gone = store.rootfs_dir / ("ab" * 32 + ".ext4")
    kept = store.rootfs_dir / ("cd" * 32 + ".ext4")
    for base in (gone, kept):
        base.write_bytes(b"ext4")
        empty_overlay_of(base).write_bytes(b"qcow2")
    store.collect_garbage(keep_ids={"sha256:" + "cd" * 32})
    assert sorted(p.name for p in store.rootfs_dir.iterdir()) == [
        kept.name, empty_overlay_of(kept).name]


def test_garbage_collection_takes_the_lock_a_failed_unpack_left(tmp_path: Path) -> None:
    """An unpack that failed leaves its lock and no base: it goes with the image; the
    lock of an unpack running now (held), or of an image kept, stays."""
    from boxlite_cli.state.flock import FileLock

    store = ImageStore(tmp_path / "images")
    store.rootfs_dir.mkdir(parents=True)
    failed, running, kept = (store.rootfs_dir / (c * 64 + ".ext4.lock") for c in "abc")
    for lock in (failed, running, kept):
        lock.touch()
    with FileLock(running, timeout=0):
        store.collect_garbage(keep_ids={"sha256:" + "c" * 64})
    assert sorted(p.name for p in store.rootfs_dir.iterdir()) == [running.name, kept.name]


def test_prune_takes_the_partial_downloads_no_pull_writes_now(tmp_path: Path) -> None:
    """A failed pull's partial blob is kept for a rerun to resume, through rmi; prune
    takes it however recent (a registry that stalled left gigabytes), but not the one
    a pull writes now."""
    ops = images_ops(tmp_path)
    store = ops.store
    stalled, writing = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    for blob in (stalled, writing):
        with store.ingest(blob, 1 << 20) as ingest:
            ingest.write(b"x" * 1000)  # (then the registry stalled)
    assert [p.name for p in store.partial_downloads()] == ["1" * 64 + ".partial",
                                                           "2" * 64 + ".partial"]
    store.collect_garbage(set())  # (as rmi does)
    assert len(store.partial_downloads()) == 2
    with store.ingest(writing, 1 << 20):
        assert ops.prune(all_unused=True).freed >= 1000
        assert [p.name for p in store.partial_downloads()] == ["2" * 64 + ".partial"]
    assert store.partial_size(writing) == 1000


def test_gc_spares_a_blob_a_running_pull_found_in_the_store(tmp_path: Path) -> None:
    """A pull of B that finds the layer it shares with A already stored, while A is
    removed: the layer stays (the pull touched it), and B is whole once tagged."""
    ops = images_ops(tmp_path)
    add_image(ops.store, "reg.lan/a:1", b"shared layer")
    layer = digest(b"shared layer")
    path = ops.store.blob_path(layer)
    os.utime(path, (time.time() - 3600, time.time() - 3600))  # stored an hour ago
    with ops.store.writing():
        time.sleep(0.01)
        with ops.store.ingest(layer, len(b"shared layer")) as ingest:
            assert ingest.done  # found: nothing to download
        ops.remove(["reg.lan/a:1"], force=False)
        assert ops.store.has_blob(layer)
    ops.prune(all_unused=False)  # no pull runs any more, nothing tags it: now it goes
    assert not ops.store.has_blob(layer)


def test_gc_never_deletes_a_blob_an_ingest_holds(tmp_path: Path) -> None:
    ops = images_ops(tmp_path)
    orphan = b"an unreferenced blob"
    ops.store.add_blob_stream(io.BytesIO(orphan), digest(orphan))
    os.utime(ops.store.blob_path(digest(orphan)), (1, 1))
    with ops.store.ingest(digest(orphan), len(orphan)):
        ops.prune(all_unused=False)
        assert ops.store.has_blob(digest(orphan))
    ops.prune(all_unused=False)
    assert not ops.store.has_blob(digest(orphan))


def test_an_image_missing_a_layer_says_so_and_how_to_fix_it(tmp_path: Path) -> None:
    ops = images_ops(tmp_path)
    add_image(ops.store, "reg.lan/a:1", b"layer")
    ops.store.blob_path(digest(b"layer")).unlink()
    image = ops.store.lookup("reg.lan/a:1")
    with pytest.raises(ImageError) as e:
        ops.store.ensure_rootfs(image)
    assert e.value.message == (f"image reg.lan/a:1 is incomplete: its layer {digest(b'layer')} "
                               "is missing from the local store")
    assert e.value.hint == "pull it again: boxlite pull reg.lan/a:1"
    assert not ops.store.rootfs_path(image).exists()
    assert list(ops.store.tmp.iterdir()) == []  # the unpack's work dir is gone


def test_a_full_disk_while_unpacking_says_where_and_what(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`load` on a nearly full disk said a bare "No space left on device" (tester AR)."""
    import errno

    import boxlite_cli.disks.ext4 as ext4
    from boxlite_cli.errors import DiskError

    def full(*_args: object, **_kwargs: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ext4, "make_ext4", full)
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"))
    ops = images_ops(tmp_path)
    add_image(ops.store, "reg.lan/full:1", buf.getvalue())
    image = ops.store.lookup("reg.lan/full:1")
    with pytest.raises(DiskError) as e:
        ops.store.ensure_rootfs(image)
    assert e.value.message.startswith(f"No space left on device under {ops.store.root} while "
                                      "unpacking reg.lan/full:1's root file system")
    assert "system df" in (e.value.hint or "")
    assert not ops.store.rootfs_path(image).exists()
    assert list(ops.store.tmp.iterdir()) == []


def test_an_images_size_is_its_files_once_unpacked(tmp_path: Path) -> None:
    """docker's SIZE: the bytes of the layers' files (a 1.3 GB layer of zeros showed
    as its 4.8 MB download); the compressed size until the image is unpacked. The
    record goes with the image's base."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, size in (("big", 100_000), ("small", 234)):
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"\0" * size))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "big"
        tar.addfile(link)
    layer = buf.getvalue()
    ops = images_ops(tmp_path)
    add_image(ops.store, "reg.lan/sized:1", layer)
    image = ops.store.lookup("reg.lan/sized:1")
    assert ops.store.layer_sizes(image) == [len(layer)]  # (not unpacked yet)
    base = ops.store.ensure_rootfs(image)
    assert ops.store.layer_sizes(image) == [100_234]
    assert ops.store.content_size(image) == 100_234
    ops.remove(["reg.lan/sized:1"], force=False)
    assert not base.exists() and list(ops.store.rootfs_dir.glob("*.json")) == []
    # a commit's sizes, kept before any unpack: they go with the image too
    ops.store.record_layer_sizes("sha256:" + "9" * 64, [5])
    ops.prune(all_unused=True)
    assert list(ops.store.rootfs_dir.glob("*.json")) == []
