"""Image operations of a home: pull, login, remove, prune (the boxes' view of the store)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING

from boxlite_cli.errors import Conflict, ImageError, NotFound, UsageError
from boxlite_cli.oci.credentials import Credentials, CredentialStore, normalize_registry
from boxlite_cli.oci.mediatypes import OCI_MANIFEST
from boxlite_cli.oci.pull import Puller, PullProgress, PullResult
from boxlite_cli.oci.reference import Reference, is_registry_name, parse_reference
from boxlite_cli.oci.store import Image, ImageStore
from boxlite_cli.state.paths import Paths
from boxlite_cli.state.settings import registry_settings

if TYPE_CHECKING:  # httpx is imported only by the commands that talk to a registry
    from boxlite_cli.oci.archive import LoadResult
    from boxlite_cli.oci.registry import RegistryClient
    from boxlite_cli.oci.save import Saved

PULL_POLICIES = ("missing", "always", "never")


def _registry_of(server: str) -> str:
    """The registry a login or logout names (a URL of it too); UsageError for one that
    names none (`bad host!`, `http://`), not docker.io or a DNS lookup."""
    registry = normalize_registry(server)
    host = server.strip()
    for scheme in ("https://", "http://"):
        host = host.removeprefix(scheme)
    if (server.strip() and not host.split("/", 1)[0]) or not is_registry_name(registry):
        raise UsageError(f"invalid registry {server!r}: give HOST[:PORT] (or a URL of it)")
    return registry


@dataclass(frozen=True)
class PushResult:
    """What `push` sent: the name, and the manifest's digest and size."""

    reference: Reference
    digest: str
    size: int


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


@dataclass
class Removal:
    """What `rmi` did: references untagged, image ids deleted, bytes freed."""

    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    freed: int = 0


