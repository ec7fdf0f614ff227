"""The catalogue of images the pull/load tests use, as `ocibuild` descriptions (nothing pushed).

Every runnable image starts from `busybox_layer()`: the host's static busybox with applet
symlinks, `/etc/passwd` + `/etc/group` with user `app` (uid/gid 1000, home /home/app).
What each image must look like once unpacked is stated next to it (`MULTILAYER_EXPECT`,
`HOSTILE_ESCAPES`, the `/etc/arch` marker of the multi-arch images).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from tests.support.ocibuild import (
    DEFAULT_PATH,
    MT_IN_TOTO,
    MT_OCI_LAYER_GZIP,
    Compression,
    Entry,
    Image,
    Index,
    Layer,
    Schema,
    directory,
    file,
    hardlink,
    opaque,
    sha256_digest,
    symlink,
    whiteout,
)

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ash", "echo", "cat", "ls", "id", "wc", "sha256sum", "md5sum", "sleep", "env", "pwd",
           "true", "false", "test", "[", "printf", "mkdir", "rm", "rmdir", "touch", "cp", "mv", "ln",
           "chmod", "chown", "stat", "head", "tail", "grep", "sed", "awk", "tr", "cut", "sort", "uniq",
           "tee", "dd", "find", "xargs", "readlink", "realpath", "basename", "dirname", "uname",
           "whoami", "hostname", "ps", "kill", "date", "df", "du", "mount", "nproc", "seq", "yes",
           "timeout", "wget", "nc", "getopt", "expr", "base64", "od", "hexdump", "tar", "gzip",
           "vi", "less", "which", "su", "sync", "xxd")
APP_UID = APP_GID = 1000
BUSYBOX_ENV = (f"PATH={DEFAULT_PATH}", "GREETING=hello from the image")
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"


def static_busybox() -> bytes:
    """The host's busybox, which must be statically linked (Debian package busybox-static)."""
    data = BUSYBOX.read_bytes()
    if _has_interpreter(data):
        raise RuntimeError(f"{BUSYBOX} is dynamically linked; install busybox-static")
    return data


