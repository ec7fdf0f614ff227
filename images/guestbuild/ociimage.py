"""The built-in box image `localhost/debian:bookworm` as an OCI image layout.

One uncompressed layer (`application/vnd.oci.image.layer.v1.tar`): Debian
bookworm, mmdebstrap's `minbase` variant plus python3, slimmed like
debian:bookworm-slim, with /dev left empty (device nodes are the runtime's
business). The layer tar is a cached stage; config, manifest and index are
written per payload with sorted keys, so equal layers give equal digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from . import debian
from .proc import BuildError, Log, remove_tree, start, stop_group
from .stages import StageCache, recipe_key

VARIANT = "minbase"
PACKAGES = ("python3",)
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# dpkg-style filters applied to mmdebstrap's tar output.
LAYER_EXCLUDES = ("/dev/*",)


def layer_recipe() -> dict[str, object]:
    return {**debian.recipe(VARIANT, PACKAGES), "exclude": list(LAYER_EXCLUDES)}


def layer_stage(stages: StageCache, log: Log) -> Path:
    """The cached stage holding `layer.tar` and `layer.json` (its digest and size)."""
    key = recipe_key(layer_recipe(), Path(__file__), Path(debian.__file__))
    return stages.get("default-image", key, lambda tmp: build_layer(tmp, log))


def build_layer(stage: Path, log: Log) -> None:
    """mmdebstrap straight into a tar, filtered on the way to `stage/layer.tar`."""
    log(f"default image: mmdebstrap {debian.SUITE} {VARIANT} + {','.join(PACKAGES)}")
    scratch = stage / "scratch"
    scratch.mkdir()
    layer = stage / "layer.tar"
    chatter = scratch / "mmdebstrap.log"
    with layer.open("wb") as out, chatter.open("wb") as err:
        pipeline_to(out, err, scratch)
    remove_tree(scratch)
    digest, size = file_digest(layer)
    (stage / "layer.json").write_text(json.dumps({"digest": digest, "size": size}))


def pipeline_to(out: IO[bytes], err: IO[bytes], scratch: Path) -> None:
    """`mmdebstrap ... - | mmtarfilter --path-exclude=...` into `out`, chatter into `err`."""
    argv = debian.mmdebstrap_argv(VARIANT, PACKAGES, "-")
    excludes = [f"--path-exclude={pattern}" for pattern in LAYER_EXCLUDES]
    producer = start(argv, env=debian.mmdebstrap_env(scratch), stdout=subprocess.PIPE,
                     stderr=err)
    assert producer.stdout is not None
    filtered = start(["mmtarfilter", *excludes], stdin=producer.stdout, stdout=out, stderr=err)
    producer.stdout.close()
    try:
        filtered.wait()
        producer.wait()
    except BaseException:
        stop_group(producer)
        stop_group(filtered)
        raise
    if producer.returncode != 0 or filtered.returncode != 0:
        err.flush()
        log_text = Path(err.name).read_text(errors="replace")[-3000:]
        raise BuildError(f"building the default image layer failed (mmdebstrap exited "
                         f"{producer.returncode}, mmtarfilter {filtered.returncode}):\n"
                         f"{log_text}")


def file_digest(path: Path) -> tuple[str, int]:
    """(`sha256:<hex>`, size) of a file."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return f"sha256:{h.hexdigest()}", size


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def add_bytes(self, media_type: str, data: bytes) -> dict[str, object]:
        """Store a blob; returns its descriptor."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (self.blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_file(self, media_type: str, path: Path, digest: str, size: int) -> dict[str, object]:
        """Store an existing file as a blob (hard link when possible); its descriptor."""
        dest = self.blobs / digest.removeprefix("sha256:")
        try:
            os.link(path, dest)
        except OSError:
            shutil.copyfile(path, dest)
        return {"mediaType": media_type, "digest": digest, "size": size}

    def write_index(self, manifest: dict[str, object], ref: str) -> None:
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [{**manifest, "annotations": {REF_NAME_ANNOTATION: ref}}],
        }
        (self.root / "index.json").write_bytes(canonical_json(index))


def image_config(diff_id: str) -> dict[str, object]:
    created = datetime.fromtimestamp(debian.SOURCE_DATE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Env": [DEFAULT_PATH], "Cmd": ["bash"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{
            "created": created,
            "created_by": f"mmdebstrap --variant={VARIANT} --include={','.join(PACKAGES)} "
                          f"{debian.SUITE}",
        }],
    }


def write_default_image(dest: Path, stage: Path, ref: str, log: Log) -> str:
    """Write the OCI layout for `ref` at `dest`; returns the manifest digest."""
    layer_info = json.loads((stage / "layer.json").read_text())
    layout = Layout(dest)
    layer = layout.add_file(LAYER_MEDIA_TYPE, stage / "layer.tar",
                            layer_info["digest"], layer_info["size"])
    config = layout.add_bytes(CONFIG_MEDIA_TYPE,
                              canonical_json(image_config(layer_info["digest"])))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config,
        "layers": [layer],
    }
    manifest_desc = layout.add_bytes(MANIFEST_MEDIA_TYPE, canonical_json(manifest))
    layout.write_index(manifest_desc, ref)
    log(f"default image: {ref} {manifest_desc['digest']}, layer {layer_info['size'] >> 20} MiB")
    return str(manifest_desc["digest"])
