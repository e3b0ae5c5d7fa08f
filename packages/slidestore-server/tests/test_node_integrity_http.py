"""A node never answers a stored tile it has not checked: a flipped byte in one is 503
``replica_corrupt`` on the Deep Zoom fast path (slide open), on the Deep Zoom route (slide
not open yet) and for IIIF, and the copy is quarantined at once."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slidestore import open_slide, tokens
from slidestore.blobs import BlobStore
from slidestore.testing.faults import flip_byte
from slidestore.tokens import Operation
from slidestore_server.testing import NodeProcess

SECRET = tokens.new_secret()
DEEPEST = 12  # CMU-1-Small-Region: Deep Zoom level 12 is the native level (240 px tiles)


@pytest.fixture
def node_with_copies(
    tmp_path: Path, sample_slide_path: Path
) -> Iterator[tuple[NodeProcess, BlobStore, list[str]]]:
    data_dir = tmp_path / "data"
    store = BlobStore(data_dir / "blobs", reserve_bytes=0)
    # Two blobs of the same slide (a byte appended after the TIFF's end changes the id).
    data = sample_slide_path.read_bytes()
    ids = [store.put(data), store.put(data + b"\n#2\n"), store.put(data + b"\n#3\n")]
    node = NodeProcess(data_dir, settings={"secret": SECRET, "reserve_bytes": 0})
    node.start()
    try:
        yield node, store, ids
    finally:
        node.kill(signal.SIGKILL)


def _replica_corrupt(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text[:200]
    assert answer.json()["error"] == "replica_corrupt"


def test_a_flipped_tile_byte_is_refused_and_quarantined(
    node_with_copies: tuple[NodeProcess, BlobStore, list[str]], sample_slide_path: Path
) -> None:
    node, store, (open_id, closed_id, iiif_id) = node_with_copies
    with open_slide(sample_slide_path) as local:
        extent = local.tile_extent(0, 1, 1)
    assert extent is not None
    offset, length = extent

    def headers(blob_id: str) -> dict[str, str]:
        token = tokens.mint(SECRET, ops={Operation.READ}, blob=blob_id, ttl=600)
        return {"Authorization": f"Bearer {token}"}

    with httpx.Client(base_url=node.url, timeout=30) as http:
        # A read token names one blob: the other blob's tiles are refused.
        other = http.get(f"/slides/{closed_id}_files/{DEEPEST}/0_0.jpeg", headers=headers(open_id))
        assert other.status_code == 403
        # The slide is open (fast path) before its tile goes bad.
        good = http.get(f"/slides/{open_id}_files/{DEEPEST}/1_1.jpeg", headers=headers(open_id))
        assert good.status_code == 200
        for blob_id in (open_id, closed_id, iiif_id):
            flip_byte(store.path(blob_id), offset + length // 2)

        _replica_corrupt(
            http.get(f"/slides/{open_id}_files/{DEEPEST}/1_1.jpeg", headers=headers(open_id))
        )
        # The route, for a slide not open yet (a query token: the fast path's other way in).
        token = headers(closed_id)["Authorization"].split()[1]
        _replica_corrupt(
            http.get(f"/slides/{closed_id}_files/{DEEPEST}/1_1.jpeg", params={"token": token})
        )
        # IIIF: a request for exactly that tile is its stored bytes, so they are checked.
        _replica_corrupt(
            http.get(
                f"/iiif/3/{iiif_id}/240,240,240,240/max/0/default.jpg", headers=headers(iiif_id)
            )
        )
        for blob_id in (open_id, closed_id, iiif_id):
            assert not store.exists(blob_id)
            assert any(p.name.startswith(blob_id) for p in store.quarantined())
            # Gone: a tile of it (even an intact one) is now "no copy here", never bytes.
            gone = http.get(f"/slides/{blob_id}_files/{DEEPEST}/0_0.jpeg", headers=headers(blob_id))
            assert gone.status_code == 404