def _has_interpreter(elf: bytes) -> bool:
    """True when the ELF64 file has a PT_INTERP program header (is dynamically linked)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise RuntimeError(f"{BUSYBOX} is not an ELF64 executable")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def busybox_entries() -> list[Entry]:
    return [
        directory("bin"), directory("etc"), directory("home"),
        directory("home/app", uid=APP_UID, gid=APP_GID), directory("root", 0o700),
        directory("tmp", 0o1777), directory("proc"), directory("sys"), directory("dev"),
        directory("usr"), directory("usr/bin"), directory("usr/local"), directory("usr/local/bin"),
        directory("var"), directory("var/tmp", 0o1777),
        file("bin/busybox", static_busybox(), 0o755),
        *[symlink(f"bin/{a}", "busybox") for a in sorted(set(APPLETS))],
        file("etc/passwd", PASSWD), file("etc/group", GROUP),
        file("etc/os-release", 'ID=boxlite-test\nNAME="boxlite test busybox"\n'),
    ]


@cache
def busybox_layer(compression: Compression = "gzip", prefix: str = "") -> Layer:
    return Layer.of(busybox_entries(), compression, prefix)


def marker_layer(path: str, content: str, compression: Compression = "gzip") -> Layer:
    parent = path.rpartition("/")[0]
    return Layer.of([directory(parent), file(path, content)] if parent else [file(path, content)],
                    compression)


# --- busybox and its config variants ----------------------------------------------------------------

BusyboxVariant = Literal["default", "entrypoint", "user", "uidgid", "workdir"]
BUSYBOX_CONFIGS: dict[str, dict[str, Any]] = {
    # `run IMAGE` -> sh; `run IMAGE echo hi` -> echo hi
    "default": {"Env": list(BUSYBOX_ENV), "Cmd": ["sh"]},
    # `run IMAGE` prints "entrypoint: default-arg"; `run IMAGE x` prints "entrypoint: x"
    "entrypoint": {"Env": list(BUSYBOX_ENV), "Entrypoint": ["/bin/echo", "entrypoint:"],
                   "Cmd": ["default-arg"]},
    # `run IMAGE id -u` -> 1000; pwd -> /home/app
    "user": {"Env": list(BUSYBOX_ENV), "Cmd": ["sh"], "User": "app", "WorkingDir": "/home/app"},
    "uidgid": {"Env": list(BUSYBOX_ENV), "Cmd": ["sh"], "User": "1000:1000"},
    # the WorkingDir is not in the layer: the runtime creates it, as docker does
    "workdir": {"Env": [*BUSYBOX_ENV, "EXTRA=from-config"], "Cmd": ["pwd"], "WorkingDir": "/srv/work"},
}


def busybox_image(variant: BusyboxVariant = "default", schema: Schema = "oci",
                  compression: Compression = "gzip") -> Image:
    return Image((busybox_layer(compression),), BUSYBOX_CONFIGS[variant], schema=schema)


def zstd_image() -> Image:
    """Busybox with a zstd layer (`...tar+zstd`); /etc/compression says "zstd"."""
    return Image((busybox_layer("zstd"), marker_layer("etc/compression", "zstd\n", "zstd")),
                 BUSYBOX_CONFIGS["default"])


def uncompressed_image() -> Image:
    """Busybox as plain tar layers (`...tar`), member names written with a `./` prefix."""
    return Image((busybox_layer("none", "./"), marker_layer("etc/compression", "none\n", "none")),
                 BUSYBOX_CONFIGS["default"])


def mixed_compression_image() -> Image:
    """One gzip, one zstd and one plain layer; /etc/layers has three lines."""
    return Image((busybox_layer(), marker_layer("etc/layers", "gzip\n", "gzip"),
                  Layer.of([file("etc/layers", "gzip\nzstd\n")], "zstd"),
                  Layer.of([file("etc/layers", "gzip\nzstd\nnone\n")], "none")),
                 BUSYBOX_CONFIGS["default"])


def docker_image(compression: Compression = "gzip") -> Image:
    """Docker schema2 media types (manifest, config, layers)."""
    return Image((busybox_layer(compression),), BUSYBOX_CONFIGS["default"], schema="docker")


# --- whiteouts, links, modes, owners, xattrs --------------------------------------------------------

LONG_NAME = "data/" + "l" * 150 + ".txt"


@dataclass(frozen=True)
class Expect:
    files: Mapping[str, str] = field(default_factory=dict)  # path -> content
    absent: tuple[str, ...] = ()
    symlinks: Mapping[str, str] = field(default_factory=dict)  # path -> target
    modes: Mapping[str, int] = field(default_factory=dict)  # path -> permission bits incl. suid
    owners: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    hardlinks: tuple[tuple[str, str], ...] = ()  # pairs that share one inode
    xattrs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


MULTILAYER_EXPECT = Expect(
    files={"/data/keep.txt": "keep\n", "/replaced.txt": "v2\n", "/opaque/new.txt": "new\n",
           "/links/orig.txt": "hard\n", "/links/hard.txt": "hard\n", "/home/app/owned.txt": "owned\n",
           "/data/xattr.txt": "xattr\n", "/" + LONG_NAME: "long\n",
           "/data/unicode-\u00fc\u00f1\u00ef.txt": "u\n",
           "/data/empty.txt": "", "/data/exec.sh": "#!/bin/sh\necho exec-ok\n"},
    absent=("/data/remove-me.txt", "/data/dir-to-remove", "/opaque/old-a.txt", "/opaque/sub",
            "/data/.wh.remove-me.txt", "/opaque/.wh..wh..opq"),
    symlinks={"/links/rel": "orig.txt", "/links/abs": "/links/orig.txt", "/links/dirlink": "../data",
              "/links/dangling": "/nonexistent"},
    modes={"/usr/local/bin/suid": 0o4755, "/usr/local/bin/sgid": 0o2755, "/home/app/owned.txt": 0o640,
           "/home/app/private": 0o700, "/data/exec.sh": 0o755, "/tmp": 0o1777},
    owners={"/home/app/owned.txt": (APP_UID, APP_GID), "/home/app/private": (APP_UID, APP_GID),
            "/usr/local/bin/suid": (0, 0)},
    hardlinks=(("/links/orig.txt", "/links/hard.txt"),),
    xattrs={"/data/xattr.txt": {"user.test": "hello-xattr"}},
)


def multilayer_image(compression: Compression = "gzip") -> Image:
    """Three layers: busybox; a lower layer; an upper one that deletes, hides and adds.

    Unpacked, it must match `MULTILAYER_EXPECT`.
    """
    lower = Layer.of([
        directory("data"), file("data/keep.txt", "keep\n"), file("data/remove-me.txt", "gone\n"),
        directory("data/dir-to-remove"), file("data/dir-to-remove/inner.txt", "inner\n"),
        directory("opaque"), file("opaque/old-a.txt", "old\n"), directory("opaque/sub"),
        file("opaque/sub/old-b.txt", "old\n"), file("replaced.txt", "v1\n"),
    ], compression)
    upper = Layer.of([
        whiteout("data/remove-me.txt"), whiteout("data/dir-to-remove"),
        directory("opaque"), opaque("opaque"), file("opaque/new.txt", "new\n"),
        file("replaced.txt", "v2\n"),
        directory("links"), file("links/orig.txt", "hard\n"), hardlink("links/hard.txt", "links/orig.txt"),
        symlink("links/rel", "orig.txt"), symlink("links/abs", "/links/orig.txt"),
        symlink("links/dirlink", "../data"), symlink("links/dangling", "/nonexistent"),
        file("usr/local/bin/suid", "#!/bin/sh\necho suid\n", 0o4755),
        file("usr/local/bin/sgid", "#!/bin/sh\necho sgid\n", 0o2755),
        file("home/app/owned.txt", "owned\n", 0o640, APP_UID, APP_GID),
        directory("home/app/private", 0o700, APP_UID, APP_GID),
        file("data/xattr.txt", "xattr\n", xattrs={"user.test": "hello-xattr"}),
        file(LONG_NAME, "long\n"), file("data/unicode-\u00fc\u00f1\u00ef.txt", "u\n"),
        file("data/empty.txt", ""), file("data/exec.sh", "#!/bin/sh\necho exec-ok\n", 0o755),
    ], compression)
    return Image((busybox_layer(compression), lower, upper), BUSYBOX_CONFIGS["default"])


# --- multi-platform ------------------------------------------------------------------------------

def arch_image(arch: str, schema: Schema = "oci") -> Image:
    """linux/`arch`; /etc/arch holds the arch name. Only amd64 has a runnable busybox."""
    layers = (busybox_layer(), marker_layer("etc/arch", f"{arch}\n")) if arch == "amd64" else (
        marker_layer("etc/arch", f"{arch}\n"),)
    return Image(layers, BUSYBOX_CONFIGS["default"], architecture=arch,
                 variant="v8" if arch == "arm64" else None, schema=schema)


def attestation_image(subject: Image) -> Image:
    """What buildx adds to an index: an `unknown/unknown` manifest of in-toto statements."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1",
                            "predicateType": "https://spdx.dev/Document",
                            "subject": [{"name": "_", "digest": {"sha256": subject.digest[7:]}}],
                            "predicate": {}}).encode()
    layer = Layer(statement, "none", media_type=MT_IN_TOTO,
                  annotations={"in-toto.io/predicate-type": "https://spdx.dev/Document"})
    return Image((layer,), {}, architecture="unknown", os="unknown",
                 index_annotations={"vnd.docker.reference.digest": subject.digest,
                                    "vnd.docker.reference.type": "attestation-manifest"})


