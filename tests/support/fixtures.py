"""pytest fixtures: registries (plain, basic auth, token auth), a fault proxy, pushed test images.

Import them into a conftest (pytest only honours `pytest_plugins` in the rootdir conftest):

    from tests.support.fixtures import *  # noqa: F403

Registries and pushed images are session-scoped (each image is pushed the first time a test
asks for it); `fault_proxy` is the one session proxy in front of `registry`, with its faults
and counters reset before and after every test. Everything is stopped at session end, and the
registry processes die with the test process in any case (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ociarchive
from tests.support import testimages as ti
from tests.support.faultproxy import FaultProxy
from tests.support.ocibuild import Artifact
from tests.support.ocipush import PushedImage, push
from tests.support.registry import REGISTRY_BIN, Mode, RegistryServer

__all__ = [
    "PUBLIC_REPO", "TEST_PASSWORD", "TEST_USER", "ImageArchives", "arm64_only_image", "auth_busybox_image",
    "auth_registry", "busybox_image", "busybox_variants", "docker_image", "fault_proxy", "fault_proxy_server",
    "hostile_images",
    "image_archives", "manifest_list_image", "mixed_compression_image", "multiarch_image",
    "multilayer_image", "registry", "token_busybox_image", "token_public_image", "token_registry",
    "uncompressed_image", "zstd_image",
]

TEST_USER = "boxlite"
TEST_PASSWORD = "s3cret-test-pass"
PUBLIC_REPO = "public/busybox"


def _start(tmp_path_factory: pytest.TempPathFactory, mode: Mode, **kw: object) -> RegistryServer:
    if shutil.which(REGISTRY_BIN) is None:
        pytest.fail(f"{REGISTRY_BIN} is not installed (Debian packages docker-registry, apache2-utils; "
                    "./dev test installs them)")
    return RegistryServer(tmp_path_factory.mktemp(f"registry-{mode}"), mode, **kw).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Anonymous, plain-HTTP registry; images are referenced as `registry.ref("busybox")`."""
    reg = _start(tmp_path_factory, "plain")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """HTTP basic auth (htpasswd): `TEST_USER` / `TEST_PASSWORD` (also `.credentials`)."""
    reg = _start(tmp_path_factory, "basic", users={TEST_USER: TEST_PASSWORD})
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Token auth; `.token_server.requests` records every token request. `PUBLIC_REPO` is
    readable anonymously; everything else needs `TEST_USER` / `TEST_PASSWORD`."""
    reg = _start(tmp_path_factory, "token", users={TEST_USER: TEST_PASSWORD}, public_repos=[PUBLIC_REPO])
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def fault_proxy_server(registry: RegistryServer) -> Iterator[FaultProxy]:
    """The session's proxy in front of `registry`; tests want `fault_proxy`, which resets it."""
    proxy = FaultProxy.in_front_of(registry).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def fault_proxy(fault_proxy_server: FaultProxy) -> Iterator[FaultProxy]:
    """The proxy in front of `registry`, no faults and no requests recorded at the start.
    Pull `pushed.at(fault_proxy.host)` to go through it."""
    fault_proxy_server.reset()
    yield fault_proxy_server
    fault_proxy_server.reset()


# --- images pushed to the plain registry -------------------------------------------------------------

@pytest.fixture(scope="session")
def busybox_image(registry: RegistryServer) -> PushedImage:
    """`busybox:latest`: Cmd ["sh"], Env PATH + GREETING, user `app` (1000:1000) in /etc/passwd."""
    return push(registry, "busybox", ti.busybox_image())


@pytest.fixture(scope="session")
def busybox_variants(registry: RegistryServer) -> dict[str, PushedImage]:
    """`busybox:<variant>` for each of `testimages.BUSYBOX_CONFIGS` (entrypoint, user, uidgid, workdir...)."""
    return {v: push(registry, "busybox", ti.busybox_image(v), tag=v)  # type: ignore[arg-type]
            for v in ti.BUSYBOX_CONFIGS}


@pytest.fixture(scope="session")
def multilayer_image(registry: RegistryServer) -> PushedImage:
    """Whiteouts, opaque dir, hard links, symlinks, setuid, uid 1000, xattr: see `MULTILAYER_EXPECT`."""
    return push(registry, "multilayer", ti.multilayer_image())


@pytest.fixture(scope="session")
def zstd_image(registry: RegistryServer) -> PushedImage:
    return push(registry, "zstd", ti.zstd_image())


