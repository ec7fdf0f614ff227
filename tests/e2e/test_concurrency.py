"""Many invocations at once, from separate processes."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx

pytestmark = pytest.mark.e2e


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([boxlite_bin(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def test_eight_runs_at_once() -> None:
    procs = [start("run", "--rm", IMAGE, "sh", "-c", f"echo box{i}; exit {i}") for i in range(8)]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == i, err
        assert out == f"box{i}\n".encode()


def test_sixteen_execs_at_once_into_one_box() -> None:
    assert bx("run", "-d", "--name", "busy", IMAGE, "sleep", "600").returncode == 0
    try:
        procs = [start("exec", "busy", "sh", "-c", f"echo exec{i}; exit {i}")
                 for i in range(16)]
        for i, proc in enumerate(procs):
            out, err = proc.communicate(timeout=300)
            assert (proc.returncode, out) == (i, f"exec{i}\n".encode()), err
    finally:
        bx("rm", "-f", "busy")


def test_two_creates_of_one_name_exactly_one_wins() -> None:
    procs = [start("create", "--name", "taken", IMAGE, "true") for _ in range(2)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    try:
        codes = sorted(code for _, code in results)
        assert codes == [0, 125]
        loser = next(err for (_, err), code in results if code == 125)
        assert b'the name "taken" is already in use' in loser
        assert len([line for line in bx("ps", "-a").stdout.splitlines() if b"taken" in line]) == 1
    finally:
        bx("rm", "-f", "taken")
