"""Pure logic of pulls: auth challenges, insecure hosts, settings, credentials, media types."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from boxlite_cli.errors import AuthError, ImageError, UsageError
from boxlite_cli.oci.credentials import Credentials, CredentialStore, normalize_registry
from boxlite_cli.oci.mediatypes import (
    OCI_INDEX,
    OCI_MANIFEST,
    check_config,
    check_manifest,
    choose_platform,
    document_kind,
    parse_json_document,
)
from boxlite_cli.oci.registry import RegistryClient, is_insecure, parse_challenge
from boxlite_cli.state.settings import RegistrySettings, registry_settings

DIGEST = "sha256:" + "a" * 64
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST, "size": 10}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": DIGEST, "size": 5}


def test_bearer_challenge_is_parsed_with_quotes_and_commas() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg,istry",scope="repository:a/b:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "reg,istry",
                      "scope": "repository:a/b:pull"}
    assert parse_challenge('Basic realm="x"')[0] == "basic"


@pytest.mark.parametrize(("registry", "insecure"), [
    ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.9.9.9", True), ("[::1]:5000", True),
    ("docker.io", False), ("registry.example:5000", False), ("10.0.0.1:5000", False),
])
def test_only_loopback_registries_are_insecure_by_default(registry: str, insecure: bool) -> None:
    assert is_insecure(registry, RegistrySettings()) is insecure


def test_insecure_registries_come_from_config_and_environment(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text(
        'insecure_registries = ["a.lan:5000"]\n[registry]\ntimeout = 5\nretries = 1\n')
    monkeypatch.setenv("BOXLITE_INSECURE_REGISTRIES", "b.lan, c.lan:1")
    settings = registry_settings(tmp_path)
    assert settings.insecure == {"a.lan:5000", "b.lan", "c.lan:1"}
    assert (settings.timeout_s, settings.retries) == (5.0, 1)
    assert is_insecure("b.lan", settings)
    monkeypatch.setenv("BOXLITE_REGISTRY_RETRIES", "-1")
    with pytest.raises(UsageError, match="at least 0"):
        registry_settings(tmp_path)


@pytest.mark.parametrize(("text", "says", "hint"), [
    ('insecure-registries = ["a.lan"]\n', "unknown setting 'insecure-registries'",
     "did you mean insecure_registries?"),  # (docker's daemon.json spelling)
    ('vmmm = "qemu"\n', "unknown setting 'vmmm'", "its keys: insecure_registries, vmm, registry"),
    ("[registry]\ntimeuot = 5\n", "unknown setting registry.'timeuot'",
     "its keys: registry.timeout, registry.retries"),
])
def test_a_setting_the_config_file_does_not_know_is_refused_naming_the_file(
        tmp_path: Path, text: str, says: str, hint: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(UsageError) as e:
        registry_settings(tmp_path)
    assert e.value.message == f"{tmp_path}/config.toml: {says}"
    assert e.value.hint == hint


def test_a_broken_config_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("insecure_registries = [")
    with pytest.raises(UsageError, match="cannot read"):
        registry_settings(tmp_path)
    (tmp_path / "config.toml").unlink()
    (tmp_path / "config.toml").mkdir()  # there, but not readable as a file
    with pytest.raises(UsageError, match="cannot read"):
        registry_settings(tmp_path)


@pytest.mark.parametrize(("server", "registry"), [
    ("https://index.docker.io/v1/", "docker.io"), ("index.docker.io", "docker.io"),
    ("http://Reg.Example:5000/v2/", "reg.example:5000"), ("docker.io", "docker.io"),
])
def test_registry_names_are_normalized(server: str, registry: str) -> None:
    assert normalize_registry(server) == registry


def test_login_credentials_are_saved_0600_and_win_over_docker_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(b"dockeruser:dockerpass").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": auth}, "reg.lan:5000": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    store = CredentialStore(tmp_path)
    assert store.get("docker.io") == Credentials("dockeruser", "dockerpass")
    store.save("reg.lan:5000", Credentials("me", "secret:with:colons"))
    assert stat.S_IMODE(os.stat(tmp_path / "auth.json").st_mode) == 0o600
    assert store.get("reg.lan:5000") == Credentials("me", "secret:with:colons")
    assert "secret" not in repr(store.get("reg.lan:5000"))
    assert store.remove("reg.lan:5000") is True
    assert store.get("reg.lan:5000") == Credentials("dockeruser", "dockerpass")
    assert store.remove("reg.lan:5000") is False


def test_docker_credential_helpers_are_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text('#!/bin/sh\nread server\n[ "$server" = "reg.lan" ] || exit 1\n'
                      'echo \'{"ServerURL":"reg.lan","Username":"u","Secret":"s"}\'\n')
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"reg.lan": "fake"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    store = CredentialStore(tmp_path / "cfg")
    assert store.get("reg.lan") == Credentials("u", "s")
    assert store.get("other.lan") is None


def test_a_failing_credential_helper_or_entry_is_said_where_a_login_is_needed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docker says "error getting credentials"; a pull here was told only "requires a
    login", while the user is logged in through the helper."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker-credential-broken").write_text("#!/bin/sh\necho 'helper crashed' >&2\nexit 3\n")
    (bindir / "docker-credential-empty").write_text(
        "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n")
    for helper in bindir.iterdir():
        helper.chmod(0o755)
    (tmp_path / "config.json").write_text(json.dumps({
        "credHelpers": {"broken.lan": "broken", "empty.lan": "empty", "gone.lan": "gone"},
        "auths": {"bad64.lan": {"auth": "%%%"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    store = CredentialStore(tmp_path / "cfg")
    assert store.lookup("broken.lan") == (None, "the credential helper docker-credential-broken "
                                                "failed (exit status 3: helper crashed)")
    assert store.lookup("empty.lan") == (None, None)  # (none saved: no failure)
    gone = store.lookup("gone.lan")[1]
    assert gone is not None and gone.startswith("the credential helper docker-credential-gone "
                                                "cannot run (")
    assert store.lookup("bad64.lan") == (
        None, f"the entry for bad64.lan in {tmp_path / 'config.json'} cannot be read")
    assert store.lookup("other.lan") == (None, None)
    client = RegistryClient("broken.lan", RegistrySettings(),
                            credentials_problem=store.lookup("broken.lan")[1])
    assert client._login_hint() == ("no credentials: the credential helper docker-credential-"
                                    "broken failed (exit status 3: helper crashed); fix that, "
                                    "or run: boxlite login broken.lan")
    client.close()


def test_manifest_kinds_and_schema1_rejection() -> None:
    assert document_kind({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}, None) == "index"
    assert document_kind({"schemaVersion": 2, "layers": []}, OCI_MANIFEST) == "manifest"
    with pytest.raises(ImageError, match="schema 1"):
        document_kind({"schemaVersion": 1, "fsLayers": []}, None)
    with pytest.raises(ImageError, match="unsupported manifest media type"):
        document_kind({"schemaVersion": 2, "mediaType": "application/vnd.cncf.helm"}, None)
    with pytest.raises(ImageError, match="not valid JSON"):
        parse_json_document(b"{nope", "manifest")


def test_manifest_checks_reject_bad_descriptors_and_non_images() -> None:
    good = {"schemaVersion": 2, "config": CONFIG, "layers": [LAYER]}
    assert check_manifest(good) is good
    for bad, message in [
        ({**good, "layers": [{**LAYER, "digest": "sha256:../../x"}]}, "unsupported digest"),
        ({**good, "layers": [{**LAYER, "size": -1}]}, "invalid size"),
        ({**good, "layers": [{**LAYER, "mediaType": "application/wasm"}]}, "unsupported layer"),
        ({**good, "config": {**CONFIG, "mediaType": "application/vnd.cncf.helm.config.v1+json"}},
         "not a container image"),
        ({**good, "layers": "x"}, "not a list"),
    ]:
        with pytest.raises(ImageError, match=message):
            check_manifest(bad)


def test_index_resolves_to_linux_amd64_or_names_what_it_has() -> None:
    def entry(arch: str, os_: str = "linux") -> dict[str, object]:
        hexchar = {"arm64": "1", "unknown": "2", "amd64": "3"}[arch]
        return {"mediaType": OCI_MANIFEST, "digest": "sha256:" + hexchar * 64, "size": 1,
                "platform": {"os": os_, "architecture": arch}}

    index = {"manifests": [entry("arm64"), entry("unknown", "unknown"), entry("amd64")]}
    assert choose_platform(index)["digest"] == "sha256:" + "3" * 64
    with pytest.raises(ImageError, match=r"no linux/amd64 image .*linux/arm64"):
        choose_platform({"manifests": [entry("arm64")]})
    with pytest.raises(ImageError, match="linux/arm64"):
        check_config({"os": "linux", "architecture": "arm64"})
    check_config({"os": "linux", "architecture": "amd64"})


def test_an_index_entry_without_a_platform_is_taken_when_none_names_linux_amd64() -> None:
    unnamed = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "4" * 64, "size": 1}
    nested = {"mediaType": OCI_INDEX, "digest": "sha256:" + "5" * 64, "size": 1}
    amd64 = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "6" * 64, "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}}
    assert choose_platform({"manifests": [nested, unnamed]}) == unnamed
    assert choose_platform({"manifests": [unnamed, amd64]}) == amd64  # a named one first
    assert choose_platform({"manifests": [nested]}) == nested  # walked into, as containerd does
    arm = {**nested, "platform": {"os": "linux", "architecture": "arm64"}}
    with pytest.raises(ImageError, match=r"no linux/amd64 image in this index \(it has "
                                         r"linux/arm64\)"):
        choose_platform({"manifests": [arm]})


def test_of_several_linux_amd64_entries_the_baseline_cpus_is_taken() -> None:
    def amd64(hexchar: str, variant: str | None) -> dict[str, object]:
        platform = {"os": "linux", "architecture": "amd64"}
        if variant is not None:
            platform["variant"] = variant
        return {"mediaType": OCI_MANIFEST, "digest": "sha256:" + hexchar * 64, "size": 1,
                "platform": platform}

    v3, plain, v2 = amd64("7", "v3"), amd64("8", None), amd64("9", "v2")
    assert choose_platform({"manifests": [v3, plain, v2]}) == plain  # not the first listed
    assert choose_platform({"manifests": [v3, v2]}) == v2
    assert choose_platform({"manifests": [amd64("a", "weird"), v3]}) == v3


class OneManifest:
    """A registry client that has one manifest, and says it has another digest."""

    def __init__(self, raw: bytes, advertised: str | None) -> None:
        self.raw, self.advertised = raw, advertised

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str | None]:
        return self.raw, OCI_MANIFEST, self.advertised


def test_a_manifest_by_tag_must_have_the_digest_the_registry_says() -> None:
    import hashlib
    from typing import Any, cast

    from boxlite_cli.oci.pull import Puller
    from boxlite_cli.oci.reference import parse_reference

    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG,
                      "layers": []}).encode()
    lie = "sha256:" + "e" * 64
    puller = Puller(cast(Any, None), cast(Any, OneManifest(raw, lie)))
    with pytest.raises(ImageError) as e:
        puller.pull(parse_reference("localhost:5000/app:1"))
    real = "sha256:" + hashlib.sha256(raw).hexdigest()
    assert str(e.value) == (f"digest mismatch for the manifest of localhost:5000/app:1: the "
                            f"registry says {lie}, what it sent is {real}")


def test_a_page_that_is_not_a_manifest_names_the_registry_and_what_it_sent() -> None:
    """(a proxy's HTML login page was "malformed manifest: not valid JSON (Expecting
    value...)", naming neither the registry nor what came)"""
    from typing import Any, cast

    from boxlite_cli.oci.pull import Puller
    from boxlite_cli.oci.reference import parse_reference

    class Page:
        registry = "reg.lan:5000"

        def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, None]:
            return b"<html>Sign in</html>", "text/html; charset=utf-8", None

    with pytest.raises(ImageError) as e:
        Puller(cast(Any, None), cast(Any, Page())).pull(parse_reference("reg.lan:5000/app:1"))
    assert e.value.message.startswith("malformed manifest: not valid JSON (")
    assert e.value.message.endswith(") from reg.lan:5000 for reg.lan:5000/app:1, it sent "
                                    "text/html")
    assert e.value.hint == "is it a registry (or a proxy's page in between)?"