class Images:
    """Pulls into and removes from one home's image store."""

    def __init__(self, paths: Paths, store: ImageStore,
                 boxes_using: Callable[[], dict[str, list[str]]]) -> None:
        """`boxes_using()` maps image ids to the names of the boxes made from them."""
        self.paths = paths
        self.store = store
        self.boxes_using = boxes_using
        self.credentials = CredentialStore(paths.config)

    def client(self, registry: str) -> RegistryClient:
        from boxlite_cli.oci.registry import RegistryClient

        credentials, problem = self.credentials.lookup(registry)
        return RegistryClient(registry, registry_settings(self.paths.config), credentials,
                              credentials_problem=problem)

    def pull(self, ref: str | Reference, progress: PullProgress | None = None) -> PullResult:
        reference = parse_reference(ref) if isinstance(ref, str) else ref
        try:
            with self.client(reference.registry) as client, self.store.writing():
                return Puller(self.store, client, progress).pull(reference)
        except ImageError:  # (a broken image, refused: its blobs go, as a load's do; not
            with contextlib.suppress(ImageError, OSError):  # a network failure's, which a
                self.store.collect_garbage(set(self.boxes_using()))  # retry takes up)
            raise

    def login(self, server: str, creds: Credentials) -> str:
        """Check the credentials against the registry, then save them (0600)."""
        registry = _registry_of(server)
        from boxlite_cli.oci.registry import RegistryClient

        with RegistryClient(registry, registry_settings(self.paths.config), creds) as client:
            client.check_login()
        self.credentials.save(registry, creds)
        return registry

    def logout(self, server: str) -> tuple[str, bool, bool]:
        """The registry, whether credentials of it were removed (False: there were none
        here; a logout then is no failure, as docker's is none), and whether docker's
        config (its auths or credential helpers) still gives some, which pulls use."""
        registry = _registry_of(server)
        removed = self.credentials.remove(registry)
        return registry, removed, self.credentials.get(registry) is not None

    def find(self, text: str) -> Image | None:
        """The local image `text` names, in docker's order: a reference the store has,
        else an image id or a unique prefix of one (`images -q` prints those); None
        when there is none. Raises Conflict for an ambiguous id prefix."""
        try:
            reference: Reference | None = parse_reference(text)
        except UsageError:
            reference = None
        if reference is not None:
            with contextlib.suppress(NotFound):
                return self.store.lookup(reference)
        if not _looks_like_id(text):
            return None
        return self._by_id(text)

    def _by_id(self, text: str) -> Image | None:
        prefix = text.removeprefix("sha256:")
        matches = {i.id: i for i in self.store.all_references() if i.id[7:].startswith(prefix)}
        if len(matches) > 1:
            raise Conflict(f"image id {text!r} is ambiguous: it matches {len(matches)} images",
                           hint="give more characters of the id")
        return next(iter(matches.values()), None)

    # removal ---------------------------------------------------------------------------

    def _image_id(self, manifest_digest: str) -> str | None:
        try:
            return str(self.store.read_json_blob(manifest_digest)["config"]["digest"])
        except (ImageError, KeyError, TypeError):
            return None

    def _keys_of(self, image_id: str) -> list[str]:
        return [k for k, v in self.store.tags().items() if self._image_id(v) == image_id]

    def _resolve(self, text: str) -> tuple[Image, list[str], bool]:
        """The image `text` names (an id prefix, else a reference), the store keys to
        untag, and whether it was named by id."""
        if _looks_like_id(text):
            image = self._by_id(text)
            if image is not None:
                return image, self._keys_of(image.id), True
        ref = parse_reference(text)
        if str(ref) not in self.store.tags():
            raise NotFound(f"no such image: {text}")
        image = self.store.lookup(ref)
        keys = [str(ref)]
        same_name = [k for k in self._keys_of(image.id) if parse_reference(k).name == ref.name]
        if not any("@" not in k and k != str(ref) for k in same_name):
            keys += [k for k in same_name if "@" in k and k != str(ref)]
        return image, keys, False

    def remove(self, names: Iterable[str], force: bool) -> Removal:
        """docker rmi: untag; delete an image once no tag is left (boxes' bases are kept)."""
        done = Removal()
        for text in names:
            image, keys, by_id = self._resolve(text)
            users = self.boxes_using().get(image.id, [])
            # (docker's: a name of several is only untagged, whoever uses the image)
            others = [k for k in self._keys_of(image.id) if k not in keys]
            if users and not force and (by_id or not others):
                raise Conflict(f"unable to remove {text}: box {users[0]} uses image "
                               f"{image.id[7:19]}",
                               hint="remove the box first (boxlite rm), or use rmi -f")
            # (docker's: by id, only an image of one repository and at most one tag)
            tags = [k for k in keys if "@" not in k]
            if by_id and not force and (
                    len(tags) > 1 or len({parse_reference(k).name for k in keys}) > 1):
                raise Conflict(f"unable to delete {text} (must be forced): the image is "
                               "referenced in several repositories or tags",
                               hint="remove it by reference, or use rmi -f")
            if users and not others:  # (a box's image stays, untagged: name@digest, as
                # docker's <none>; image prune takes it once no box uses it)
                kept = Reference(image.reference.registry, image.reference.repository, None,
                                 image.manifest_digest)
                keys = [k for k in keys if k != str(kept)]
                if not keys:
                    raise Conflict(f"unable to remove {text}: box {users[0]} uses image "
                                   f"{image.id[7:19]}, which has no name left",
                                   hint="remove the box first (boxlite rm)")
                self.store.tag(kept, image.manifest_digest)
            self.store.untag(keys)
            done.untagged += _untagged(keys)
            if not self._keys_of(image.id) and not users:
                done.deleted.append(image.id)
        done.freed = self.store.collect_garbage(set(self.boxes_using()))
        return done

    def load(self, source: Path | IO[bytes], what: str = "standard input") -> LoadResult:
        """docker load, from an archive or layout at `source`, or a stream of one. When it
        fails, the blobs it wrote that no image needs are deleted again."""
        from boxlite_cli.oci.archive import load_archive, load_stream

        try:
            if isinstance(source, Path):
                return load_archive(self.store, source)
            return load_stream(self.store, source, what)
        except BaseException:
            with contextlib.suppress(ImageError, OSError):
                self.store.collect_garbage(set(self.boxes_using()))
            raise

    def pushable(self, name: str) -> tuple[Reference, Image]:
        """The name and image `push` would send; UsageError or NotFound when none."""
        reference = parse_reference(name)
        if reference.digest:
            raise UsageError(f"cannot push {name}: push an image by its tag",
                             hint=f"tag it first: boxlite tag {name} NAME:TAG")
        if str(reference) not in self.store.tags():
            raise NotFound(f"no such image: {reference.short}",
                           hint="see boxlite images; tag an image with this name first")
        return reference, self.store.lookup(reference)

    def push(self, name: str, report: Callable[[str, bool], None] = lambda _d, _e: None
             ) -> PushResult:
        """docker push: the image `name` (a tag of the store) to its registry, under that
        tag: each blob the repository lacks, then the manifest as it is here (its digest
        kept). `report(digest, existed)` hears of each blob."""
        reference, image = self.pushable(name)
        raw = self.store.blob_path(image.manifest_digest).read_bytes()
        blobs = [(str(d["digest"]), int(d["size"]))
                 for d in [*image.manifest.get("layers", []), image.manifest["config"]]]
        with self.client(reference.registry) as client:
            for digest, size in blobs:
                if client.has_blob(reference.repository, digest):
                    report(digest, True)
                    continue
                path = self.store.blob_path(digest)
                if not path.is_file():
                    raise ImageError(f"blob {digest} of {reference.short} is missing here",
                                     hint=f"pull {reference.short} again")
                client.upload_blob(reference.repository, digest, size, partial(_chunks, path))
                report(digest, False)
            media_type = str(image.manifest.get("mediaType") or OCI_MANIFEST)
            client.put_manifest(reference.repository, reference.tag or "latest", raw, media_type)
        # (docker's RepoDigests: where the image now is, by digest)
        self.store.tag(Reference(reference.registry, reference.repository, None,
                                 image.manifest_digest), image.manifest_digest)
        return PushResult(reference, image.manifest_digest, len(raw))

    def to_save(self, names: Iterable[str]) -> list[Saved]:
        """The images `names` name (references or ids), each manifest once with all the
        names it was given (none when given by id), in the order given; NotFound names
        the first that is not here."""
        from boxlite_cli.oci.save import Saved

        wanted: dict[str, tuple[Image, list[Reference]]] = {}
        for text in names:
            image = self.find(text)
            if image is None:
                raise NotFound(f"no such image: {text}", hint="see boxlite images")
            # (found by a name the store has, or by id: then it is saved without one)
            try:
                named = image.reference == parse_reference(text)
            except UsageError:
                named = False
            # (by manifest: two names of one config may have two manifests, each its
            # layers' digests, which a name's repo digest is of)
            _, given = wanted.setdefault(image.manifest_digest, (image, []))
            if named and image.reference not in given:
                given.append(image.reference)
        return [Saved(image, tuple(given)) for image, given in wanted.values()]

    def save(self, names: Iterable[str], out: IO[bytes]) -> None:
        """docker save: the images `names` name, as one tar written to `out`."""
        from boxlite_cli.oci.save import save

        save(self.store, self.to_save(names), out)

    def prune(self, all_unused: bool) -> Removal:
        """Remove unused data: the dangling images no box uses (no tag of theirs is
        left: a tag that moved to a newer pull, or one pulled by digest alone), as
        docker's image prune; with `all_unused`, every image no box uses. The partial
        downloads of failed pulls go too."""
        done = Removal()
        used = set(self.boxes_using())
        keys = self.store.tags()
        tagged = {manifest for key, manifest in keys.items() if "@" not in key}
        for key, manifest in keys.items():
            if not all_unused and ("@" not in key or manifest in tagged):
                continue
            image_id = self._image_id(manifest)
            if image_id not in used:
                self.store.untag([key])
                done.untagged += _untagged([key])
                if image_id and image_id not in done.deleted:
                    done.deleted.append(image_id)
        done.freed = self.store.collect_garbage(set(self.boxes_using()), partials=True)
        return done


