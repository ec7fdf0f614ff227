#!/usr/bin/env python3
"""Copy benchmark: side by side in one run, one 512 MB file of random bytes.

  host cp      cp FILE DIR on the host (the disk's own speed: the floor)
  cp in        boxlite cp FILE BOX:/tmp/f
  exec cat     boxlite exec -i BOX sh -c 'cat > /tmp/g' < FILE (the naive way in)
  cp out       boxlite cp BOX:/tmp/f DIR/out

Prints the median of each, MB/s, and the ratios to host cp and to exec cat.

With --tree N: a tree of N small files (150 a directory: a repository an agent uploads)
instead, against tar through exec, the way round a copy that is slow per file:

  cp in        boxlite cp TREE BOX:/tmp/t
  exec tar x   tar -C TREE -c . | boxlite exec -i BOX tar -x -C /tmp/u
  cp out       boxlite cp BOX:/tmp/t DIR/out
  exec tar c   boxlite exec BOX tar -C /tmp/t -c . | tar -x -C DIR/out2

Usage: .venv/bin/python bench/cp.py [-n RUNS] [--size-mb N | --tree N] [--accel auto|kvm|tcg]
       [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from boxlite_cli.payload import DEFAULT_IMAGE

BOXLITE = str(Path(sys.executable).with_name("boxlite"))


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(*cmd: str, stdin: str | None = None) -> None:
    if stdin is None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
        return
    with open(stdin, "rb") as f:
        subprocess.run(cmd, check=True, stdin=f, capture_output=True, timeout=1800)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--accel", default=os.environ.get("BOXLITE_ACCEL", "tcg"))
    parser.add_argument("--tree", type=int, default=0, metavar="N",
                        help="N small files instead of one large one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.tree:
        return tree_bench(args)
    home = tempfile.mkdtemp(prefix="boxlite-bench-")
    work = Path(tempfile.mkdtemp(prefix="boxlite-bench-copy-", dir="/var/tmp"))
    os.environ["BOXLITE_HOME"] = home
    os.environ["BOXLITE_ACCEL"] = args.accel
    src = work / "file"
    with open(src, "wb") as f:
        for _ in range(args.size_mb):
            f.write(os.urandom(1 << 20))
    size = src.stat().st_size
    results: dict[str, list[float]] = {"host cp": [], "cp in": [], "exec cat": [], "cp out": []}
    box = subprocess.run([BOXLITE, "run", "-d", "--memory", "1g", DEFAULT_IMAGE, "sleep", "36000"],
                         check=True, capture_output=True, text=True, timeout=600).stdout.strip()
    try:
        for i in range(args.runs):
            dest = work / f"host-{i}"
            dest.mkdir()
            results["host cp"].append(timed(lambda d=dest: run("cp", str(src), str(d))))
            shutil.rmtree(dest)
            results["cp in"].append(timed(lambda: run(BOXLITE, "cp", str(src), f"{box}:/tmp/f")))
            results["exec cat"].append(timed(lambda: run(
                BOXLITE, "exec", "-i", box, "sh", "-c", "cat > /tmp/g", stdin=str(src))))
            run(BOXLITE, "exec", box, "rm", "-f", "/tmp/g")
            out = work / "out"
            results["cp out"].append(timed(lambda o=out: run(BOXLITE, "cp", f"{box}:/tmp/f", str(o))))
            if out.stat().st_size != size:
                raise RuntimeError("cp out: wrong size")
            out.unlink()
    finally:
        subprocess.run([BOXLITE, "rm", "-f", box], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    mbps = {k: size / 1e6 / v for k, v in med.items()}
    ratios = {"cp in / host cp": med["cp in"] / med["host cp"],
              "cp out / host cp": med["cp out"] / med["host cp"],
              "cp in / exec cat": med["cp in"] / med["exec cat"],
              "cp out / exec cat": med["cp out"] / med["exec cat"]}
    return report(args, {"bytes": size, "median_s": med, "mb_per_s": mbps, "runs": results,
                         "ratios": ratios}, f"{size // 2**20} MiB file",
                  {k: f"{v:7.1f} MB/s" for k, v in mbps.items()})


def report(args: argparse.Namespace, figures: dict[str, object], what: str,
           rates: dict[str, str]) -> int:
    """The figures as JSON (--json), or the medians, their rates and the ratios."""
    if args.json:
        print(json.dumps({"accel": args.accel, **figures}, indent=2))
        return 0
    print(f"accelerator: {args.accel}, {what}, {args.runs} runs each, medians")
    med: dict[str, float] = figures["median_s"]  # type: ignore[assignment]
    for name, value in med.items():
        print(f"  {name:<10} {value:7.2f} s  {rates[name]}")
    ratios: dict[str, float] = figures["ratios"]  # type: ignore[assignment]
    for name, value in ratios.items():
        print(f"  {name:<19} {value:6.2f}x")
    return 0


def sh(command: str) -> None:
    subprocess.run(["sh", "-c", command], check=True, capture_output=True, timeout=1800)


def tree_bench(args: argparse.Namespace) -> int:
    home = tempfile.mkdtemp(prefix="boxlite-bench-")
    work = Path(tempfile.mkdtemp(prefix="boxlite-bench-tree-", dir="/var/tmp"))
    os.environ["BOXLITE_HOME"] = home
    os.environ["BOXLITE_ACCEL"] = args.accel
    tree = work / "tree"
    for n in range(args.tree):
        path = tree / f"d{n // 150}" / f"f{n}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(512 + n % 4096))
    results: dict[str, list[float]] = {"cp in": [], "exec tar x": [], "cp out": [],
                                       "exec tar c": []}
    box = subprocess.run([BOXLITE, "run", "-d", DEFAULT_IMAGE, "sleep", "36000"], check=True,
                         capture_output=True, text=True, timeout=600).stdout.strip()
    try:
        for _ in range(args.runs):
            run(BOXLITE, "exec", box, "rm", "-rf", "/tmp/t", "/tmp/u")
            results["cp in"].append(timed(lambda: run(BOXLITE, "cp", str(tree), f"{box}:/tmp/t")))
            run(BOXLITE, "exec", box, "mkdir", "/tmp/u")
            results["exec tar x"].append(timed(lambda: sh(
                f"tar -C {tree} -c . | {BOXLITE} exec -i {box} tar -x -C /tmp/u")))
            out, out2 = work / "out", work / "out2"
            results["cp out"].append(timed(lambda o=out: run(BOXLITE, "cp", f"{box}:/tmp/t", str(o))))
            out2.mkdir()
            results["exec tar c"].append(timed(lambda o=out2: sh(
                f"{BOXLITE} exec {box} tar -C /tmp/t -c . | tar -x -C {o}")))
            if sum(1 for p in out.rglob("*") if p.is_file()) != args.tree:
                raise RuntimeError("cp out: files missing")
            shutil.rmtree(out)
            shutil.rmtree(out2)
    finally:
        subprocess.run([BOXLITE, "rm", "-f", box], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    ratios = {"cp in / exec tar x": med["cp in"] / med["exec tar x"],
              "cp out / exec tar c": med["cp out"] / med["exec tar c"]}
    return report(args, {"files": args.tree, "median_s": med, "runs": results,
                         "ratios": ratios}, f"{args.tree} small files",
                  {k: f"{args.tree / v:7.0f} files/s" for k, v in med.items()})


if __name__ == "__main__":
    sys.exit(main())
