#!/usr/bin/env python3
"""Pull benchmark: side by side in one run, against the same local registry and image.

  image      a ~200 MB linux/amd64 image (4 gzip layers of text-like and random files),
             built here and pushed with skopeo to a docker-registry on 127.0.0.1
  skopeo     skopeo copy docker://... oci:DIR, then tar -x of every layer
  boxlite    boxlite pull, then boxlite create (unpack into the ext4 base) in a fresh home

Prints the median of each phase and the ratios boxlite / (skopeo + tar).
Usage: .venv/bin/python bench/pull.py [-n RUNS] [--mb SIZE] [--json]
Needs: docker-registry and skopeo (apt-get install docker-registry skopeo).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

BOXLITE = str(Path(sys.executable).with_name("boxlite"))
LAYERS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def layer_bytes(index: int, size: int) -> bytes:
    """A tar of files: half compressible text, half random bytes (like real images)."""
    rng = random.Random(index)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        written, n = 0, 0
        while written < size:
            n += 1
            chunk = min(1 << 20, size - written)
            if n % 2:
                words = [rng.choice(("box", "lite", "layer", "data", "vm", "guest")) for _ in range(64)]
                data = (" ".join(words) + "\n").encode() * (chunk // 200 + 1)
                data = data[:chunk]
            else:
                data = rng.randbytes(chunk)
            info = tarfile.TarInfo(f"layer{index}/dir{n % 16}/file{n}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            written += chunk
    return buf.getvalue()


def build_layout(root: Path, total_mb: int) -> None:
    """An OCI image layout with the benchmark image, tagged bench:latest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layers, diff_ids = [], []
    for i in range(LAYERS):
        raw = layer_bytes(i, total_mb * (1 << 20) // LAYERS)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       **put(gzip.compress(raw, compresslevel=1))})
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **put(json.dumps(config).encode())},
                "layers": layers}
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            **put(json.dumps(manifest).encode()),
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))


def start_registry(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = tmp / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {tmp / 'registry'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
            return proc, address
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("docker-registry did not start")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   env={**os.environ, **(env or {})}, timeout=1800)
    return time.perf_counter() - start


def skopeo_run(ref: str, tmp: Path) -> tuple[float, float]:
    """skopeo copy to an OCI dir, then untar its layers: (copy s, untar s)."""
    dest, tree = tmp / "skopeo-oci", tmp / "skopeo-tree"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir()
    copy = timed(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:x"])
    index = json.loads((dest / "index.json").read_text())
    manifest_hex = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((dest / "blobs" / "sha256" / manifest_hex).read_text())
    start = time.perf_counter()
    for layer in manifest["layers"]:
        blob = dest / "blobs" / "sha256" / layer["digest"].split(":")[1]
        subprocess.run(["tar", "-xzf", str(blob), "-C", str(tree)], check=True)
    return copy, time.perf_counter() - start


def boxlite_run(ref: str, tmp: Path) -> tuple[float, float]:
    """boxlite pull, then create (the one-time unpack into ext4) in a fresh home."""
    home = tmp / "boxlite-home"
    shutil.rmtree(home, ignore_errors=True)
    env = {"BOXLITE_HOME": str(home)}
    pull = timed([BOXLITE, "pull", "-q", ref], env)
    start = time.perf_counter()
    out = subprocess.run([BOXLITE, "create", ref], check=True, capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=1800)
    unpack = time.perf_counter() - start
    subprocess.run([BOXLITE, "rm", out.stdout.strip()], check=True, capture_output=True,
                   env={**os.environ, **env})
    return pull, unpack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200, help="uncompressed image size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            print(f"bench/pull.py needs {tool}: apt-get install {tool}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="boxlite-bench-pull-") as tmpdir:
        tmp = Path(tmpdir)
        build_layout(tmp / "layout", args.mb)
        registry, address = start_registry(tmp)
        try:
            ref = f"{address}/bench:latest"
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                            f"oci:{tmp / 'layout'}:latest", f"docker://{ref}"], check=True)
            results: dict[str, list[float]] = {k: [] for k in
                                               ("skopeo_copy", "tar_x", "boxlite_pull", "boxlite_unpack")}
            for _ in range(args.runs):
                copy, untar = skopeo_run(ref, tmp)
                pull, unpack = boxlite_run(ref, tmp)
                for key, value in zip(results, (copy, untar, pull, unpack), strict=True):
                    results[key].append(value)
        finally:
            registry.terminate()
            registry.wait(timeout=10)
    med = {k: statistics.median(v) for k, v in results.items()}
    ratios = {
        "pull / skopeo copy": med["boxlite_pull"] / med["skopeo_copy"],
        "pull+unpack / copy+tar": (med["boxlite_pull"] + med["boxlite_unpack"])
        / (med["skopeo_copy"] + med["tar_x"]),
    }
    if args.json:
        print(json.dumps({"median_s": med, "ratios": ratios, "runs": args.runs, "mb": args.mb}))
        return 0
    print(f"image: {args.mb} MB uncompressed, {LAYERS} gzip layers, {args.runs} runs, medians")
    for key, value in med.items():
        print(f"  {key:<16} {value:7.2f} s")
    for key, value in ratios.items():
        print(f"  {key:<24} {value:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
