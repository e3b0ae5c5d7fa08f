"""A node never renders from bytes it has not checked, and never serves a prerendered tile
that fails its CRC (real node processes, the sample slide).

* A flipped byte in a native tile that a *rendered* Deep Zoom level, a derived zarr
  level, a IIIF region or the thumbnail reads: 503 ``replica_corrupt`` (never a 200 with
  wrong pixels), and the copy is quarantined at once.
* A flipped byte in the TIFF structure: the slide does not open (503), the copy goes.
* The background prerendering meets a corrupt copy: quarantined, not "unsupported".
* A flipped byte in a prerendered tile (a rendition is a cache): not served — the right
  tile is rendered instead, on the fast path and on the route — the blob stays, and the
  level is prerendered again.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import tifffile

from slidestore import open_slide, tokens
from slidestore.blobs import BlobStore
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.protocols.deepzoom.pack import TilePack
from slidestore.protocols.deepzoom.prerender import level_path
from slidestore.testing.faults import flip_byte
from slidestore.tokens import Operation
from slidestore_server.node.renditions import UNSUPPORTED
from slidestore_server.testing import NodeProcess

SECRET = tokens.new_secret()
TILE = (2, 2)  # a level-0 tile of CMU-1-Small-Region (one level, 240 px tiles)
PRERENDER_SECONDS = 120.0
"""Prerendering runs niced in a child: on a loaded machine a small slide takes a while."""
RENDERED = 11  # Deep Zoom level 11: rendered from level 0 (12 is the native level)
SLOT = 1 * 5 + 1  # tile (1, 1) of level 11 (1110x1484 pixels: 5 columns of 240 px)


def _headers(blob_id: str, *ops: Operation) -> dict[str, str]:
    token = tokens.mint(SECRET, ops=set(ops or (Operation.READ,)), blob=blob_id, ttl=600)
    return {"Authorization": f"Bearer {token}"}


def _replica_corrupt(answer: httpx.Response) -> None:
    assert answer.status_code == 503, (answer.status_code, answer.text[:200])
    assert answer.json()["error"] == "replica_corrupt"


def _eventually[T](check: Callable[[], T], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def _copies(store: BlobStore, data: bytes, count: int) -> list[str]:
    """``count`` blobs of the same slide (bytes appended after the TIFF's end)."""
    return [store.put(data + f"\n#{i}\n".encode()) for i in range(count)]


@pytest.fixture
def tile_extent(sample_slide_path: Path) -> tuple[int, int]:
    with open_slide(sample_slide_path) as local:
        extent = local.tile_extent(0, *TILE)
        assert DeepZoom(local).passthrough_level(RENDERED) is None
        assert local.pyramid.levels[1].native_level is None
    assert extent is not None
    return extent


@pytest.fixture
def quiet_node(tmp_path: Path) -> tuple[Path, BlobStore]:
    """A node's data directory and its blob store (the test starts the node)."""
    data_dir = tmp_path / "data"
    return data_dir, BlobStore(data_dir / "blobs", reserve_bytes=0)


def test_a_flipped_byte_under_a_rendered_tile_is_refused_and_quarantined(
    quiet_node: tuple[Path, BlobStore], sample_slide_path: Path, tile_extent: tuple[int, int]
) -> None:
    data_dir, store = quiet_node
    ids = _copies(store, sample_slide_path.read_bytes(), 6)
    offset, length = tile_extent
    with tifffile.TiffFile(sample_slide_path) as tif:
        tag = tif.pages[0].tags["ImageDescription"]
        structure = tag.valueoffset + tag.count // 2
    node = NodeProcess(
        data_dir, settings={"secret": SECRET, "reserve_bytes": 0, "prerender": False}
    ).start()
    try:
        with httpx.Client(base_url=node.url, timeout=30) as http:
            dz, zarr_id, iiif_id, thumb_id, open_id, meta_id = ids
            # One slide is open (the fast path will see it) before its bytes go bad; only
            # the native tiles around TILE are read to render what it shows, not TILE.
            warm = http.get(
                f"/slides/{open_id}_files/{RENDERED}/0_0.jpeg", headers=_headers(open_id)
            )
            assert warm.status_code == 200
            for blob_id in ids[:-1]:
                flip_byte(store.path(blob_id), offset + length // 2)
            flip_byte(store.path(meta_id), structure)

            col, row = TILE[0] // 2, TILE[1] // 2  # the rendered tile made of TILE
            _replica_corrupt(
                http.get(f"/slides/{dz}_files/{RENDERED}/{col}_{row}.jpeg", headers=_headers(dz))
            )
            # A derived zarr level (2x2 means of level 0): the chunk made of TILE.
            _replica_corrupt(
                http.get(f"/zarr/{zarr_id}/1/c/0/{row}/{col}", headers=_headers(zarr_id))
            )
            # A IIIF region around TILE, scaled: rendered, not a stored tile.
            _replica_corrupt(
                http.get(
                    f"/iiif/3/{iiif_id}/400,400,400,400/200,/0/default.jpg",
                    headers=_headers(iiif_id),
                )
            )
            _replica_corrupt(http.get(f"/slides/{thumb_id}/thumbnail", headers=_headers(thumb_id)))
            # The open slide: the fast path finds no stored tile, the route renders — no.
            _replica_corrupt(
                http.get(
                    f"/slides/{open_id}_files/{RENDERED}/{col}_{row}.jpeg",
                    headers=_headers(open_id),
                )
            )
            # The structure is checked before a reader parses it: no metadata, no tile.
            _replica_corrupt(http.get(f"/slides/{meta_id}/info", headers=_headers(meta_id)))
            for blob_id in ids:
                assert not store.exists(blob_id)
                assert any(p.name.startswith(blob_id) for p in store.quarantined())
                gone = http.get(
                    f"/slides/{blob_id}_files/{RENDERED}/0_0.jpeg", headers=_headers(blob_id)
                )
                assert gone.status_code == 404
    finally:
        node.kill(signal.SIGKILL)


def test_an_open_slide_checks_its_bytes_again_once_the_recheck_window_ends(
    quiet_node: tuple[Path, BlobStore], sample_slide_path: Path, tile_extent: tuple[int, int]
) -> None:
    """A byte rots after OpenSlide's reads of it were checked, while the slide stays open
    (its page dropped from the cache, as after an eviction). Within ``recheck_seconds``
    the check is trusted: a new thumbnail — a render OpenSlide makes of every tile — is
    200 and the copy stays (the bound this setting sets). Once the window has ended, the
    next render checks the chunk again: 503 ``replica_corrupt``, quarantined at once."""
    data_dir, store = quiet_node
    (blob_id,) = _copies(store, sample_slide_path.read_bytes(), 1)
    offset, length = tile_extent
    window = 10.0
    node = NodeProcess(
        data_dir,
        settings={
            "secret": SECRET,
            "reserve_bytes": 0,
            "prerender": False,
            "recheck_seconds": str(window),
        },
    ).start()
    headers = _headers(blob_id)
    try:
        with httpx.Client(base_url=node.url, timeout=30) as http:
            before_open = time.monotonic()
            # (A new size each time: thumbnails are cached by size.)
            assert http.get(f"/slides/{blob_id}/thumbnail?size=100", headers=headers).is_success
            opened = time.monotonic()  # the window began in between
            path = store.path(blob_id)
            flip_byte(path, offset + length // 2)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            assert time.monotonic() - before_open < window - 3, "too slow to test the window"
            within = http.get(f"/slides/{blob_id}/thumbnail?size=101", headers=headers)
            assert within.status_code == 200
            assert store.exists(blob_id) and not store.quarantined()
            time.sleep(max(0.0, opened + window + 0.5 - time.monotonic()))
            _replica_corrupt(http.get(f"/slides/{blob_id}/thumbnail?size=102", headers=headers))
            assert not store.exists(blob_id)
            assert any(p.name.startswith(blob_id) for p in store.quarantined())
    finally:
        node.kill(signal.SIGKILL)


def test_prerendering_a_corrupt_copy_quarantines_it(
    quiet_node: tuple[Path, BlobStore], sample_slide_path: Path, tile_extent: tuple[int, int]
) -> None:
    data_dir, store = quiet_node
    (blob_id,) = _copies(store, sample_slide_path.read_bytes(), 1)
    offset, length = tile_extent
    flip_byte(store.path(blob_id), offset + length // 2)
    node = NodeProcess(data_dir, settings={"secret": SECRET, "reserve_bytes": 0}).start()
    try:
        _eventually(
            lambda: any(p.name.startswith(blob_id) for p in store.quarantined()), PRERENDER_SECONDS
        )
        assert not store.exists(blob_id)
        assert not (data_dir / "renditions" / blob_id / UNSUPPORTED).exists()
        assert not list((data_dir / "renditions").glob(f"{blob_id}/*/manifest.json"))
    finally:
        node.kill(signal.SIGKILL)


def test_a_damaged_prerendered_tile_is_not_served_and_is_made_again(
    tmp_path: Path, sample_slide_path: Path
) -> None:
    data_dir = tmp_path / "data"
    store = BlobStore(data_dir / "blobs", reserve_bytes=0)
    open_id, closed_id = _copies(store, sample_slide_path.read_bytes(), 2)
    settings = {"secret": SECRET, "reserve_bytes": 0}
    node = NodeProcess(data_dir, settings=settings).start()
    packs: dict[str, Path] = {}
    tiles: dict[str, bytes] = {}
    try:
        with httpx.Client(base_url=node.url, timeout=30) as http:
            for blob_id in (open_id, closed_id):
                key = _eventually(lambda b=blob_id: _complete_rendition(http, b), PRERENDER_SECONDS)
                packs[blob_id] = level_path(data_dir / "renditions" / blob_id / key, RENDERED)
                time.sleep(0.3)  # open slides look for finished packs every 0.1 s
                good = http.get(
                    f"/slides/{blob_id}_files/{RENDERED}/1_1.jpeg", headers=_headers(blob_id)
                )
                assert good.status_code == 200
                tiles[blob_id] = good.content
            assert _metric(http, "slidestore_node_deepzoom_prerendered") == 2
            rendered = _metric(http, "slidestore_node_deepzoom_rendered")

            # The open slide: the fast path reads the pack, finds the CRC wrong, and the
            # route renders the tile — the same bytes, the blob untouched.
            _damage(packs[open_id])
            again = http.get(
                f"/slides/{open_id}_files/{RENDERED}/1_1.jpeg", headers=_headers(open_id)
            )
            assert again.status_code == 200 and again.content == tiles[open_id]
            assert _metric(http, "slidestore_node_deepzoom_rendered") == rendered + 1
            assert store.exists(open_id) and not store.quarantined()
            # ... and the level is prerendered again, from checked source bytes.
            _eventually(lambda: _pack_tile(packs[open_id]) == tiles[open_id], PRERENDER_SECONDS)
        node.kill(signal.SIGKILL)

        # A slide not open yet (the route opens it): damaged before the node starts.
        _damage(packs[closed_id])
        node = NodeProcess(data_dir, settings=settings).start()
        with httpx.Client(base_url=node.url, timeout=30) as http:
            token = _headers(closed_id)["Authorization"].split()[1]
            again = http.get(
                f"/slides/{closed_id}_files/{RENDERED}/1_1.jpeg", params={"token": token}
            )
            assert again.status_code == 200 and again.content == tiles[closed_id]
            assert _metric(http, "slidestore_node_deepzoom_prerendered") == 0
            assert store.exists(closed_id) and not store.quarantined()
            _eventually(lambda: _pack_tile(packs[closed_id]) == tiles[closed_id], PRERENDER_SECONDS)
    finally:
        node.kill(signal.SIGKILL)


def _complete_rendition(http: httpx.Client, blob_id: str) -> str | None:
    """The key of the blob's rendition once it is complete."""
    body = http.get(f"/slides/{blob_id}/renditions", headers=_headers(blob_id)).json()
    state = body["deepzoom"]
    return str(state["key"]) if state["state"] == "complete" else None


def _damage(pack_path: Path) -> None:
    """Flip a byte in the middle of tile (1, 1)'s bytes in the pack."""
    pack = TilePack(pack_path)
    try:
        start, length = pack.extent(SLOT)
    finally:
        pack.close()
    assert length
    flip_byte(pack_path, start + length // 2)


def _pack_tile(pack_path: Path) -> bytes | None:
    """Tile (1, 1) as the pack on disk now holds it (None: not there yet)."""
    try:
        pack = TilePack(pack_path)
    except FileNotFoundError:
        return None
    try:
        return pack.get(SLOT)
    finally:
        pack.close()


def _metric(http: httpx.Client, name: str) -> float:
    admin = tokens.mint(SECRET, ops={Operation.ADMIN}, ttl=600)
    text = http.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")
