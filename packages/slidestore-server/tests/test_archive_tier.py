"""The archive tier's pieces in one process: the codec on real slide bytes (zstd where it
pays, raw where it does not, the original back bit for bit), and the archive's layout
(manifest, thumbnail, purge) on two fsspec backends — ``memory://`` (per process: fine
here, useless between a coordinator and nodes) and the ``simplecache::file://`` chain the
cluster tests can share between processes. JPEG XL's lossless JPEG recompression is
measured on the real slide's tiles too (see the report in the README)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
from pathlib import Path

import fsspec
import imagecodecs
import pytest
import tifffile

from slidestore.blobs import archive_codec
from slidestore.blobs.archive_codec import ArchiveEncoder, Encoding
from slidestore_server.coordinator import archive
from slidestore_server.coordinator.nodes import ArchivedCopy

CHUNK = 1 << 20


def encode(data: bytes, **options: int) -> tuple[ArchiveEncoder, bytes]:
    encoder = ArchiveEncoder(**options)
    out = bytearray()
    for start in range(0, len(data), CHUNK):
        out += encoder.feed(data[start : start + CHUNK])
    out += encoder.finish()
    return encoder, bytes(out)


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
    transcoding) gives the tile's bytes back exactly, a third smaller. The archive does not
    use it (yet): an archived slide would need a tile-aware container that rebuilds the
    TIFF around the tiles bit for bit; this measures what such a format would gain."""
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
