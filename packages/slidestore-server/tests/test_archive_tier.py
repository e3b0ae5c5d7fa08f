"""The archive tier's pieces: the codec on real slide bytes (JPEG XL tiles where a tile
map shows them, zstd where it pays, raw where it does not, the original back bit for
bit), the node's tile map route and the coordinator's archive call against a real node
process, and the archive's layout (manifest, thumbnail, purge) on two fsspec backends —
``memory://`` (per process: fine here, useless between a coordinator and nodes) and the
``simplecache::file://`` chain the cluster tests can share between processes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import httpx
import imagecodecs
import msgspec
import pytest
import tifffile

from slidestore import tokens
from slidestore.blobs import BlobStore, archive_codec, tile_map
from slidestore.blobs.archive_codec import (
    ArchiveCorrupt,
    ArchiveEncoder,
    Encoder,
    Encoding,
    JpegXlEncoder,
)
from slidestore.blobs.tile_map import TileMap
from slidestore.errors import SourceCorrupt
from slidestore.tokens import Operation
from slidestore_server.coordinator import archive
from slidestore_server.coordinator.nodes import ArchivedCopy, NodeClient
from slidestore_server.testing import NodeProcess

CHUNK = 1 << 20

needs_jpegxl = pytest.mark.skipif(
    not imagecodecs.JPEGXL.available, reason="imagecodecs built without JPEG XL"
)


def encode(data: bytes, **options: int) -> tuple[ArchiveEncoder, bytes]:
    encoder = ArchiveEncoder(**options)
    return encoder, run(encoder, data)


def run(encoder: Encoder, data: bytes, chunk: int = CHUNK) -> bytes:
    out = bytearray()
    for start in range(0, len(data), chunk):
        out += encoder.feed(data[start : start + chunk])
    out += encoder.finish()
    return bytes(out)


def jxl_decoded(stored: bytes) -> bytes:
    return b"".join(archive_codec.decoded(io.BytesIO(stored), Encoding.JPEGXL))


def test_real_slide_bytes_are_stored_zstd_and_come_back_bit_for_bit(
    sample_slide_path: Path,
) -> None:
    data = sample_slide_path.read_bytes()
    encoder, stored = encode(data)
    # CMU-1-Small-Region.svs: JPEG tiles barely shrink; the file as a whole by ~8 %.
    ratio = len(stored) / len(data)
    print(f"zstd-3 on {sample_slide_path.name}: {len(data)} -> {len(stored)} ({ratio:.4f})")
    assert encoder.encoding is Encoding.ZSTD and 0.85 < ratio < archive_codec.WORTH
    assert encoder.raw_bytes == len(data) and encoder.stored_bytes == len(stored)
    back = b"".join(archive_codec.decoded(io.BytesIO(stored), Encoding.ZSTD))
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


def test_incompressible_bytes_are_stored_raw_and_streamed() -> None:
    data = os.urandom(6 << 20)
    encoder, stored = encode(data, sample_bytes=2 << 20)
    assert encoder.encoding is Encoding.RAW and stored == data
    # Streaming: once the sample is decided, a chunk in is a chunk out (nothing kept).
    assert len(encoder.feed(b"x" * CHUNK)) == CHUNK
    back = b"".join(archive_codec.decoded(io.BytesIO(stored), Encoding.RAW))
    assert back == data


def test_an_archive_that_does_not_decode_is_refused() -> None:
    _, stored = encode(b"slide " * 200_000)
    broken = stored[:100] + bytes(50) + stored[150:]
    with pytest.raises(Exception, match=r"(?i)zstd|corrupt|error"):
        b"".join(archive_codec.decoded(io.BytesIO(broken), Encoding.ZSTD))


def test_object_names_carry_the_encoding() -> None:
    blob = "ab" * 32
    assert archive_codec.object_name(blob, Encoding.ZSTD) == f"{blob}.zst"
    assert archive_codec.encoding_of(f"file:///a/{blob}.zst") is Encoding.ZSTD
    assert archive_codec.encoding_of(f"file:///a/{blob}") is Encoding.RAW
    assert archive_codec.object_name(blob, Encoding.JPEGXL) == f"{blob}.ssjx"
    assert archive_codec.encoding_of(f"file:///a/{blob}.ssjx") is Encoding.JPEGXL


@pytest.mark.parametrize("backend", ["memory", "simplecache"])
def test_manifests_thumbnails_and_purge_on_fsspec_backends(backend: str, tmp_path: Path) -> None:
    base = (
        f"memory://archive-{uuid.uuid4().hex}"
        if backend == "memory"
        else f"simplecache::file://{tmp_path / 'archive'}"
    )
    blob = hashlib.sha256(b"blob").hexdigest()
    copy = ArchivedCopy(url=f"{base}/{blob}.zst", size=100, stored_bytes=90, encoding="zstd")

    class Nodes:
        async def fetch(self, node_url: str, path: str) -> bytes | None:
            return b"\xff\xd8\xffthumb" if "thumbnail" in path else b'{"vendor": "aperio"}'

    async def run() -> None:
        fs, root = fsspec.core.url_to_fs(base)
        fs.makedirs(root, exist_ok=True)
        with fs.open(f"{root}/{blob}.zst", "wb") as out:
            out.write(b"z" * 90)
        await archive.store_sidecars(Nodes(), "http://node", copy, blob, 3)  # type: ignore[arg-type]
        assert await archive.thumbnail(copy.url, blob) == b"\xff\xd8\xffthumb"
        [manifest] = await archive.manifests(base)
        assert (manifest.blob_id, manifest.url, manifest.target) == (blob, copy.url, 3)
        assert manifest.info == {"vendor": "aperio"}
        await archive.purge(copy.url, blob)
        assert await archive.manifests(base) == []
        # Gone from the archive itself (simplecache keeps a local copy of what it read:
        # the coordinator reads a thumbnail only for a row that still has its archive).
        for name in (f"{blob}.zst", f"{blob}.json", f"{blob}.thumbnail.jpg"):
            assert not fs.exists(f"{root}/{name}"), name

    asyncio.run(run())


def test_jpeg_xl_recompresses_real_tiles_bit_exactly(sample_slide_path: Path) -> None:
    """imagecodecs' ``jpegxl_encode_jpeg`` / ``jpegxl_decode_jpeg`` (libjxl's lossless JPEG
    transcoding) gives the tile's bytes back exactly, a quarter smaller: what the archive's
    JPEG XL container is built on."""
    if not imagecodecs.JPEGXL.available:
        pytest.skip("imagecodecs built without JPEG XL")
    with tifffile.TiffFile(sample_slide_path) as tiff:
        page = tiff.pages[0]
        tables = page.jpegtables or b""
        handle = tiff.filehandle
        pairs = list(zip(page.dataoffsets, page.databytecounts, strict=True))[:20]
        raw_total = jxl_total = 0
        for offset, count in pairs:
            handle.seek(offset)
            tile = handle.read(count)
            jpeg = tables[:-2] + tile[2:] if tables else tile  # a standalone JPEG
            jxl = imagecodecs.jpegxl_encode_jpeg(jpeg)
            assert imagecodecs.jpegxl_decode_jpeg(jxl) == jpeg
            raw_total, jxl_total = raw_total + len(jpeg), jxl_total + len(jxl)
    print(
        f"JPEG XL lossless recompression: {raw_total} -> {jxl_total} ({jxl_total / raw_total:.4f})"
    )
    assert jxl_total < 0.8 * raw_total


@needs_jpegxl
def test_the_real_slide_is_stored_as_jpeg_xl_and_comes_back_bit_for_bit(
    sample_slide_path: Path,
) -> None:
    data = sample_slide_path.read_bytes()
    found = tile_map.read_tile_map(sample_slide_path)
    # 130 level-0 tiles, and the thumbnail's and macro's JPEG strips (48 + 27).
    assert len(found) == 205 and found.covered > 0.8 * len(data)
    assert archive_codec.encoder_for(len(data), found).encoding is Encoding.JPEGXL
    encoder = JpegXlEncoder(found)
    stored = run(encoder, data)
    _, zstd = encode(data)
    ratio = len(stored) / len(data)
    print(
        f"JPEG XL container on {sample_slide_path.name}: {len(data)} -> {len(stored)} "
        f"({ratio:.4f} of raw, {len(stored) / len(zstd):.4f} of zstd-3); "
        f"{encoder.tiles_jpegxl} tiles as JPEG XL, {encoder.tiles_raw} raw"
    )
    # Level 0's tiles shrink to 0.75; the label (19 % of the file, LZW) hardly at all.
    assert ratio < 0.85 and len(stored) < 0.92 * len(zstd)
    assert encoder.tiles_jpegxl >= 130 and encoder.tiles_jpegxl + encoder.tiles_raw == 205
    assert (encoder.raw_bytes, encoder.stored_bytes) == (len(data), len(stored))
    back = jxl_decoded(stored)
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()


@needs_jpegxl
def test_a_generated_multi_level_slide_round_trips(generated_svs: Path) -> None:
    data = generated_svs.read_bytes()
    found = tile_map.read_tile_map(generated_svs)
    with tifffile.TiffFile(generated_svs) as tiff:
        jpeg_pages = [p for p in tiff.pages if p.compression == tile_map.JPEG]
    assert len(found.tables) == len(jpeg_pages) >= 4  # three levels, thumbnail, …
    encoder = JpegXlEncoder(found)
    stored = run(encoder, data, chunk=300_000)  # chunks that end mid-tile
    assert encoder.tiles_jpegxl > 0.9 * len(found) and len(stored) < 0.85 * len(data)
    assert jxl_decoded(stored) == data


def test_a_blob_that_is_not_a_tiff_has_no_tiles_and_is_stored_zstd_or_raw(
    tmp_path: Path, unopenable_tiff_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not a slide at all " * 50_000)
    assert len(tile_map.read_tile_map(text)) == 0
    # A TIFF without JPEG pages maps to nothing too.
    assert len(tile_map.read_tile_map(unopenable_tiff_path)) == 0
    data = text.read_bytes()
    chosen = archive_codec.encoder_for(len(data), tile_map.read_tile_map(text))
    assert isinstance(chosen, ArchiveEncoder)
    assert run(chosen, data) and chosen.encoding is Encoding.ZSTD
    # The container itself copes with no tiles: runs only, zstd where it pays.
    encoder = JpegXlEncoder(TileMap())
    stored = run(encoder, data)
    assert len(stored) < 0.1 * len(data) and jxl_decoded(stored) == data


@needs_jpegxl
def test_tiles_that_do_not_recompress_are_stored_raw(sample_slide_path: Path) -> None:
    """A real tile, a "tile" that is noise behind a JPEG SOI (libjxl refuses it), one whose
    JPEG XL would not be smaller (a tiny real tile) and one the map places past the end of
    the blob: only the first becomes JPEG XL, and every byte comes back."""
    with tifffile.TiffFile(sample_slide_path) as tiff:
        page = tiff.pages[0]
        tables = page.jpegtables
        tiff.filehandle.seek(page.dataoffsets[0])
        tile = tiff.filehandle.read(page.databytecounts[0])
    noise = b"\xff\xd8" + os.urandom(5000)
    data = b"head" + tile + b"gap" + noise + b"tail" + tile[:40]
    offsets = [4, 4 + len(tile) + 3, len(data) - 40]
    lengths = [len(tile), len(noise), 400]  # the last runs past the end
    found = TileMap(
        tables=[tables],
        offsets=b"".join(o.to_bytes(8, "little") for o in offsets),
        lengths=b"".join(n.to_bytes(4, "little") for n in lengths),
        pages=bytes(6),
    )
    encoder = JpegXlEncoder(found)
    stored = run(encoder, data, chunk=1000)
    assert (encoder.tiles_jpegxl, encoder.tiles_raw) == (1, 1)
    assert noise in stored  # kept as it was
    assert jxl_decoded(stored) == data


@needs_jpegxl
def test_the_encoder_holds_at_most_one_tile_or_one_segment(generated_svs: Path) -> None:
    data = generated_svs.read_bytes() + os.urandom(3 * CHUNK)  # a long run after the tiles
    found = tile_map.read_tile_map(generated_svs)
    largest = max(t.length for t in found.tiles())
    segment = 64 << 10
    encoder = JpegXlEncoder(found, segment=segment)
    bound = max(largest, segment)
    out = bytearray()
    for start in range(0, len(data), 4 * CHUNK):  # chunks far larger than a tile
        out += encoder.feed(data[start : start + 4 * CHUNK])
        assert encoder.buffered <= bound
        # What is not handed out yet is only what is held: nothing accumulates.
        assert encoder.raw_bytes - encoder.buffered <= len(data)
    out += encoder.finish()
    assert encoder.buffered == 0
    assert jxl_decoded(bytes(out)) == data


@needs_jpegxl
def test_a_corrupt_jpeg_xl_container_is_refused_as_source_corrupt(
    sample_slide_path: Path,
) -> None:
    data = sample_slide_path.read_bytes()
    stored = run(JpegXlEncoder(tile_map.read_tile_map(sample_slide_path)), data)
    # The first JPEG XL tile's body, trampled.
    at = stored.index(b"J", len(archive_codec.MAGIC)) + archive_codec.HEADER.size + 40
    broken = {
        "trampled tile": stored[:at] + bytes(200) + stored[at + 200 :],
        "cut short": stored[: len(stored) // 2],
        "no end": stored[: -archive_codec.HEADER.size],
        "bad magic": b"XXXX" + stored[4:],
        "huge segment": archive_codec.MAGIC + archive_codec.HEADER.pack(b"R", 1 << 31, 1 << 31, 0),
        "bytes after the end": stored + b"x",
    }
    for name, corrupt in broken.items():
        with pytest.raises(ArchiveCorrupt) as caught:
            jxl_decoded(corrupt)
        assert isinstance(caught.value, SourceCorrupt), name  # 502 source_corrupt on a node


@needs_jpegxl
def test_tiles_decode_ahead_on_threads_yet_come_out_in_order(sample_slide_path: Path) -> None:
    """Restores decode JPEG XL tiles on a few threads: the bytes still come in order, a bad
    tile far ahead fails the restore only when the reader reaches it (everything before it
    was right), and a reader that stops early leaves no decoding thread behind."""
    data = sample_slide_path.read_bytes()
    stored = run(JpegXlEncoder(tile_map.read_tile_map(sample_slide_path)), data)
    good = archive_codec.decoded(io.BytesIO(stored), Encoding.JPEGXL)
    head = bytearray()
    while len(head) < len(data) // 2:  # well into the level-0 tiles
        head += next(good)
    assert data.startswith(head)
    decoding = [t for t in threading.enumerate() if t.name.startswith("ssjx-decode")]
    assert len(decoding) == archive_codec.DECODE_THREADS >= 1
    good.close()  # the reader stops: the pool is shut down, nothing left running
    assert not any(t.is_alive() for t in decoding)

    last = stored.rindex(b"J")  # the last tile's header (kind byte)
    while archive_codec.HEADER.unpack_from(stored, last)[0] != b"J":
        last = stored.rindex(b"J", 0, last)
    at = last + archive_codec.HEADER.size + 40
    trampled = stored[:at] + bytes(200) + stored[at + 200 :]
    out = bytearray()

    def read_all() -> None:
        for chunk in archive_codec.decoded(io.BytesIO(trampled), Encoding.JPEGXL):
            out.extend(chunk)

    with pytest.raises(ArchiveCorrupt):
        read_all()
    assert len(out) > len(data) // 2 and data.startswith(out)


def test_tile_maps_are_compact_and_checked_when_decoded(sample_slide_path: Path) -> None:
    found = tile_map.read_tile_map(sample_slide_path)
    wire = tile_map.encode(found)
    assert tile_map.decode(wire) == found
    tables = sum(len(t) for t in found.tables)
    assert len(wire) - tables < 16 * len(found)  # 14 bytes a tile and a few of framing
    lying = TileMap(tables=[b""], offsets=bytes(16), lengths=bytes(8), pages=bytes(4))
    with pytest.raises(msgspec.ValidationError):
        tile_map.decode(tile_map.encode(lying)[:-2] + b"\x01\x00")  # a page out of range
    with pytest.raises(msgspec.ValidationError):
        tile_map.decode(msgspec.msgpack.encode({"offsets": bytes(9)}))


@pytest.fixture(scope="module")
def slide_node(
    tmp_path_factory: pytest.TempPathFactory, sample_slide_path: Path
) -> Iterator[tuple[NodeProcess, str, str]]:
    """A node process holding the real slide and a blob of random bytes."""
    data_dir = tmp_path_factory.mktemp("archive-node") / "data"
    store = BlobStore(data_dir / "blobs", reserve_bytes=0)
    slide_id = store.put(sample_slide_path.read_bytes())
    noise_id = store.put(os.urandom(300_000))
    with NodeProcess(data_dir, settings={"secret": SECRET}) as node:
        yield node, slide_id, noise_id


SECRET = tokens.new_secret()


def test_the_node_serves_a_blobs_tile_map_to_a_download_token_of_that_blob_only(
    slide_node: tuple[NodeProcess, str, str], sample_slide_path: Path
) -> None:
    node, slide_id, noise_id = slide_node

    def tiles(blob: str, *ops: Operation, of: str | None = None) -> httpx.Response:
        token = tokens.mint(SECRET, ops=set(ops), blob=of or blob, ttl=60)
        return httpx.get(f"{node.url}/blobs/{blob}/tiles", params={"token": token}, timeout=30)

    answer = tiles(slide_id, Operation.DOWNLOAD)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == tile_map.MEDIA_TYPE
    assert tile_map.decode(answer.content) == tile_map.read_tile_map(sample_slide_path)
    assert len(tile_map.decode(tiles(noise_id, Operation.DOWNLOAD).content)) == 0
    # A viewer's read token (and labels) do not tell the file's layout; nor does a
    # download token of another blob.
    for refused in (
        tiles(slide_id, Operation.READ, Operation.LABELS),
        tiles(slide_id, Operation.DOWNLOAD, of=noise_id),
    ):
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    missing = tiles("0" * 64, Operation.DOWNLOAD)
    assert missing.status_code == 404 and missing.json()["error"] == "blob_not_found"


@needs_jpegxl
def test_the_coordinator_archives_jpeg_xl_off_the_event_loop_and_paced(
    slide_node: tuple[NodeProcess, str, str], tmp_path: Path, sample_slide_path: Path
) -> None:
    """``NodeClient.archive`` against the real node: JPEG XL when the setting allows it,
    zstd when it does not; the event loop stays free while libjxl works, and a
    ``bytes_per_second`` cap still paces the copy."""
    node, slide_id, _ = slide_node
    size = sample_slide_path.stat().st_size

    async def archive(jpegxl: bool, rate: float | None) -> tuple[ArchivedCopy, float, float]:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async with httpx.AsyncClient() as client:
            ticker = asyncio.ensure_future(tick())
            started = time.monotonic()
            copy = await NodeClient(SECRET, client).archive(
                node.url, slide_id, f"file://{tmp_path}/{jpegxl}-{rate}", rate, jpegxl=jpegxl
            )
            took = time.monotonic() - started
            ticker.cancel()
        return copy, took, max(gaps)

    jxl, took, gap = asyncio.run(archive(True, None))
    plain, _, _ = asyncio.run(archive(False, None))
    assert (jxl.encoding, plain.encoding) == ("jpegxl", "zstd")
    assert jxl.url.endswith(".ssjx") and jxl.stored_bytes < 0.92 * plain.stored_bytes
    # A 1 MiB chunk is ~0.5 s of libjxl: on the loop, the ticker would have waited that.
    assert gap < 0.2 < took, (gap, took)
    stored = Path(jxl.url.removeprefix("file://")).read_bytes()
    assert hashlib.sha256(jxl_decoded(stored)).hexdigest() == slide_id
    paced, took, _ = asyncio.run(archive(True, 1e6))
    assert paced.encoding == "jpegxl" and took >= 0.95 * size / 1e6