class HugeLayer:
    """A registry client whose manifest declares a layer larger than any disk; it
    serves the config, and fails the test if asked for the layer."""

    def __init__(self, config: bytes, layer_size: int) -> None:
        import hashlib

        self.config = config
        self.config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        self.raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            **CONFIG, "digest": self.config_digest, "size": len(config)}, "layers": [
            {**LAYER, "size": layer_size}]}).encode()
        self.fetched: list[str] = []

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, None]:
        return self.raw, OCI_MANIFEST, None

    def fetch_blob(self, repository: str, digest: str, ingest: object, progress: object) -> None:
        self.fetched.append(digest)
        assert digest == self.config_digest, "the layer was asked for"
        from boxlite_cli.oci.store import BlobIngest

        assert isinstance(ingest, BlobIngest)
        ingest.write(self.config)
        ingest.commit()


def test_a_pull_the_disk_cannot_hold_is_refused_before_its_layers_are_fetched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(A manifest can declare any size; a registry that sends without end filled the
    disk with a partial blob.)"""
    import shutil
    from typing import Any, cast

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage._replace(free=10**10))

    from boxlite_cli.errors import DiskError
    from boxlite_cli.oci.pull import Puller
    from boxlite_cli.oci.reference import parse_reference
    from boxlite_cli.oci.store import ImageStore

    client = HugeLayer(b'{"architecture": "amd64", "os": "linux"}', 1 << 40)
    store = ImageStore(tmp_path / "images")
    with pytest.raises(DiskError) as e:
        Puller(store, cast(Any, client)).pull(parse_reference("localhost:5000/huge:1"))
    assert str(e.value).startswith("not enough disk space to pull localhost:5000/huge:1: its "
                                   f"layers are {(1 << 40) / 1e6:.1f} MB and 10000.0 MB are free under "
                                   f"{tmp_path / 'images'}")
    assert client.fetched == [client.config_digest]
    assert store.partial_downloads() == []
    assert store.tags() == {}


def test_saved_basic_credentials_the_registry_refuses_are_said_so() -> None:
    """(a changed password was "pull access denied ... the repository may not exist, or
    may need: boxlite login", while the login was there and wrong)"""
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'},
                              json={"errors": [{"code": "UNAUTHORIZED",
                                                "message": "authentication required"}]})

    client = RegistryClient("registry.example", RegistrySettings(),
                            credentials=Credentials("alice", "old"))
    client._http.close()
    client._http = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(AuthError) as e:
        client.get_manifest("team/app", "v1")
    assert e.value.message == ("registry.example refused the credentials of alice: "
                               "UNAUTHORIZED: authentication required")
    assert e.value.hint == "log in again with: boxlite login registry.example"
    with pytest.raises(AuthError, match="refused the credentials of alice"):
        client.has_blob("team/app", "sha256:" + "0" * 64)  # (a push's)
    client.close()
