"""cp out of a box: sparse files as GNU sparse 1.0 members (the guest's sparsetar.py),
written back with their holes by the host's extractor; a hostile map is refused."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from boxlite_cli.transfer.extract import UnsafeArchive, extract_tar

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent import sparsetar
from boxlite_agent.copyfiles import rechunk, tar_out

MIB = 1 << 20


def sparse_file(path: Path, size: int, pieces: dict[int, bytes]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    probe = root / "probe"
    sparse_file(probe, 8 * MIB, {})
    if probe.stat().st_blocks:
        pytest.skip(f"{tmp_path} keeps no holes")
    probe.unlink()
    return root


def test_data_regions_finds_the_data(root: Path) -> None:
    path = root / "f"
    sparse_file(path, 64 * MIB, {5 * MIB: b"a" * 10, 40 * MIB: b"b"})
    fd = os.open(path, os.O_RDONLY)
    try:
        regions = sparsetar.data_regions(fd, 64 * MIB)
    finally:
        os.close(fd)
    assert regions is not None and len(regions) == 2
    for (offset, length), at in zip(regions, (5 * MIB, 40 * MIB), strict=True):
        assert offset <= at < offset + length  # (whole file system blocks)


def test_a_sparse_file_goes_out_and_comes_back_with_its_holes(root: Path,
                                                             tmp_path: Path) -> None:
    pieces = {0: b"head", 3 * MIB + 7: b"middle" * 1000, 2048 * MIB - 3: b"end"}
    sparse_file(root / "big", 2048 * MIB, pieces)
    (root / "plain").write_bytes(b"x" * 5000)
    sparse_file(root / "fewholes", 600 * 1024, {0: b"y" * (600 * 1024 - 1)})
    out = b"".join(tar_out(str(root), "/", False, "", sparse=True))
    assert len(out) < 2 * MIB  # the holes did not travel
    dest = tmp_path / "dest"
    dest.mkdir()
    result = extract_tar(rechunk([out]), str(dest))
    got = dest / "big"
    assert got.stat().st_size == 2048 * MIB and got.stat().st_blocks * 512 < 4 * MIB
    with open(got, "rb") as f:
        for offset, data in pieces.items():
            f.seek(offset)
            assert f.read(len(data)) == data
        f.seek(MIB)
        assert f.read(MIB) == bytes(MIB)
    assert (dest / "plain").read_bytes() == b"x" * 5000
    assert (dest / "fewholes").read_bytes() == (root / "fewholes").read_bytes()
    assert result.bytes < 2 * MIB
    # GNU tar reads it too (one who takes such a stream elsewhere)
    listing = subprocess.run(["tar", "tvf", "-"], input=out, capture_output=True, check=True)
    assert b" 2147483648 " in listing.stdout and b"GNUSparse" not in listing.stdout


def test_without_sparse_the_tar_is_plain(root: Path) -> None:
    sparse_file(root / "big", 4 * MIB, {0: b"a"})
    out = b"".join(tar_out(str(root), "/big", False, "big"))
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        member = tar.getmembers()[0]
    assert member.sparse is None and member.size == 4 * MIB and "GNU.sparse.major" not in (
        member.pax_headers)


def hostile(regions: list[tuple[int, int]], realsize: int, stored: bytes) -> bytes:
    text = "".join(f"{o}\n{n}\n" for o, n in regions)
    mapped = f"{len(regions)}\n{text}".encode()
    mapped += bytes(-len(mapped) % 512)
    info = tarfile.TarInfo("evil")
    info.size = len(mapped) + len(stored)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": "evil", "GNU.sparse.realsize": str(realsize)}
    body = mapped + stored + bytes(-len(stored) % 512)
    return info.tobuf(tarfile.PAX_FORMAT) + body + bytes(1024)


@pytest.mark.parametrize(("regions", "realsize"), [
    ([(100, 10), (50, 10)], 1000),  # out of order
    ([(0, 10), (5, 10)], 1000),  # overlapping
    ([(995, 10)], 1000),  # past the end
])
def test_a_malformed_sparse_map_is_refused(tmp_path: Path, regions: list[tuple[int, int]],
                                           realsize: int) -> None:
    stored = b"z" * sum(n for _, n in regions)
    with pytest.raises(UnsafeArchive, match="map is malformed"):
        extract_tar(iter([hostile(regions, realsize, stored)]), str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # its temporary file went too


def test_a_sparse_member_cut_short_is_refused(tmp_path: Path) -> None:
    data = hostile([(0, 4096)], 8192, b"q" * 4096)
    with pytest.raises(UnsafeArchive):
        extract_tar(iter([data[:1536 + 100]]), str(tmp_path))
    assert list(tmp_path.iterdir()) == []