def multiarch_index(schema: Schema = "oci") -> Index:
    """linux/arm64 (first), an attestation, linux/amd64: a client must pick amd64 here."""
    amd64 = arch_image("amd64", schema)
    return Index((arch_image("arm64", schema), attestation_image(amd64), amd64), schema)


def arm64_only_index(schema: Schema = "oci") -> Index:
    return Index((arch_image("arm64", schema),), schema)


# --- hostile images --------------------------------------------------------------------------------

# Paths that must NOT exist after unpacking the image: relative ones are relative to the unpack
# directory (its parents), absolute ones are host paths.
HOSTILE_ESCAPES: dict[str, tuple[str, ...]] = {
    "dotdot": ("../escape-dotdot", "../../escape-dotdot-deep"),
    "absolute": ("/tmp/boxlite-escape-absolute",),
    "symlink_parent": ("/tmp/boxlite-pwned-symlink",),
    "symlink_parent_cross_layer": ("/tmp/boxlite-pwned-cross-layer",),
    "hardlink_escape": (),  # links to files outside: must not expose /etc/passwd of the host
}


def _hostile_layers(kind: str) -> tuple[Layer, ...]:
    if kind == "dotdot":
        return (Layer.of([file("../escape-dotdot", "x\n"), file("bin/../../../escape-dotdot-deep", "x\n")]),)
    if kind == "absolute":
        return (Layer.of([file("/tmp/boxlite-escape-absolute", "x\n")]),)
    if kind == "symlink_parent":
        return (Layer.of([directory("evil"), symlink("evil/link", "/tmp"),
                          file("evil/link/boxlite-pwned-symlink", "pwned\n")]),)
    if kind == "symlink_parent_cross_layer":
        return (Layer.of([symlink("sneaky", "/tmp")]),
                Layer.of([file("sneaky/boxlite-pwned-cross-layer", "pwned\n")]))
    if kind == "hardlink_escape":
        return (Layer.of([hardlink("evil-hard-rel", "../../../../etc/passwd"),
                          hardlink("evil-hard-abs", "/etc/passwd")]),)
    raise KeyError(kind)


HOSTILE_KINDS = (*HOSTILE_ESCAPES, "diff_id_mismatch", "not_gzip", "wrong_size",
                 "unknown_layer_type")


def hostile_image(kind: str) -> Image:
    """Busybox plus one hostile layer (or a lying manifest/config); see `HOSTILE_KINDS`.

    `diff_id_mismatch`: the config's diff_id is not the layer's; `wrong_size`: the manifest
    declares half the layer's real size; `unknown_layer_type`: a layer media type nobody knows;
    `not_gzip`: a "tar+gzip" layer that is no gzip stream (its digest and size are right).
    """
    base = busybox_image()
    extra = Layer.of([file("etc/hostile", f"{kind}\n")])
    if kind == "diff_id_mismatch":
        return base.replace(layers=(*base.layers, extra),
                            diff_ids=(base.layers[0].diff_id, sha256_digest(b"not the layer")))
    if kind == "wrong_size":
        lie = Layer(extra.tar, declared_size=len(extra.compressed) // 2)
        return base.replace(layers=(*base.layers, lie))
    if kind == "not_gzip":
        return base.replace(layers=(*base.layers, Layer(b"garbage, not gzip", "none",
                                                        media_type=MT_OCI_LAYER_GZIP)))
    if kind == "unknown_layer_type":
        return base.replace(layers=(*base.layers, Layer(extra.tar, media_type="application/x-boxlite-bogus")))
    return base.replace(layers=(*base.layers, *_hostile_layers(kind)))
