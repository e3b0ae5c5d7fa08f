"""Decompression bombs over HTTP: a tus upload of a slide with one JPEG tile whose frame
declares 60000 x 60000 pixels gets 422 when it completes, nothing is stored, and the
node never decodes it (its peak RSS stays where it was)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slidestore import tokens
from slidestore.testing import write_svs
from slidestore.testing.bombs import poison_frame
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess

SECRET = tokens.new_secret()
MB = 1 << 20


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data_dir = tmp_path_factory.mktemp("bomb-node") / "data"
    with NodeProcess(
        data_dir, settings={"secret": SECRET, "reserve_bytes": 0, "prerender": "false"}
    ) as process:
        yield process


@pytest.fixture(scope="module")
def clean_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_svs(tmp_path_factory.mktemp("bomb-svs") / "clean.svs", 960, 720, seed=5)


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/pid/status")


# Tile 6 of level 0 is the centre tile validation used to decode; tile 0 it never read.
@pytest.mark.parametrize("segment", [6, 0], ids=["sampled-tile", "unsampled-tile"])
def test_a_bomb_upload_is_422_and_nothing_is_kept(
    node: NodeProcess, clean_svs: Path, tmp_path: Path, segment: int
) -> None:
    path = tmp_path / "bomb.svs"
    shutil.copyfile(clean_svs, path)
    poison_frame(path, 0, segment)
    content = path.read_bytes()
    token = tokens.mint(SECRET, ops={Operation.WRITE, Operation.DOWNLOAD}, ttl=600)
    headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    before = peak_rss(node.pid)
    with httpx.Client(base_url=node.url, headers=headers, timeout=60) as http:
        created = http.post("/uploads", headers={"Upload-Length": str(len(content))})
        assert created.status_code == 201, created.text
        location = created.headers["Location"]
        done = http.patch(
            location,
            content=content,
            headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
        )
        assert done.status_code == 422, done.text
        body = done.json()
        assert body["error"] == "decompression_bomb"
        assert "60000x60000" in body["detail"]
        assert str(node.data_dir) not in body["detail"]
        assert http.head(location).status_code == 404
        blob = hashlib.sha256(content).hexdigest()
        assert http.head(f"/blobs/{blob}").status_code == 404
    assert not list((node.data_dir / "uploads").glob(f"{location.rsplit('/', 1)[1]}*"))
    assert peak_rss(node.pid) - before < 50 * MB
