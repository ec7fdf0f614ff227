"""The local image store: content-addressed blobs, tags, and one ext4 base per image.

Layout under `<home>/images`:
  blobs/sha256/<hex>        manifests, configs, layers (verified before they appear)
  repositories.json         {"registry/repo:tag": "sha256:<manifest digest>"}
  rootfs/<config hex>.ext4  the unpacked image, shared read-only by its boxes
  tmp/                      partial blobs (resumable), unpack work trees, writer markers
  locks/                    one lock file per blob being written
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from boxlite_cli.disks.qcow2 import empty_overlay_of
from boxlite_cli.errors import DiskError, ImageError, NotFound
from boxlite_cli.oci.reference import Reference, parse_reference, unnamed_reference
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.flock import FileLock, Timeout

REF_ANNOTATION = "org.opencontainers.image.ref.name"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


@dataclass(frozen=True)
class Image:
    """An image in the store."""

    reference: Reference
    manifest_digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.manifest["config"]["digest"])

    @property
    def layers(self) -> list[str]:
        return [str(layer["digest"]) for layer in self.manifest.get("layers", [])]

    @property
    def diff_ids(self) -> list[str]:
        """Digests of the uncompressed layers, from the config (`rootfs.diff_ids`)."""
        rootfs = self.config.get("rootfs") or {}
        ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        return [str(d) for d in ids] if isinstance(ids, list) else []

    @property
    def size(self) -> int:
        return sum(int(layer.get("size", 0)) for layer in self.manifest.get("layers", []))

    @property
    def container_config(self) -> dict[str, Any]:
        cfg = self.config.get("config") or {}
        return cfg if isinstance(cfg, dict) else {}


def rfc3339_time(text: object) -> float | None:
    """An image's RFC 3339 time (its `created`, a history step's) as a timestamp, when
    it is a valid one."""
    if not isinstance(text, str):
        return None
    import datetime  # (for the listings that show times: not every command's start-up)

    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _unlink_size(path: Path) -> int:
    try:
        size = path.stat().st_blocks * 512
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def _unlink_unheld(lock_file: Path) -> None:
    """Remove a lock file that no process holds now."""
    try:
        lock = FileLock(str(lock_file), timeout=0, create_parents=False).acquire()
    except (Timeout, FileNotFoundError):
        return
    try:
        lock_file.unlink(missing_ok=True)
    finally:
        lock.release()


class BlobIngest:
    """One blob being written into the store (see `ImageStore.ingest`)."""

    def __init__(self, dest: Path, partial: Path, digest: str, size: int | None) -> None:
        self.dest = dest
        self.partial = partial
        self.digest = digest
        self.size = size
        self._hash = hashlib.sha256()
        self._file: IO[bytes] | None = None
        self.offset = 0
        if not self.done and partial.is_file():
            with open(partial, "rb") as f:
                while chunk := f.read(1 << 20):
                    self._hash.update(chunk)
                    self.offset += len(chunk)
            if size is not None and self.offset > size:
                self.restart()

    @property
    def done(self) -> bool:
        """The store has this blob already."""
        return self.dest.is_file()

    def restart(self) -> None:
        """Forget a partial download and start from byte 0."""
        self.close()
        self.partial.unlink(missing_ok=True)
        self._hash = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            self.restart()
            raise ImageError(f"blob {self.digest} is larger than the {self.size} bytes its "
                             "descriptor declares")
        if self._file is None:
            self._file = open(self.partial, "ab")  # noqa: SIM115 (closed in close/commit)
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def commit(self) -> None:
        """Verify size and digest, then make the blob visible; a mismatch discards it."""
        self.close()
        actual = "sha256:" + self._hash.hexdigest()
        if self.size is not None and self.offset != self.size:
            got = self.offset  # (before restart() sets it back to 0)
            self.restart()
            raise ImageError(f"blob {self.digest} is truncated: got {got} of "
                             f"{self.size} bytes")
        if actual != self.digest:
            self.restart()
            raise ImageError(f"digest mismatch: expected {self.digest}, got {actual}")
        if self.offset == 0:
            self.partial.touch()
        with open(self.partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.partial, self.dest)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.rootfs_dir = root / "rootfs"
        self.tmp = root / "tmp"
        self.locks = root / "locks"  # one per blob being written (empty files, kept)
        self.repositories = root / "repositories.json"
        self.lock = FileLock(str(root / "store.lock"), timeout=600)

    def _ensure_dirs(self) -> None:
        for d in (self.blobs, self.rootfs_dir, self.tmp, self.locks):
            d.mkdir(parents=True, exist_ok=True)

    # blobs ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
            raise ImageError(f"unsupported or malformed digest {digest!r}")
        return self.blobs / hexpart

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    @contextlib.contextmanager
    def ingest(self, digest: str, size: int | None = None) -> Iterator[BlobIngest]:
        """Write one blob: hashed while written, visible only once complete and verified.

        Holds a lock per digest, so concurrent writers of one blob wait for each other
        (the second finds it `done`). A partial file is kept when writing fails midway,
        so that a rerun resumes from `offset`; a digest or size mismatch discards it.
        """
        dest = self.blob_path(digest)
        self._ensure_dirs()
        hexpart = dest.name
        with self._blob_lock(hexpart, timeout=3600):
            ingest = BlobIngest(dest, self.tmp / f"{hexpart}.partial", digest, size)
            if ingest.done:  # found, not written: garbage collection must spare it too
                with contextlib.suppress(OSError):
                    os.utime(dest)
            try:
                yield ingest
            finally:
                ingest.close()

    def _blob_lock(self, hexpart: str, timeout: float) -> FileLock:
        """The lock of one blob's writers (and of garbage collection deleting it)."""
        return FileLock(str(self.locks / f"{hexpart}.lock"), timeout=timeout)

    def add_blob_file(self, src: Path, digest: str) -> None:
        """Copy a blob into the store; it appears only once complete and verified."""
        with open(src, "rb") as fin:
            self.add_blob_stream(fin, digest)

    def add_blob_stream(self, src: IO[bytes], digest: str, size: int | None = None) -> None:
        """Store a blob read from `src` (read to its end) unless the store has it already."""
        with self.ingest(digest, size) as ing:
            if ing.done:
                return
            ing.restart()
            while chunk := src.read(1 << 20):
                ing.write(chunk)
            ing.commit()

    def read_json_blob(self, digest: str) -> dict[str, Any]:
        try:
            data = json.loads(self.blob_path(digest).read_bytes())
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the store") from None
        except ValueError as e:
            raise ImageError(f"blob {digest} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ImageError(f"blob {digest} is not a JSON object")
        return data

    # tags ----------------------------------------------------------------------------

    def _read_repositories(self) -> dict[str, str]:
        try:
            data = json.loads(self.repositories.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise ImageError(f"corrupt image index {self.repositories}: {e}") from e
        return {str(k): str(v) for k, v in data.items()}

    def tag(self, ref: Reference, manifest_digest: str) -> None:
        """Name the image; the one the name leaves, if nothing else names it, keeps
        `name@digest` (docker's dangling `<none>`: a box may use it; `image prune`
        takes it once none does)."""
        self._ensure_dirs()
        with self.lock:
            repos = self._read_repositories()
            left = repos.get(str(ref))
            repos[str(ref)] = manifest_digest
            repos.pop(str(unnamed_reference(manifest_digest)), None)  # (it has a name now)
            if left is not None and left not in repos.values():
                repos[str(Reference(ref.registry, ref.repository, None, left))] = left
            write_json_atomic(self.repositories, repos, 0o644)

    def keep_unnamed(self, manifest_digest: str) -> None:
        """Keep the image with this manifest though nothing names it (a load of an
        archive that gives it no name), unless a name has it already."""
        self._ensure_dirs()
        with self.lock:
            repos = self._read_repositories()
            image_id = self._config_digest(manifest_digest)
            if all(self._config_digest(m) != image_id for m in set(repos.values())):
                repos[str(unnamed_reference(manifest_digest))] = manifest_digest
                write_json_atomic(self.repositories, repos, 0o644)

    def _config_digest(self, manifest_digest: str) -> str | None:
        """The id of the image with this manifest; None when it is not readable here."""
        try:
            return str(self.read_json_blob(manifest_digest)["config"]["digest"])
        except (ImageError, OSError, KeyError, TypeError):
            return None

    def lookup(self, ref: str | Reference) -> Image:
        reference = parse_reference(ref) if isinstance(ref, str) else ref
        digest = self._read_repositories().get(str(reference)) or reference.digest
        if digest is None or not self.has_blob(digest):
            raise NotFound(f"image {reference.short} is not in the local store")
        manifest = self.read_json_blob(digest)
        config = self.read_json_blob(str(manifest["config"]["digest"]))
        return Image(reference, digest, manifest, config)

    def tags(self) -> dict[str, str]:
        """Every reference the store knows (tags and `name@digest`) → manifest digest."""
        return self._read_repositories()

    def all(self) -> list[Image]:
        """One entry per tag; a `name@digest` entry only when no tag of `name` has that image."""
        repos = self._read_repositories()
        tagged = {(parse_reference(k).name, v) for k, v in repos.items() if "@" not in k}
        images = []
        for key in sorted(repos):
            ref = parse_reference(key)
            if ref.digest and (ref.name, repos[key]) in tagged:
                continue
            with contextlib.suppress(NotFound, ImageError):
                images.append(self.lookup(ref))
        return images

    def all_references(self) -> list[Image]:
        """One entry per store key, digests included."""
        images = []
        for key in sorted(self._read_repositories()):
            with contextlib.suppress(NotFound, ImageError):
                images.append(self.lookup(key))
        return images

    def untag(self, keys: list[str]) -> None:
        with self.lock:
            repos = self._read_repositories()
            for key in keys:
                repos.pop(key, None)
            write_json_atomic(self.repositories, repos, 0o644)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Mark a pull or load in progress: garbage collection spares what it writes."""
        self._ensure_dirs()
        with self.lock:  # not while a collection runs: it counts the writers once
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix="writer-")
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.unlink(name)
            os.close(fd)

    def _oldest_writer(self) -> float | None:
        """Start time of the oldest pull or load still running, if any."""
        oldest = None
        for marker in self.tmp.glob("writer-*") if self.tmp.is_dir() else []:
            try:
                fd = os.open(marker, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                marker.unlink(missing_ok=True)  # its writer died without cleaning up
            except BlockingIOError:
                started = os.fstat(fd).st_mtime
                oldest = started if oldest is None else min(oldest, started)
            finally:
                os.close(fd)
        return oldest

    def collect_garbage(self, keep_ids: set[str], partials: bool = False) -> int:
        """Delete blobs no reference needs and ext4 bases of images gone from the store
        whose config id is not in `keep_ids` (images boxes still use); with `partials`
        (a prune), the partial downloads no pull writes now too, however recent (else
        they are kept a week, for a pull to resume). Returns bytes freed.
        Blobs written or found by a pull or load still running are kept: each blob is
        deleted under its ingest lock, and only when not written or found (an ingest
        touches a blob it finds) since the oldest of them began. (One that begins now
        waits for us in `writing()`, then finds what we deleted gone.)"""
        freed = 0
        with self.lock:
            busy_since = self._oldest_writer()
            needed: set[str] = set()
            live_ids = set(keep_ids)
            for digest in set(self._read_repositories().values()):
                with contextlib.suppress(ImageError, KeyError, TypeError):
                    manifest = self.read_json_blob(digest)
                    config = str(manifest["config"]["digest"])
                    needed |= {digest, config, *(str(d["digest"]) for d in manifest.get("layers", []))}
                    live_ids.add(config)
            if self.blobs.is_dir():
                for blob in self.blobs.iterdir():
                    if "sha256:" + blob.name not in needed:
                        freed += self._collect_blob(blob, busy_since)
            if self.rootfs_dir.is_dir():
                for base in self.rootfs_dir.glob("*.ext4"):
                    if "sha256:" + base.name.removesuffix(".ext4") not in live_ids:
                        freed += _unlink_size(base)
                        freed += _unlink_size(empty_overlay_of(base))
                        freed += _unlink_size(self._sizes_file(base))
                        Path(str(base) + ".lock").unlink(missing_ok=True)
                for sizes in self.rootfs_dir.glob("*.sizes.json"):  # (of images not unpacked)
                    if "sha256:" + sizes.name.removesuffix(".sizes.json") not in live_ids:
                        freed += _unlink_size(sizes)
                for lock in self.rootfs_dir.glob("*.ext4.lock"):  # (of unpacks that failed)
                    if "sha256:" + lock.name.removesuffix(".ext4.lock") not in live_ids:
                        _unlink_unheld(lock)
            freed += self._clean_tmp(partials)
        return freed

    def _collect_blob(self, blob: Path, busy_since: float | None) -> int:
        """Delete one unreferenced blob unless an ingest holds it, or used it since
        `busy_since` (the start of the oldest pull or load running)."""
        try:
            lock = self._blob_lock(blob.name, timeout=0).acquire()
        except Timeout:
            return 0  # being written, or found by a pull right now
        try:
            try:
                if busy_since is not None and blob.stat().st_mtime >= busy_since - 1:
                    return 0
            except FileNotFoundError:
                return 0
            return _unlink_size(blob)
        finally:
            lock.release()

    def partial_size(self, digest: str) -> int:
        """Bytes of the blob `digest` that an interrupted pull left (a rerun resumes)."""
        try:
            return (self.tmp / f"{self.blob_path(digest).name}.partial").stat().st_size
        except FileNotFoundError:
            return 0

    def partial_downloads(self) -> list[Path]:
        """The partial blobs interrupted pulls left (or that pulls write now)."""
        return sorted(self.tmp.glob("*.partial")) if self.tmp.is_dir() else []

    def _drop_partial(self, partial: Path) -> int:
        """Delete a partial blob unless a pull writes it now; the bytes freed."""
        try:
            lock = self._blob_lock(partial.name.removesuffix(".partial"), timeout=0).acquire()
        except Timeout:
            return 0
        try:
            return _unlink_size(partial)
        finally:
            lock.release()

    def _clean_tmp(self, partials: bool = False) -> int:
        """Drop what interrupted pulls and unpacks left: partial blobs after a week (at
        once with `partials`), anything else in tmp/ after a day (a live unpack or
        ingest is never that old)."""
        freed = 0
        if partials:
            freed += sum(self._drop_partial(p) for p in self.partial_downloads())
        now = time.time()
        for lock in self.locks.glob("*.lock") if self.locks.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                if now - lock.stat().st_mtime > 86400:
                    lock.unlink()
        for entry in self.tmp.iterdir() if self.tmp.is_dir() else []:
            try:
                age = now - entry.lstat().st_mtime
            except FileNotFoundError:
                continue
            if entry.name.startswith("writer-") or age < (7 if entry.suffix == ".partial" else 1) * 86400:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                freed += _unlink_size(entry)
        return freed

    # OCI layouts ---------------------------------------------------------------------

    def load_oci_layout(self, layout: Path) -> list[Reference]:
        """Import every named image of an OCI image layout directory (see oci.archive)."""
        from boxlite_cli.oci.archive import load_archive

        return load_archive(self, layout).loaded

    # root filesystems ----------------------------------------------------------------

    def rootfs_path(self, image: Image) -> Path:
        return self.rootfs_path_of(image.id)

    @staticmethod
    def _sizes_file(base: Path) -> Path:
        return base.with_suffix(".sizes.json")

    def known_layer_sizes(self, image: Image) -> list[int] | None:
        """The bytes of each layer's files (docker's sizes), as the unpack (or a commit)
        counted them; None when not counted yet."""
        count = len(image.manifest.get("layers", []))
        try:
            known = json.loads(self._sizes_file(self.rootfs_path(image)).read_text())["layers"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (not isinstance(known, list) or len(known) != count
                or not all(isinstance(n, int) and n >= 0 for n in known)):
            return None
        return list(known)

    def record_layer_sizes(self, image_id: str, sizes: list[int]) -> None:
        """Keep the sizes of an image's layers' files (a commit's, before any unpack)."""
        self._ensure_dirs()
        write_json_atomic(self._sizes_file(self.rootfs_path_of(image_id)), {"layers": sizes})

    def layer_sizes(self, image: Image) -> list[int]:
        """The bytes of each layer's files (docker's sizes: what the unpack counted),
        or where that is not known (an image not unpacked yet), its blobs' sizes."""
        known = self.known_layer_sizes(image)
        if known is not None:
            return known
        return [int(layer.get("size", 0)) for layer in image.manifest.get("layers", [])]

    def content_size(self, image: Image) -> int:
        """The image's size as docker's `images` shows it: its layers' files."""
        return sum(self.layer_sizes(image))

    def rootfs_path_of(self, image_id: str) -> Path:
        """Where the ext4 base of the image with this id (its config's digest) is kept."""
        return self.rootfs_dir / (image_id.split(":", 1)[1] + ".ext4")

    def unpack_before_naming(self, reference: Reference, manifest_digest: str) -> None:
        """Make the image's file system, a pull's or load's last step before the image
        gets its name (docker's "Extracting"): an image whose layers cannot be unpacked
        (a broken archive, a path that escapes, a layer that is not its diff_id) fails
        there and is never listed, and the first box made from it starts sooner."""
        manifest = self.read_json_blob(manifest_digest)
        config = self.read_json_blob(str(manifest["config"]["digest"]))
        image = Image(reference, manifest_digest, manifest, config)
        try:
            if self.rootfs_path(image).is_file():
                # (unpacked from another manifest of this config: this one's layers are
                # held to its diff_ids all the same, or it would be kept, saved and pushed
                # unchecked; one the store has already was)
                if manifest_digest not in set(self.tags().values()):
                    self.check_layers(image)
                return
            self.ensure_rootfs(image)
        except ImageError as e:
            raise ImageError(e.message, hint="the image is broken and was not kept; ask "
                                             "its publisher for a fixed one") from e

    def check_layers(self, image: Image) -> None:
        """Each layer of the image, uncompressed, is the diff_id its config says."""
        from boxlite_cli.compression import DECOMPRESSION_ERRORS, open_decompressed

        if len(image.diff_ids) != len(image.layers):
            raise ImageError(f"image {image.reference.short}: its config lists "
                             f"{len(image.diff_ids)} layers, its manifest {len(image.layers)}")
        unreadable: tuple[type[BaseException], ...] = (OSError, *DECOMPRESSION_ERRORS)
        for digest, diff_id in zip(image.layers, image.diff_ids, strict=True):
            h = hashlib.sha256()
            try:
                with open(self.blob_path(digest), "rb") as f:
                    data, _ = open_decompressed(f)
                    while chunk := data.read(1 << 20):
                        h.update(chunk)
            except FileNotFoundError:
                raise ImageError(f"image {image.reference.short} is incomplete: its layer "
                                 f"{digest} is missing from the local store") from None
            except unreadable as e:
                raise ImageError(f"image {image.reference.short}: layer {digest[:19]} does "
                                 f"not decompress: {e}") from None
            if "sha256:" + h.hexdigest() != diff_id:
                raise ImageError(f"image {image.reference.short} cannot be unpacked: layer "
                                 f"{digest[:19]}: layer content does not match the image "
                                 f"config: diff_id {diff_id[:19]} expected, the layer is "
                                 f"sha256:{h.hexdigest()[:12]}")

    def ensure_rootfs(self, image: Image) -> Path:
        """The image's ext4 base, unpacking it once (concurrent callers wait)."""
        dest = self.rootfs_path(image)
        if dest.is_file():
            return dest
        # Unpacking (tarfile, zstandard, mkfs) is imported only when an image is unpacked.
        from boxlite_cli.disks.ext4 import make_ext4
        from boxlite_cli.disks.ownership import ownership_for_unpack
        from boxlite_cli.oci.unpack import apply_layer, make_volume_dirs

        self._ensure_dirs()
        with FileLock(str(dest) + ".lock", timeout=1800):
            if dest.is_file():
                return dest
            work = Path(tempfile.mkdtemp(dir=self.tmp, prefix="unpack-"))
            try:
                tree = work / "tree"
                tree.mkdir()
                ownership = ownership_for_unpack()
                diff_ids = image.diff_ids
                if len(diff_ids) != len(image.layers):
                    raise ImageError(f"image {image.reference.short}: its config lists "
                                     f"{len(diff_ids)} layers, its manifest {len(image.layers)}")
                sizes: list[int] = []
                for digest, diff_id in zip(image.layers, diff_ids, strict=True):
                    try:
                        f = open(self.blob_path(digest), "rb")  # noqa: SIM115 (closed below)
                    except FileNotFoundError:
                        raise ImageError(
                            f"image {image.reference.short} is incomplete: its layer {digest} "
                            "is missing from the local store",
                            hint=f"pull it again: boxlite pull {image.reference.short}") from None
                    with f:
                        try:
                            sizes.append(apply_layer(f, tree, ownership, diff_id))
                        except ImageError as e:  # (which image and layer: no box can use it)
                            raise ImageError(
                                f"image {image.reference.short} cannot be unpacked: layer "
                                f"{digest[:19]}: {e.message}",
                                hint=f"the image is broken; remove it (boxlite rmi "
                                     f"{image.reference.short}) and ask its publisher") from e
                config = image.config.get("config")
                try:
                    make_volume_dirs(tree, config.get("Volumes") if isinstance(config, dict)
                                     else None, ownership)
                except ImageError as e:
                    raise ImageError(f"image {image.reference.short} cannot be unpacked: "
                                     f"{e.message}") from e
                partial = work / "rootfs.ext4"
                make_ext4(tree, partial, label="boxlite-rootfs", ownership=ownership)
                write_json_atomic(self._sizes_file(dest), {"layers": sizes})
                partial.replace(dest)
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise DiskError(
                    f"No space left on device under {self.root} while unpacking "
                    f"{image.reference.short}'s root file system (its files, then an ext4 "
                    "image of them, beside its compressed layers)",
                    hint="free some disk space (boxlite system df shows what boxlite "
                         "takes) and try again") from e
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return dest