@pytest.fixture(scope="session")
def uncompressed_image(registry: RegistryServer) -> PushedImage:
    return push(registry, "uncompressed", ti.uncompressed_image())


@pytest.fixture(scope="session")
def mixed_compression_image(registry: RegistryServer) -> PushedImage:
    return push(registry, "mixed", ti.mixed_compression_image())


@pytest.fixture(scope="session")
def docker_image(registry: RegistryServer) -> PushedImage:
    """Docker schema2 media types throughout."""
    return push(registry, "docker-schema2", ti.docker_image())


@pytest.fixture(scope="session")
def multiarch_image(registry: RegistryServer) -> PushedImage:
    """OCI index: linux/arm64, an unknown/unknown attestation, linux/amd64 (/etc/arch = amd64)."""
    return push(registry, "multiarch", ti.multiarch_index("oci"))


@pytest.fixture(scope="session")
def manifest_list_image(registry: RegistryServer) -> PushedImage:
    """The same as `multiarch_image` as a docker manifest list."""
    return push(registry, "multiarch-docker", ti.multiarch_index("docker"))


@pytest.fixture(scope="session")
def arm64_only_image(registry: RegistryServer) -> PushedImage:
    """An index with linux/arm64 only: pulling it on amd64 must fail clearly."""
    return push(registry, "arm64-only", ti.arm64_only_index())


@pytest.fixture(scope="session")
def hostile_images(registry: RegistryServer) -> dict[str, PushedImage]:
    """`hostile:<kind>` for each of `testimages.HOSTILE_KINDS`."""
    return {k: push(registry, "hostile", ti.hostile_image(k), tag=k.replace("_", "-"))
            for k in ti.HOSTILE_KINDS}


# --- images behind authentication --------------------------------------------------------------------

@pytest.fixture(scope="session")
def auth_busybox_image(auth_registry: RegistryServer) -> PushedImage:
    return push(auth_registry, "private/busybox", ti.busybox_image())


@pytest.fixture(scope="session")
def token_busybox_image(token_registry: RegistryServer) -> PushedImage:
    """Private on the token registry: pulling needs `TEST_USER` / `TEST_PASSWORD`."""
    return push(token_registry, "private/busybox", ti.busybox_image())


@pytest.fixture(scope="session")
def token_public_image(token_registry: RegistryServer) -> PushedImage:
    """`PUBLIC_REPO` on the token registry: anonymous pull gets a token, no credentials needed."""
    return push(token_registry, PUBLIC_REPO, ti.busybox_image())


# --- archives for `boxlite load -i` ----------------------------------------------------------------

@dataclass(frozen=True)
class ImageArchives:
    """The same images as files. Names: `busybox:latest` (busybox), `multilayer:latest`; the OCI
    layouts also hold `multiarch:latest` (an index). `*_digest`: manifest digests in the OCI layouts
    (docker-save OCI stores its layers uncompressed, so its manifests differ); `*_id`: config
    digests, the same in every format (docker's image ID)."""

    docker_save_legacy: Path
    docker_save_oci: Path
    oci_layout_dir: Path
    oci_layout_tar: Path
    busybox_digest: str
    multilayer_digest: str
    multiarch_digest: str
    busybox_id: str
    multilayer_id: str


@pytest.fixture(scope="session")
def image_archives(tmp_path_factory: pytest.TempPathFactory) -> ImageArchives:
    root = tmp_path_factory.mktemp("image-archives")
    busybox, multilayer, multiarch = ti.busybox_image(), ti.multilayer_image(), ti.multiarch_index()
    saved = {"busybox:latest": busybox, "multilayer:latest": multilayer}
    layout: dict[str, Artifact] = {**saved, "multiarch:latest": multiarch}
    return ImageArchives(
        docker_save_legacy=ociarchive.write_docker_save(root / "docker-save-legacy.tar", saved, "legacy"),
        docker_save_oci=ociarchive.write_docker_save(root / "docker-save-oci.tar", saved, "oci"),
        oci_layout_dir=ociarchive.write_oci_layout(root / "oci-layout", layout),
        oci_layout_tar=ociarchive.write_oci_layout_tar(root / "oci-layout.tar", layout),
        busybox_digest=busybox.digest, multilayer_digest=multilayer.digest, multiarch_digest=multiarch.digest,
        busybox_id=busybox.config_blob.digest, multilayer_id=multilayer.config_blob.digest,
    )
