"""The node prerenders Deep Zoom tiles in the background and serves them like native tiles."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slidestore import open_slide, tokens
from slidestore.blobs import BlobStore
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess

SECRET = tokens.new_secret()


def wait_complete(client: httpx.Client, blob_id: str, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/slides/{blob_id}/renditions").json()["deepzoom"]
        if body["state"] == "complete" or time.monotonic() > deadline:
            return dict(body)
        time.sleep(0.1)


def metric(client: httpx.Client, name: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


@pytest.mark.parametrize("workers", [1, 2])
def test_derived_levels_are_prerendered_and_served_byte_identical(
    tmp_path: Path, generated_svs: Path, workers: int
) -> None:
    data_dir = tmp_path / "data"
    blob_id = BlobStore(data_dir / "blobs", reserve_bytes=0).put_file(generated_svs)
    node = NodeProcess(
        data_dir, settings={"secret": SECRET, "reserve_bytes": 0, "workers": workers}
    ).start()
    admin = tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=600)
    try:
        with httpx.Client(
            base_url=node.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
        ) as client:
            state = wait_complete(client, blob_id)
            assert state["state"] == "complete", state
            assert int(str(state["tiles"])) > 0
            manifests = list((data_dir / "renditions" / blob_id).glob("*/manifest.json"))
            assert len(manifests) == 1
            assert not list((data_dir / "renditions").rglob("*.partial"))
            time.sleep(0.3)  # open slides look for newly finished packs every 0.1 s
            with open_slide(generated_svs) as slide:
                reference = DeepZoom(slide, encoded_cache_bytes=0)
                for level in range(reference.level_count):
                    cols, rows = reference.level_tiles[level]
                    for col, row in {(0, 0), (cols - 1, rows - 1), (cols // 2, rows // 2)}:
                        r = client.get(f"/slides/{blob_id}_files/{level}/{col}_{row}.jpeg")
                        assert r.status_code == 200
                        assert r.content == reference.tile(level, col, row), (level, col, row)
            if workers == 1:
                assert metric(client, "slidestore_node_deepzoom_prerendered") > 0
                assert metric(client, "slidestore_node_deepzoom_rendered") == 0
            r = client.delete(f"/blobs/{blob_id}")
            assert r.status_code == 204
            assert not (data_dir / "renditions" / blob_id).exists()
    finally:
        node.kill(signal.SIGKILL)


def test_a_blob_that_is_not_a_slide_is_marked_and_not_retried(
    tmp_path: Path, unreadable_svs_path: Path
) -> None:
    data_dir = tmp_path / "data"
    blob_id = BlobStore(data_dir / "blobs", reserve_bytes=0).put_file(unreadable_svs_path)
    node = NodeProcess(data_dir, settings={"secret": SECRET, "reserve_bytes": 0}).start()
    admin = tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=600)
    try:
        with httpx.Client(
            base_url=node.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
        ) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                state = client.get(f"/slides/{blob_id}/renditions").json()["deepzoom"]
                if state["state"] == "unsupported":
                    break
                time.sleep(0.1)
            assert state["state"] == "unsupported"
            # The node keeps serving: a clean 4xx for the broken pixels, not a 5xx.
            r = client.get(f"/slides/{blob_id}_files/0/0_0.jpeg")
            assert 400 <= r.status_code < 500
    finally:
        node.kill(signal.SIGKILL)


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (a real disk that fills up); skips the
    test where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def test_a_rendition_that_fills_the_disk_is_retried_once_there_is_room(
    tmp_path: Path, generated_svs: Path
) -> None:
    data_dir = tmp_path / "data"
    blob_id = BlobStore(data_dir / "blobs", reserve_bytes=0).put_file(generated_svs)
    renditions = data_dir / "renditions"
    with small_tmpfs(renditions, "32k"):  # a few tiles fit, the rendition does not
        node = NodeProcess(
            data_dir,
            settings={"secret": SECRET, "reserve_bytes": 0, "prerender_space_retry_seconds": 1},
        ).start()
        admin = tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=600)
        try:
            with httpx.Client(
                base_url=node.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
            ) as client:
                deadline = time.monotonic() + 60
                while "the disk filled up" not in node.log.read_text():
                    assert time.monotonic() < deadline, "the renderer never ran out of space"
                    time.sleep(0.1)
                state = client.get(f"/slides/{blob_id}/renditions").json()["deepzoom"]
                assert state["state"] in ("pending", "rendering"), state  # not "unsupported"
                assert not (renditions / blob_id / "unsupported").exists()
                # Room again: the next attempt (a second later) renders it completely.
                subprocess.run(["mount", "-o", "remount,size=256m", str(renditions)], check=True)
                state = wait_complete(client, blob_id)
                assert state["state"] == "complete", state
                assert int(str(state["tiles"])) > 0
                r = client.get(f"/slides/{blob_id}_files/0/0_0.jpeg")
                assert r.status_code == 200
        finally:
            node.kill(signal.SIGKILL)
