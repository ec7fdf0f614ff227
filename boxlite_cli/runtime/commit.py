"""`boxlite commit`: a new image of a box's changes (oci/commit.py), named in the store.

A running box's root file system is frozen (FIFREEZE) while it is read, as docker
pauses a container for its commit: its processes' writes wait, its reads go on. The
freeze is renewed while the read runs, and thaws by itself if this process dies. A
stopped box is read from a maintenance start of its VM, as `cp` reads one.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from boxlite_cli.errors import BoxliteError, ImageError, UsageError
from boxlite_cli.oci.changes import apply_changes
from boxlite_cli.oci.commit import (
    BoxEntry,
    Meta,
    boxlite_made,
    committed_config,
    image_index,
    walk_changes,
    write_layer,
)
from boxlite_cli.oci.mediatypes import OCI_MANIFEST
from boxlite_cli.oci.reference import Reference, parse_reference
from boxlite_cli.oci.store import Image
from boxlite_cli.runtime.copy import box_agent
from boxlite_cli.runtime.images import refuse_id_name
from boxlite_cli.runtime.pausing import refuse_paused
from boxlite_cli.runtime.signals import DEFAULT_STOP_SIGNAL, parse_signal
from boxlite_cli.state.records import BoxState, Status

if TYPE_CHECKING:
    from boxlite_cli.agent.client import AgentClient
    from boxlite_cli.runtime.runtime import Runtime

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
FREEZE_S = 10.0  # each freeze thaws by itself after this, unless renewed
RENEW_S = 3.0


def container_config(state: BoxState, image_config: dict[str, Any]) -> dict[str, Any]:
    """The box's own config as an image's `config` (docker commit's): its command,
    environment, user, working directory, labels, ports, stop signal and health check
    over the image's."""
    cfg = state.config
    proc = cfg.process
    config = dict(image_config)
    config.update(
        Env=list(proc.env), Cmd=list(proc.argv[proc.entrypoint_len:]) or None,
        Entrypoint=list(proc.argv[:proc.entrypoint_len]) or None, WorkingDir=proc.cwd,
        User=proc.user, Labels=dict(cfg.labels) or None)
    ports = {**(image_config.get("ExposedPorts") or {}), **{key: {} for key in cfg.exposed},
             **{p.private: {} for p in cfg.network.ports}}
    config["ExposedPorts"] = ports or None
    volumes = {**(image_config.get("Volumes") or {}),
               **{m.target: {} for m in cfg.mounts if m.anonymous}}  # (docker's `-v PATH`)
    config["Volumes"] = volumes or None
    if cfg.stop_signal and (cfg.stop_signal != DEFAULT_STOP_SIGNAL or "StopSignal" in config):
        config["StopSignal"] = cfg.stop_signal  # (SIGTERM, the default, only over another)
    if cfg.healthcheck is not None:  # (--no-healthcheck's NONE too, as docker's)
        config["Healthcheck"] = cfg.healthcheck.to_image_json()
    return {k: v for k, v in config.items() if v is not None}


def commit_name(text: str) -> Reference:
    reference = parse_reference(text)
    if reference.digest:
        raise UsageError(f"invalid name {text!r}: an image to commit is named by a tag, "
                         "not a digest")
    refuse_id_name(reference, text)
    return reference


def check_changes(changes: tuple[str, ...]) -> None:
    """--change values docker would refuse, refused before the commit reads anything."""
    config = apply_changes({}, changes)
    if "StopSignal" in config:
        try:
            parse_signal(str(config["StopSignal"]))
        except UsageError as e:
            raise UsageError(f"invalid --change STOPSIGNAL: {e.message}") from None


@contextlib.contextmanager
def _frozen(client: AgentClient, running: bool) -> Iterator[None]:
    """The box's root file system frozen meanwhile (renewed), when it runs."""
    if not running:
        yield
        return
    client.quiesce(True, auto_thaw_s=FREEZE_S)
    done = threading.Event()

    def renew() -> None:
        while not done.wait(RENEW_S):
            with contextlib.suppress(BoxliteError):
                client.quiesce(True, auto_thaw_s=FREEZE_S)

    renewer = threading.Thread(target=renew, name="freeze", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()
        with contextlib.suppress(BoxliteError):
            client.quiesce(False)


def box_tree(client: AgentClient) -> Iterator[BoxEntry]:
    """The box's root file system alone, entry by entry (its agent's Tree)."""
    for e in client.tree():
        yield e.path, Meta(e.kind, e.mode, e.uid, e.gid, size=e.size, mtime=e.mtime,
                           link=e.link, dev=e.dev, capability=e.capability), e.ctime_ns


def disk_made_ns(state: BoxState) -> int | None:
    """When the image's root disk that the box's is made on was made (its files are
    older; what the box changes, newer); None for a box without one (imported)."""
    try:
        return os.stat(state.config.rootfs_base).st_mtime_ns if state.config.rootfs_base else None
    except OSError:
        return None


def box_image(rt: Runtime, state: BoxState, doing: str = "commit") -> Image:
    """The image the box was made from (its changes are against its layers)."""
    for image in rt.images.all_references():
        if image.id == state.config.image_id:
            return image
    raise ImageError(f"box {state.name}'s image {state.config.image_id[7:19]} is not in the "
                     "store (a box imported from another host, or an image removed since)",
                     hint=f"pull or load {state.config.image} (or `boxlite save` it where it "
                          f"is), then {doing}")


def commit(rt: Runtime, ref: str, name: str, author: str = "", message: str = "",
           changes: tuple[str, ...] = (), pause: bool = True) -> Image:
    """Make image `name` of box `ref`'s changes (its image's layers and one more, or
    none when it changed nothing); the image made."""
    target = commit_name(name)
    state = rt.get(rt.resolve(ref))
    refuse_paused(state, "commit it (its disk is read through its guest, which the pause "
                         "stops)")
    check_changes(changes)  # (a bad one fails before anything is read)
    image = box_image(rt, state)
    config = apply_changes(container_config(state, image.container_config), changes)
    store = rt.images
    base = image_index(store, image)
    store.tmp.mkdir(parents=True, exist_ok=True)
    # (unnamed where the file system can: a killed commit leaves nothing behind)
    with store.writing(), tempfile.TemporaryFile(dir=store.tmp, prefix="commit-") as layer:
        with box_agent(rt, ref) as client, _frozen(client, pause and rt.get(
                state.id).status == Status.RUNNING):
            changed = walk_changes(box_tree(client), base, disk_made_ns(state),
                                   boxlite_made(image.container_config))
            if changed:
                write_layer(changed, client.copy_paths, layer)
        layers = list(image.manifest.get("layers", []))
        diff_id = None
        if changed:
            diff_id = _sha256(layer)
            with tempfile.TemporaryFile(dir=store.tmp, prefix="commit-gz-") as packed:
                digest, size = _gzipped(layer, packed)
                store.add_blob_stream(packed, digest, size)
            layers.append({"mediaType": LAYER_TAR_GZIP, "digest": digest, "size": size})
        made = committed_config(image.config, config, diff_id, author, message,
                                datetime.datetime.now(datetime.UTC))
        config_digest = _add_json(rt, made)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                               "size": len(_json(made))},
                    "layers": layers}
        manifest_digest = _add_json(rt, manifest)
        counted = store.known_layer_sizes(image)
        if counted is not None:  # (docker's SIZE of it before its first unpack)
            store.record_layer_sizes(config_digest, counted + ([_file_bytes(layer)]
                                                               if changed else []))
        store.tag(target, manifest_digest)
    return store.lookup(target)


def _file_bytes(tar: IO[bytes]) -> int:
    """The bytes of a layer's files (its tar read again from the start)."""
    tar.seek(0)
    with tarfile.open(fileobj=tar, mode="r|") as layer:
        return sum(m.size for m in layer if m.isreg())


GZIP_LEVEL = 1  # (docker's layers are gzip; the fastest level keeps a big commit quick)


def _gzipped(tar: IO[bytes], out: IO[bytes]) -> tuple[str, int]:
    """`tar` gzipped into `out` (left at its start): the blob's digest and size, as a
    layer is stored, pushed and pulled (the diff_id is the tar's own digest)."""
    import gzip

    tar.seek(0)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
        while chunk := tar.read(1 << 20):
            gz.write(chunk)
    size = out.tell()
    digest = _sha256(out)
    out.seek(0)
    return digest, size


def _sha256(f: IO[bytes]) -> str:
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _add_json(rt: Runtime, doc: Any) -> str:
    raw = _json(doc)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    rt.images.add_blob_stream(io.BytesIO(raw), digest, len(raw))
    return digest
