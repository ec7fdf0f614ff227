"""`boxlite load`: docker save tarballs and OCI layouts (directory, tar, compressed tar) into the store.

The archives are built here byte by byte. Hostile ones must fail with an ImageError and
leave no tag behind; nothing may be written outside the store.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zstandard
from pytest_console_scripts import ScriptRunner

from boxlite_cli.errors import ImageError
from boxlite_cli.oci.archive import MAX_JSON, LoadResult, load_archive, load_stream
from boxlite_cli.oci.reference import parse_reference
from boxlite_cli.oci.store import ImageStore
from tests.cli.helpers import assert_one_line_error, bx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = {"none": "application/vnd.oci.image.layer.v1.tar",
              "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
              "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Img:
    """An image: its blobs, by digest."""

    layers: list[Mapping[str, bytes]]
    compression: str = "none"
    arch: str = "amd64"
    tars: list[bytes] = field(init=False)
    blobs: list[bytes] = field(init=False)
    config: bytes = field(init=False)
    manifest: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.tars = [layer_tar(files) for files in self.layers]
        self.blobs = [compress(t, self.compression) for t in self.tars]
        self.config = json.dumps({
            "architecture": self.arch, "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in self.tars]},
        }).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(self.config), "size": len(self.config)},
            "layers": [{"mediaType": LAYER_TYPE[self.compression], "digest": sha(b), "size": len(b)}
                       for b in self.blobs],
        }).encode()

    @property
    def id(self) -> str:
        return sha(self.config)

    @property
    def digest(self) -> str:
        return sha(self.manifest)

    def descriptor(self, annotations: Mapping[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": self.digest,
                                "size": len(self.manifest), **extra}
        if annotations:
            desc["annotations"] = dict(annotations)
        return desc

    def all_blobs(self) -> list[bytes]:
        return [self.manifest, self.config, *self.blobs]


def blob_path(data: bytes) -> str:
    return "blobs/sha256/" + sha(data)[7:]


def oci_layout(entries: list[tuple[Mapping[str, str] | None, Img]],
               extra_blobs: list[bytes] = (), index_entries: list[dict[str, Any]] | None = None,
               ) -> dict[str, bytes]:
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    for _, img in entries:
        for b in img.all_blobs():
            files[blob_path(b)] = b
    for b in extra_blobs:
        files[blob_path(b)] = b
    manifests = index_entries or [img.descriptor(ann) for ann, img in entries]
    files["index.json"] = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                      "manifests": manifests}).encode()
    return files


def docker_save(images: Mapping[str, Img | tuple[list[str] | None, Img]],
                legacy: bool = True) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    manifest = []
    for key, value in images.items():
        tags, img = value if isinstance(value, tuple) else ([key], value)
        layer_names = []
        for i, b in enumerate(img.blobs):
            name = f"{hashlib.sha256(f'{key}{i}'.encode()).hexdigest()}/layer.tar" if legacy else blob_path(b)
            files[name] = b
            if legacy:
                files[name.replace("layer.tar", "json")] = b'{"id": "x"}'
                files[name.replace("layer.tar", "VERSION")] = b"1.0"
            layer_names.append(name)
        config_name = f"{img.id[7:]}.json" if legacy else blob_path(img.config)
        files[config_name] = img.config
        manifest.append({"Config": config_name, "RepoTags": tags, "Layers": layer_names})
    files["manifest.json"] = json.dumps(manifest).encode()
    files["repositories"] = b"{}"
    return files


Extra = Callable[[tarfile.TarFile], None]


def write_tar(path: Path, files: Mapping[str, bytes], extra: Extra | None = None,
              compression: str = "none") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra:
            extra(tar)
    path.write_bytes(compress(buf.getvalue(), compression))
    return path


def write_dir(path: Path, files: Mapping[str, bytes]) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def symlink_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Extra:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)
    return add


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


BUSYBOX = Img([{"bin/busybox": b"\x7fELF busybox"}, {"etc/motd": b"hi\n"}])
OTHER = Img([{"other": b"other"}], compression="gzip")


def names(store: ImageStore) -> set[str]:
    return {parse_reference(k).short for k in store.tags() if "@" not in k}


# docker save ----------------------------------------------------------------------------

@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "docker25"])
def test_docker_save_tarball(store: ImageStore, tmp_path: Path, legacy: bool) -> None:
    archive = write_tar(tmp_path / "save.tar",
                        docker_save({"busybox:latest": BUSYBOX, "example.com/team/other:v1": OTHER}, legacy))
    result = load_archive(store, archive)
    assert [r.short for r in result.loaded] == ["busybox:latest", "example.com/team/other:v1"]
    image = store.lookup("busybox:latest")
    assert image.id == BUSYBOX.id
    assert image.config["rootfs"]["diff_ids"] == [sha(t) for t in BUSYBOX.tars]
    assert [(la["mediaType"], la["digest"]) for la in image.manifest["layers"]] == \
        [(LAYER_TYPE["none"], sha(t)) for t in BUSYBOX.tars]
    other = store.lookup("example.com/team/other:v1")
    assert [la["mediaType"] for la in other.manifest["layers"]] == [LAYER_TYPE["gzip"]]
    for digest in [*image.layers, *other.layers, image.id, other.id, image.manifest_digest]:
        assert store.has_blob(digest)
    # The same archive again: the same manifest, nothing new.
    again = load_archive(store, archive)
    assert store.lookup("busybox:latest").manifest_digest == image.manifest_digest
    assert len(again.loaded) == 2


def test_docker_save_legacy_and_docker25_give_the_same_image(store: ImageStore, tmp_path: Path) -> None:
    load_archive(store, write_tar(tmp_path / "a.tar", docker_save({"a:1": BUSYBOX}, legacy=True)))
    load_archive(store, write_tar(tmp_path / "b.tar", docker_save({"b:1": BUSYBOX}, legacy=False)))
    assert store.lookup("a:1").manifest_digest == store.lookup("b:1").manifest_digest


def test_docker_save_repeated_layer_as_symlink(store: ImageStore, tmp_path: Path) -> None:
    # docker writes a layer that appears twice once, and a symlink to it for the second.
    empty = Img([{}, {"f": b"f"}, {}])
    files = docker_save({"rep:1": empty})
    entry = json.loads(files["manifest.json"])[0]
    first, third = entry["Layers"][0], entry["Layers"][2]
    del files[third]
    archive = write_tar(tmp_path / "save.tar", files,
                        symlink_member(third, f"../{first.split('/')[0]}/layer.tar"))
    load_archive(store, archive)
    assert store.lookup("rep:1").layers == [sha(t) for t in empty.tars]


def test_docker_save_diff_id_mismatch(store: ImageStore, tmp_path: Path) -> None:
    files = docker_save({"bad:1": BUSYBOX})
    entry = json.loads(files["manifest.json"])[0]
    entry["Layers"].reverse()
    files["manifest.json"] = json.dumps([entry]).encode()
    with pytest.raises(ImageError, match="diff_id"):
        load_archive(store, write_tar(tmp_path / "save.tar", files))
    assert names(store) == set()


def unnamed_ids(store: ImageStore) -> list[str]:
    """The ids of the images the store keeps with no name (listed as `<none>`)."""
    return sorted(i.id for i in store.all() if i.reference.unnamed)


def test_docker_save_untagged_images_are_kept_by_their_id(store: ImageStore, tmp_path: Path) -> None:
    """docker's `Loaded image ID:`: an image `save IMAGE_ID` wrote (RepoTags null or
    empty) is kept with no name, by its id, not skipped."""
    archive = write_tar(tmp_path / "save.tar", docker_save({"x": (None, BUSYBOX), "other:1": OTHER}))
    result = load_archive(store, archive)
    assert [r.short for r in result.loaded] == ["other:1"]
    assert result.unnamed == [BUSYBOX.id]
    assert unnamed_ids(store) == [BUSYBOX.id] and names(store) == {"other:1"}
    fresh = ImageStore(tmp_path / "fresh")
    only_unnamed = write_tar(tmp_path / "u.tar", docker_save({"x": ([], BUSYBOX)}))
    assert load_archive(fresh, only_unnamed) == LoadResult([], [BUSYBOX.id])
    [kept] = fresh.all()
    assert kept.reference.unnamed and kept.reference.short == kept.manifest_digest
    assert fresh.rootfs_path(kept).is_file()  # (unpacked, as a named image is)


def test_an_unnamed_image_loses_its_none_once_named(store: ImageStore, tmp_path: Path) -> None:
    only_unnamed = write_tar(tmp_path / "u.tar", docker_save({"x": ([], BUSYBOX)}))
    load_archive(store, only_unnamed)
    [kept] = store.all()
    store.tag(parse_reference("named:1"), kept.manifest_digest)
    assert unnamed_ids(store) == [] and names(store) == {"named:1"}
    load_archive(store, only_unnamed)  # (again, with a name here: nothing is added)
    assert unnamed_ids(store) == [] and names(store) == {"named:1"}
    assert [i.id for i in store.all()] == [BUSYBOX.id]


def test_docker_save_cannot_name_an_image_by_digest(store: ImageStore, tmp_path: Path) -> None:
    """An archive naming its image `repo@sha256:D` would pose as whatever a
    `run repo@sha256:D` pins (another image): refused, nothing named."""
    for name in (f"victim@{OTHER.digest}", f"victim:v1@{BUSYBOX.digest}"):
        archive = write_tar(tmp_path / "poison.tar", docker_save({"x": ([name], BUSYBOX)}))
        with pytest.raises(ImageError, match="has a digest that is not its image's"):
            load_archive(store, archive)
        assert store.tags() == {}


# OCI layouts ----------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["dir", "tar", "tar.gz", "tar.zst"])
def test_oci_layout(store: ImageStore, tmp_path: Path, form: str) -> None:
    zimg = Img([{"z": b"zstd layer"}], compression="zstd")
    files = oci_layout([({REF_NAME: "localhost/busybox:1"}, BUSYBOX), ({REF_NAME: "z:latest"}, zimg)])
    if form == "dir":
        path = write_dir(tmp_path / "layout", files)
    else:
        path = write_tar(tmp_path / f"layout.{form}", files, compression={
            "tar": "none", "tar.gz": "gzip", "tar.zst": "zstd"}[form])
    result = load_archive(store, path)
    assert [r.short for r in result.loaded] == ["localhost/busybox:1", "z:latest"]
    assert store.lookup("localhost/busybox:1").manifest_digest == BUSYBOX.digest  # kept as it was
    assert store.lookup("z:latest").manifest_digest == zimg.digest
    assert store.lookup(f"localhost/busybox@{BUSYBOX.digest}").id == BUSYBOX.id


def test_oci_layout_names_by_digest_only_its_own(store: ImageStore, tmp_path: Path) -> None:
    own = oci_layout([({REF_NAME: f"localhost/own@{BUSYBOX.digest}"}, BUSYBOX)])
    load_archive(store, write_dir(tmp_path / "own", own))
    assert store.lookup(f"localhost/own@{BUSYBOX.digest}").id == BUSYBOX.id
    foreign = oci_layout([({REF_NAME: f"localhost/victim@{OTHER.digest}"}, BUSYBOX)])
    with pytest.raises(ImageError, match="has a digest that is not its image's"):
        load_archive(store, write_dir(tmp_path / "foreign", foreign))
    assert not any("victim" in k for k in store.tags())


def test_oci_layout_nested_index_resolves_to_linux_amd64(store: ImageStore, tmp_path: Path) -> None:
    arm = Img([{"arm": b"arm"}], arch="arm64")
    inner = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        arm.descriptor(platform={"os": "linux", "architecture": "arm64"}),
        BUSYBOX.descriptor(platform={"os": "linux", "architecture": "amd64"}),
    ]}).encode()
    outer = {"mediaType": OCI_INDEX, "digest": sha(inner), "size": len(inner),
             "annotations": {REF_NAME: "multi:1"}}
    files = oci_layout([(None, arm), (None, BUSYBOX)], [inner], index_entries=[outer])
    load_archive(store, write_tar(tmp_path / "l.tar", files))
    assert store.lookup("multi:1").manifest_digest == BUSYBOX.digest
    assert store.lookup(f"multi@{sha(inner)}").manifest_digest == BUSYBOX.digest


def test_oci_layout_arm64_only_is_refused(store: ImageStore, tmp_path: Path) -> None:
    arm = Img([{"arm": b"arm"}], arch="arm64")
    files = oci_layout([({REF_NAME: "busybox:1"}, BUSYBOX), ({REF_NAME: "arm:1"}, arm)])
    with pytest.raises(ImageError) as refused:  # (of several images, the one named)
        load_archive(store, write_dir(tmp_path / "l", files))
    assert refused.value.message == ("the image is for linux/arm64; boxlite runs linux/amd64 "
                                     "images (image arm:1)")
    assert names(store) == set()


def test_ref_name_that_is_only_a_tag(store: ImageStore, tmp_path: Path) -> None:
    files = oci_layout([({REF_NAME: "latest", CONTAINERD_NAME: "docker.io/library/busybox:latest"}, BUSYBOX)])
    loaded = load_archive(store, write_dir(tmp_path / "a", files)).loaded
    assert [r.short for r in loaded] == ["busybox:latest"]
    # skopeo's `oci:DIR:TAG` (the OCI spec's own form): kept by its id, said so (the
    # whole load was refused, where podman loads it)
    files = oci_layout([({REF_NAME: "v2"}, OTHER)])
    result = load_archive(store, write_dir(tmp_path / "b", files))
    assert result.loaded == [] and len(result.unnamed) == 1
    [note] = result.notes
    assert note.startswith(f"image 'v2' of {tmp_path / 'b'} is named by a tag only (no "
                           "repository): kept without a name; name it with: boxlite tag ")
    assert note.endswith(f"{result.unnamed[0][7:19]} REPOSITORY:v2")


def test_unnamed_layout_entries_are_kept_by_their_id(store: ImageStore, tmp_path: Path) -> None:
    files = oci_layout([(None, OTHER), ({REF_NAME: "named:1"}, BUSYBOX)])
    result = load_archive(store, write_dir(tmp_path / "l", files))
    assert [r.short for r in result.loaded] == ["named:1"]
    assert result.unnamed == [OTHER.id] and unnamed_ids(store) == [OTHER.id]
    [kept] = [i for i in store.all() if i.reference.unnamed]
    assert kept.manifest_digest == OTHER.digest  # (an OCI layout's manifest, as it is)


def test_load_oci_layout_of_the_store_uses_the_same_path(store: ImageStore, tmp_path: Path) -> None:
    files = oci_layout([({REF_NAME: "localhost/debian:bookworm"}, BUSYBOX)])
    refs = store.load_oci_layout(write_dir(tmp_path / "l", files))
    assert [r.short for r in refs] == ["localhost/debian:bookworm"]
    assert store.lookup("localhost/debian:bookworm").id == BUSYBOX.id


def test_load_from_a_stream(store: ImageStore, tmp_path: Path) -> None:
    data = write_tar(tmp_path / "s.tar", docker_save({"s:1": BUSYBOX}), compression="gzip").read_bytes()
    assert [r.short for r in load_stream(store, io.BytesIO(data)).loaded] == ["s:1"]


# hostile and broken input: an ImageError and no tag ---------------------------------------

def _hostile(tmp_path: Path, files: Mapping[str, bytes], extra: Extra | None = None) -> Path:
    return write_tar(tmp_path / "hostile.tar", files, extra)


GOOD = oci_layout([({REF_NAME: "good:1"}, BUSYBOX)])


@pytest.mark.parametrize("name", ["../escape", "/etc/escape", "blobs/../../x", "a\nb", "a\\b", "ok/\x01"])
def test_odd_member_names(store: ImageStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageError, match="member name"):
        load_archive(store, _hostile(tmp_path, {name: b"x", **GOOD}))
    assert names(store) == set()
    assert not (tmp_path.parent / "escape").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_link_as_a_blob(store: ImageStore, tmp_path: Path, kind: bytes) -> None:
    files = dict(GOOD)
    layer = blob_path(BUSYBOX.blobs[0])
    del files[layer]
    with pytest.raises(ImageError, match="link"):
        load_archive(store, _hostile(tmp_path, files, symlink_member(layer, "/etc/passwd", kind)))
    assert names(store) == set()


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../etc/passwd", "nowhere/layer.tar"])
def test_docker_layer_link_out_of_the_archive(store: ImageStore, tmp_path: Path, target: str) -> None:
    files = docker_save({"bad:1": BUSYBOX})
    layer = json.loads(files["manifest.json"])[0]["Layers"][0]
    del files[layer]
    with pytest.raises(ImageError, match=r"link|missing"):
        load_archive(store, _hostile(tmp_path, files, symlink_member(layer, target)))
    assert names(store) == set()


def test_symlinked_blob_in_a_layout_directory(store: ImageStore, tmp_path: Path) -> None:
    layout = write_dir(tmp_path / "l", GOOD)
    secret = tmp_path / "secret"
    secret.write_bytes(BUSYBOX.blobs[0])
    blob = layout / blob_path(BUSYBOX.blobs[0])
    blob.unlink()
    blob.symlink_to(secret)
    with pytest.raises(ImageError, match="symbolic link"):
        load_archive(store, layout)
    assert names(store) == set()


def test_oversized_json(store: ImageStore, tmp_path: Path) -> None:
    files = {**GOOD, "index.json": b" " * (MAX_JSON + 1) + b"{}"}
    with pytest.raises(ImageError, match="larger than"):
        load_archive(store, _hostile(tmp_path, files))
    files = {"manifest.json": b"[" + b" " * MAX_JSON + b"]"}
    with pytest.raises(ImageError, match="larger than"):
        load_archive(store, write_dir(tmp_path / "d", files))


@pytest.mark.parametrize("member", ["manifest.json", "index.json"])
def test_deeply_nested_json_is_malformed_not_a_crash(store: ImageStore, tmp_path: Path,
                                                    member: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    files = {"manifest.json": deep} if member == "manifest.json" else {**GOOD, "index.json": deep}
    with pytest.raises(ImageError, match="not valid JSON"):
        load_archive(store, write_dir(tmp_path / "deep", files))
    assert names(store) == set()


def test_missing_blob(store: ImageStore, tmp_path: Path) -> None:
    files = dict(GOOD)
    del files[blob_path(BUSYBOX.blobs[1])]
    with pytest.raises(ImageError, match="missing"):
        load_archive(store, _hostile(tmp_path, files))
    assert names(store) == set()


def test_blob_that_does_not_match_its_digest(store: ImageStore, tmp_path: Path) -> None:
    files = {**GOOD, blob_path(BUSYBOX.blobs[1]): b"tampered"}
    with pytest.raises(ImageError, match=r"digest|bytes"):
        load_archive(store, _hostile(tmp_path, files))
    assert names(store) == set()
    assert not store.has_blob(sha(b"tampered"))


def test_second_image_broken_means_no_tag_at_all(store: ImageStore, tmp_path: Path) -> None:
    files = oci_layout([({REF_NAME: "first:1"}, BUSYBOX), ({REF_NAME: "second:1"}, OTHER)])
    del files[blob_path(OTHER.blobs[0])]
    with pytest.raises(ImageError):
        load_archive(store, _hostile(tmp_path, files))
    assert names(store) == set()


@pytest.mark.parametrize("data", [b"", b"not a tar at all" * 100, gzip.compress(b"x" * 1000)[:50]])
def test_not_an_archive(store: ImageStore, tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "junk"
    path.write_bytes(data)
    with pytest.raises(ImageError):
        load_archive(store, path)


def test_device_member_is_refused(store: ImageStore, tmp_path: Path) -> None:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("dev")
        info.type = tarfile.CHRTYPE
        tar.addfile(info)
    with pytest.raises(ImageError, match="unexpected member"):
        load_archive(store, _hostile(tmp_path, GOOD, add))


def test_nothing_is_extracted_next_to_the_archive(store: ImageStore, tmp_path: Path) -> None:
    before = sorted(os.listdir(tmp_path))
    archive = write_tar(tmp_path / "save.tar", docker_save({"busybox:latest": BUSYBOX}))
    load_archive(store, archive)
    assert sorted(os.listdir(tmp_path)) == sorted({*before, "save.tar", "store"})
    assert not list((store.tmp).glob("load-*"))


# the command ----------------------------------------------------------------------------

def test_cli_load(script_runner: ScriptRunner, tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "save.tar", docker_save({"busybox:latest": BUSYBOX, "other:2": OTHER}))
    result = bx(script_runner, "load", "-i", str(archive))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Loaded image: busybox:latest", "Loaded image: other:2"]
    quiet = bx(script_runner, "load", "-q", "-i", str(archive))
    # (-q: no progress; the names still, as docker's: scripts read them)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, result.stdout, "")
    listed = bx(script_runner, "images", "--format", "json")
    assert {e["reference"] for e in json.loads(listed.stdout)} >= {"docker.io/library/busybox:latest",
                                                                   "docker.io/library/other:2"}
    # (never pulled nor pushed: no repo digest, as docker's; one was made up, naming a
    # place the image is not)
    [record] = json.loads(bx(script_runner, "image", "inspect", "other:2").stdout)
    assert (record["RepoTags"], record["RepoDigests"]) == (["other:2"], [])
    digests = bx(script_runner, "images", "--digests", "other").stdout.splitlines()
    assert digests[1].split()[:3] == ["other", "2", "<none>"]  # (docker's)
    assert bx(script_runner, "images", "--format", "{{.Digest}}", "other").stdout == "<none>\n"


def test_cli_load_of_an_unnamed_image_lists_it_as_none(script_runner: ScriptRunner,
                                                      tmp_path: Path) -> None:
    """`save IMAGE_ID` then `load` (docker's `Loaded image ID:`): the image is kept as
    `<none>`, by its id, until tagged; inspect names no repository; rmi by id deletes it."""
    archive = write_tar(tmp_path / "save.tar", docker_save({"x": (None, OTHER)}))
    result = bx(script_runner, "load", "-i", str(archive))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"Loaded image ID: {OTHER.id}\n", "")
    table = bx(script_runner, "images").stdout.splitlines()
    assert table[1].split()[:3] == ["<none>", "<none>", OTHER.id[7:19]], table
    [listed] = json.loads(bx(script_runner, "images", "--format", "json").stdout)
    assert (listed["repository"], listed["tag"], listed["reference"], listed["id"]) == (
        "<none>", None, None, OTHER.id)
    assert bx(script_runner, "images", "-q", "-f", "dangling=true").stdout == OTHER.id[7:19] + "\n"
    [record] = json.loads(bx(script_runner, "image", "inspect", OTHER.id[7:19]).stdout)
    assert (record["Id"], record["RepoTags"], record["RepoDigests"]) == (OTHER.id, [], [])
    removed = bx(script_runner, "rmi", OTHER.id[7:19])
    assert (removed.returncode, removed.stdout) == (0, f"Deleted: {OTHER.id}\n"), removed.stderr
    assert bx(script_runner, "images", "-q").stdout == ""


def test_cli_load_bad_input_is_one_line(script_runner: ScriptRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"garbage" * 100)
    assert_one_line_error(bx(script_runner, "load", "-i", str(bad)), "bad.tar")
    assert_one_line_error(bx(script_runner, "load", "-i", str(tmp_path / "missing.tar")), "missing.tar")


# save: what load reads back, digests and all ---------------------------------------------

def saved(store: ImageStore, *names: str) -> bytes:
    from boxlite_cli.runtime.images import Images
    from boxlite_cli.state.paths import Paths

    root = store.root.parent
    out = io.BytesIO()
    Images(Paths(root, root / "config", root / "cache"), store, dict).save(names, out)
    return out.getvalue()


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        return {m.name: tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
                for m in tar}


def test_save_writes_a_layout_and_dockers_manifest_that_load_reads_back(
        store: ImageStore, tmp_path: Path) -> None:
    load_archive(store, write_tar(tmp_path / "in.tar", oci_layout([
        ({CONTAINERD_NAME: "docker.io/library/busybox:1", REF_NAME: "1"}, BUSYBOX),
        ({CONTAINERD_NAME: "example.com/team/other:v1", REF_NAME: "v1"}, OTHER)])))
    store.tag(parse_reference("busybox:2"), BUSYBOX.digest)
    archive = saved(store, "busybox:1", "busybox:2", OTHER.id[7:19], "busybox:1")
    files = members(archive)
    blobs = sorted(n for n in files if n.startswith("blobs/sha256/"))
    assert blobs == sorted({blob_path(b) for img in (BUSYBOX, OTHER) for b in img.all_blobs()})
    assert all(files[n] == b for img in (BUSYBOX, OTHER) for b in img.all_blobs()
               for n in [blob_path(b)])  # (as the store holds them: manifests keep digests)
    docker = json.loads(files["manifest.json"])
    assert [(e["Config"], e["RepoTags"]) for e in docker] == [
        (blob_path(BUSYBOX.config), ["busybox:1", "busybox:2"]),
        (blob_path(OTHER.config), None)]  # (by id: no name, as docker's)
    assert docker[0]["Layers"] == [blob_path(b) for b in BUSYBOX.blobs]
    index = json.loads(files["index.json"])["manifests"]
    assert [(d["digest"], (d.get("annotations") or {}).get(CONTAINERD_NAME)) for d in index] == [
        (BUSYBOX.digest, "docker.io/library/busybox:1"),
        (BUSYBOX.digest, "docker.io/library/busybox:2"), (OTHER.digest, None)]
    assert saved(store, "busybox:1", "busybox:2", OTHER.id[7:19]) == archive  # (reproducible)

    fresh = ImageStore(tmp_path / "fresh")
    result = load_archive(fresh, write_tar(tmp_path / "out.tar", files))
    assert [r.short for r in result.loaded] == ["busybox:1", "busybox:2"]
    assert result.unnamed == [OTHER.id] and unnamed_ids(fresh) == [OTHER.id]
    assert fresh.lookup("busybox:2").manifest_digest == BUSYBOX.digest


def test_docker_25s_archive_whose_index_names_nothing_is_read_by_its_manifest_json(
        store: ImageStore, tmp_path: Path) -> None:
    files = {**oci_layout([(None, BUSYBOX)]), **docker_save({"busybox:3": BUSYBOX}, legacy=False)}
    result = load_archive(store, write_tar(tmp_path / "both.tar", files))
    assert [r.short for r in result.loaded] == ["busybox:3"]


def test_save_names_what_is_missing_before_writing(store: ImageStore, tmp_path: Path) -> None:
    from boxlite_cli.errors import NotFound

    load_archive(store, write_tar(tmp_path / "in.tar", docker_save({"busybox:1": BUSYBOX})))
    with pytest.raises(NotFound, match="no such image: nope:1"):
        saved(store, "busybox:1", "nope:1")
    image = store.lookup("busybox:1")
    store.blob_path(image.layers[0]).unlink()
    with pytest.raises(ImageError, match=f"blob {image.layers[0]} is missing"):
        saved(store, "busybox:1")


def test_cli_save_writes_the_file_whole_or_not_at_all(script_runner: ScriptRunner,
                                                      tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "in.tar", docker_save({"busybox:1": BUSYBOX}))
    assert bx(script_runner, "load", "-q", "-i", str(archive)).returncode == 0
    out = tmp_path / "out.tar"
    out.write_bytes(b"old")
    result = bx(script_runner, "save", "-o", str(out), "busybox:1")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert "blobs/sha256/" + BUSYBOX.id[7:] in members(out.read_bytes())  # (replaced)
    assert_one_line_error(bx(script_runner, "save", "-o", str(tmp_path / "x.tar"), "busybox:1",
                             "nope:2"), "no such image: nope:2")
    assert_one_line_error(bx(script_runner, "image", "save", "-o", str(tmp_path / "no" / "x.tar"),
                             "busybox:1"), "no such directory")
    assert not [p.name for p in tmp_path.iterdir() if p.name not in (
        "in.tar", "out.tar", "store", "script-cwd")]  # (no partial file left)


def test_an_image_a_name_moves_off_keeps_a_dangling_name(store: ImageStore, tmp_path: Path) -> None:
    """docker's <none>: a box may use it (commit, save); image prune takes it then."""
    load_archive(store, write_tar(tmp_path / "a.tar", docker_save({"app:1": BUSYBOX})))
    first = store.lookup("app:1").manifest_digest
    store.tag(parse_reference("app:2"), first)
    load_archive(store, write_tar(tmp_path / "b.tar", docker_save({"app:1": OTHER})))
    other = store.lookup("app:1").manifest_digest
    assert "docker.io/library/app@" + first not in store.tags()  # (app:2 still names it)
    store.untag(["docker.io/library/app:2"])
    store.tag(parse_reference("app:1"), first)  # (OTHER's image loses its only name)
    assert store.lookup("app:1").manifest_digest == first
    assert [k for k in store.tags() if "@" in k] == ["docker.io/library/app@" + other]


def test_two_names_of_one_config_with_two_manifests_are_saved_each_with_its_own(
        store: ImageStore, tmp_path: Path) -> None:
    """(saved together, the second name's manifest was the first's: its repo digest no
    longer resolved once loaded elsewhere)"""
    from boxlite_cli.runtime.images import Images
    from boxlite_cli.state.paths import Paths

    plain, zipped = Img(BUSYBOX.layers), Img(BUSYBOX.layers, compression="gzip")
    assert plain.id == zipped.id and plain.digest != zipped.digest
    load_archive(store, write_dir(tmp_path / "p", oci_layout([({REF_NAME: "plain:1"}, plain)])))
    load_archive(store, write_dir(tmp_path / "z", oci_layout([({REF_NAME: "zipped:1"}, zipped)])))
    home = tmp_path / "home"
    images = Images(Paths(data=home, config=home / "config", cache=home / "cache"), store,
                    lambda: {})
    saved = images.to_save(["plain:1", "zipped:1"])
    assert [(s.image.manifest_digest, [r.short for r in s.names]) for s in saved] == [
        (plain.digest, ["plain:1"]), (zipped.digest, ["zipped:1"])]


def test_an_image_saved_by_digest_has_no_empty_ref_name(store: ImageStore,
                                                        tmp_path: Path) -> None:
    """(the OCI image layout wants ref.name not empty: stricter tools refuse one)"""
    from boxlite_cli.oci.reference import parse_reference
    from boxlite_cli.oci.save import Saved, index_json

    load_archive(store, write_dir(tmp_path / "l", oci_layout([({REF_NAME: "app:1"}, BUSYBOX)])))
    image = store.lookup("app:1")
    by_digest = parse_reference(f"app@{BUSYBOX.digest}")
    [tagged, digested] = index_json(store, [Saved(image, (image.reference, by_digest))])["manifests"]
    assert tagged["annotations"][REF_NAME] == "1"
    assert REF_NAME not in digested["annotations"]
    assert digested["annotations"][CONTAINERD_NAME].endswith(f"/app@{BUSYBOX.digest}")


def test_a_box_archive_given_to_load_says_to_import_it(store: ImageStore, tmp_path: Path) -> None:
    """(`load -i box.bx` said only "manifest.json is not a list of images")"""
    box = {"manifest.json": json.dumps({"format": "boxlite-box", "version": 1}).encode()}
    with pytest.raises(ImageError) as e:
        load_archive(store, write_tar(tmp_path / "box.bx", box, compression="zstd"))
    assert e.value.message.endswith("manifest.json is not a list of images (it is a box "
                                    "archive of `boxlite export`)")
    assert e.value.hint == "import it with: boxlite import FILE"


def test_a_new_manifest_of_an_unpacked_config_is_held_to_its_diff_ids(store: ImageStore,
                                                                      tmp_path: Path) -> None:
    """(a manifest whose layer is not what its config says was kept unchecked when
    another manifest of that config had been unpacked here: then saved and pushed on)"""
    load_archive(store, write_dir(tmp_path / "good", oci_layout([({REF_NAME: "app:1"}, BUSYBOX)])))
    evil = compress(layer_tar({"evil.txt": b"x"}), "gzip")
    manifest = json.loads(BUSYBOX.manifest)
    manifest["layers"][1] = {"mediaType": LAYER_TYPE["gzip"], "digest": sha(evil),
                             "size": len(evil)}
    raw = json.dumps(manifest).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
             blob_path(raw): raw, blob_path(BUSYBOX.config): BUSYBOX.config,
             blob_path(BUSYBOX.blobs[0]): BUSYBOX.blobs[0], blob_path(evil): evil,
             "index.json": json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                 {"mediaType": OCI_MANIFEST, "digest": sha(raw), "size": len(raw),
                  "annotations": {REF_NAME: "evil:1"}}]}).encode()}
    with pytest.raises(ImageError, match="layer content does not match the image config"):
        load_archive(store, write_dir(tmp_path / "evil", files))
    assert "docker.io/library/evil:1" not in store.tags()
    # another manifest of that config whose layers are right (compressed otherwise): kept
    zipped = Img(BUSYBOX.layers, compression="gzip")
    load_archive(store, write_dir(tmp_path / "z", oci_layout([({REF_NAME: "zipped:1"}, zipped)])))
    assert store.lookup("zipped:1").manifest_digest == zipped.digest