def _untagged(keys: Iterable[str]) -> list[str]:
    """What docker's `Untagged:` lines name for these store keys: not an unnamed image's."""
    return [ref.short for ref in map(parse_reference, keys) if not ref.unnamed]


def _looks_like_id(text: str) -> bool:
    hexpart = text.removeprefix("sha256:")
    return 4 <= len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart)


def is_whole_id(text: str) -> bool:
    """A whole image id (`sha256:` and 64 hex digits, or the digits alone): never a
    name to pull (docker refuses 64-hex repository names too)."""
    return _looks_like_id(text) and len(text.removeprefix("sha256:")) == 64


def refuse_id_name(reference: Reference, text: str) -> None:
    """UsageError for a name to give an image that reads as an image id (docker's
    "cannot specify 64-byte hexadecimal strings")."""
    if is_whole_id(reference.repository.rpartition("/")[2]) or is_whole_id(reference.tag or ""):
        raise UsageError(f"invalid name {text!r}: a 64-digit hexadecimal name reads as an "
                         "image id", hint="name the image otherwise")


def check_pull_policy(policy: str) -> str:
    if policy not in PULL_POLICIES:
        raise UsageError(f"invalid --pull {policy!r}: expected one of {', '.join(PULL_POLICIES)}")
    return policy
