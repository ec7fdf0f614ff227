#!/usr/bin/env python3
"""Network benchmark: box→host against host→host, side by side in one run.

  download   HTTP GET of a 200 MB file from a server on the host's 127.0.0.1
             (the box fetches http://host.boxlite.internal:PORT/ with python3 urllib)
  connect    TCP connect + close to the same server, median of N

Prints throughput and connect latency for the host itself and for a box on each
network backend asked for (slirp, the default; passt, experimental, through
BOXLITE_NET_BACKEND), and the ratios box/host. Timing inside the box uses the
guest's clock (the VM boot is not counted).
Usage: .venv/bin/python bench/net.py [--size-mb 200] [--connects 200]
       [--backend slirp --backend passt] [--accel auto|kvm|tcg] [--json]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from boxlite_cli.payload import DEFAULT_IMAGE

BOXLITE = str(Path(sys.executable).with_name("boxlite"))

# Runs with python3 in the box and on the host: one JSON line of measurements.
CLIENT = r"""
import json, socket, statistics, sys, time, urllib.request
host, port, connects = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
total = 0
with urllib.request.urlopen(f"http://{host}:{port}/blob", timeout=600) as r:
    while chunk := r.read(1 << 20):
        total += len(chunk)
download_s = time.perf_counter() - t
lat = []
for _ in range(connects):
    t = time.perf_counter()
    s = socket.create_connection((host, port), timeout=10)
    lat.append(time.perf_counter() - t)
    s.close()
print(json.dumps({"bytes": total, "download_s": download_s,
                  "connect_ms": statistics.median(lat) * 1000}))
"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def measure(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({out.returncode}): {out.stderr.strip()}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--backend", action="append", choices=["slirp", "passt"])
    parser.add_argument("--accel", default=os.environ.get("BOXLITE_ACCEL", "tcg"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backends = args.backend or ["slirp"]
    home = tempfile.mkdtemp(prefix="boxlite-bench-")
    data = Path(tempfile.mkdtemp(prefix="boxlite-bench-data-"))
    os.environ["BOXLITE_HOME"] = home
    os.environ["BOXLITE_ACCEL"] = args.accel
    try:
        with open(data / "blob", "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mb):
                f.write(block)
        server, port = serve(data)
        conn = str(args.connects)
        results = {"host": measure([sys.executable, "-c", CLIENT, "127.0.0.1", str(port), conn])}
        for backend in backends:
            results[f"box ({backend})"] = measure(
                [BOXLITE, "run", "--rm", DEFAULT_IMAGE, "python3", "-c", CLIENT,
                 "host.boxlite.internal", str(port), conn],
                env={"BOXLITE_NET_BACKEND": backend})
        server.shutdown()
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
    for r in results.values():
        if r["bytes"] != args.size_mb << 20:
            raise SystemExit(f"short download: {r}")
        r["mb_per_s"] = r["bytes"] / r["download_s"] / 1e6
    host = results["host"]
    ratios = {name: {"throughput box/host": r["mb_per_s"] / host["mb_per_s"],
                     "connect latency box/host": r["connect_ms"] / host["connect_ms"]}
              for name, r in results.items() if name != "host"}
    if args.json:
        print(json.dumps({"accel": args.accel, "size_mb": args.size_mb, "results": results,
                          "ratios": ratios}, indent=2))
        return 0
    print(f"accelerator: {args.accel}; {args.size_mb} MB download, median of "
          f"{args.connects} connects")
    for name, r in results.items():
        print(f"  {name:<14} {r['mb_per_s']:8.1f} MB/s  {r['download_s']:7.2f} s   "
              f"connect {r['connect_ms']:7.3f} ms")
    for name, ratio in ratios.items():
        print(f"  {name:<14} throughput {ratio['throughput box/host']:.3f}x host, "
              f"connect latency {ratio['connect latency box/host']:.1f}x host")
    return 0


if __name__ == "__main__":
    sys.exit(main())
