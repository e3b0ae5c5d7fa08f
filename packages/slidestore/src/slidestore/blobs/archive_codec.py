"""How a blob is stored in the archive: JPEG XL tiles, zstd or raw, whichever pays.

Slides are mostly JPEG tiles, which zstd barely shrinks (CMU-1-Small-Region.svs: 8 % at
level 3, from its uncompressed thumbnail/label/macro strips and TIFF structure). libjxl
does better: it recompresses a JPEG losslessly, into a JPEG XL that decodes back to the
very same JPEG bytes, a quarter smaller on that scan's level 0.

:class:`JpegXlEncoder` stores a TIFF as a container of sequential segments
(:data:`MAGIC`, then ``kind, stored, original, cut`` headers, see :data:`HEADER`): the
byte runs between tiles, at most :data:`SEGMENT` each, zstd-compressed when that pays,
else raw, and the tiles — each as the JPEG XL of the standalone JPEG it makes with its
page's JPEGTables (``tables[:-2] + tile[2:]``), rebuilt as ``jpeg[:2] + jpeg[cut:]``, or
raw when its JPEG XL is not smaller, does not encode, or does not decode back to the
identical tile (each tile's round trip is checked as it is encoded). The tiles' places
come up front from a :class:`~slidestore.blobs.tile_map.TileMap` (the node holding the
blob reads it from the TIFF's directories), so the blob still streams front to back and
the encoder holds one tile or one segment at most. :func:`encoder_for` picks it when the
tiles hold at least :data:`JPEGXL_COVERAGE` of the blob.

Measured on CMU-1-Small-Region.svs (1.94 MB, 80 % of it JPEG tiles and strips): 0.82 of
its size, 0.90 of zstd's 0.92 (level 0's tiles shrink to 0.75, the thumbnail's and
macro's strips to 0.91, some not at all, and the 19 % that is an LZW label hardly does);
a slide of many GB is nearly all level-0 tiles, so nearer 0.75. It costs CPU: ~1.8 MB/s
to encode (with each tile's check) and ~10 MB/s to decode, on one core; decoding runs on
up to :data:`DECODE_THREADS` threads (libjxl releases the GIL).

Otherwise :class:`ArchiveEncoder` decides from the blob's first :data:`SAMPLE_BYTES`:
zstd only when the sample compresses to at most :data:`WORTH` of its size. Either way
memory stays bounded: the sample is the only buffer, the rest streams chunk by chunk
(one zstd frame for the whole blob, so ``zstd -d`` restores it too). Decoding streams as
well, and whoever restores checks the sha256 of what comes out against the blob id; an
object that does not decode is :class:`ArchiveCorrupt`.

The object's name carries its encoding: ``{blob_id}`` (raw), ``{blob_id}.zst`` or
``{blob_id}.ssjx`` (JPEG XL container).
"""

from __future__ import annotations

import collections
import enum
import os
import struct
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Final, Protocol

import imagecodecs
import zstandard

from slidestore.blobs.tile_map import Tile, TileMap
from slidestore.errors import SourceCorrupt

#: Bytes the decision is made on (and buffered before the first write).
SAMPLE_BYTES: Final = 4 << 20
#: zstd is kept when the sample shrinks to at most this fraction.
WORTH: Final = 0.97
LEVEL: Final = 3
#: What a decoder hands out at a time.
READ_CHUNK: Final = 1 << 20


#: The JPEG XL container is chosen when the tiles hold at least this fraction of the blob.
JPEGXL_COVERAGE: Final = 0.5
#: Most original bytes in one run segment (and what the encoder holds besides a tile).
SEGMENT: Final = 1 << 20
#: Larger tiles are left in the runs: no segment, stored or decoded, is ever larger.
MAX_TILE: Final = 16 << 20
MAGIC: Final = b"SSJX\x01"
#: A segment's kind (R raw, Z zstd, J JPEG XL tile, E end), its stored and original
#: sizes, and for a tile how much of the rebuilt JPEG after its SOI is its page's tables.
HEADER: Final = struct.Struct("<cIII")
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
#: Threads decoding a container's tiles: a restore is what a user waits for.
DECODE_THREADS: Final = min(8, os.cpu_count() or 1)
#: Tiles decoded ahead of the reader (memory: that many tiles, ~50 KB each).
DECODE_AHEAD: Final = 4 * DECODE_THREADS


class ArchiveCorrupt(SourceCorrupt):
    """An archived object that does not decode (zstd or the JPEG XL container)."""


class Encoding(enum.StrEnum):
    RAW = "raw"
    ZSTD = "zstd"
    JPEGXL = "jpegxl"

    @property
    def suffix(self) -> str:
        return _SUFFIXES[self]


_SUFFIXES: Final = {Encoding.RAW: "", Encoding.ZSTD: ".zst", Encoding.JPEGXL: ".ssjx"}


def object_name(blob_id: str, encoding: Encoding) -> str:
    return f"{blob_id}{encoding.suffix}"


def encoding_of(name: str) -> Encoding:
    """The encoding an archived object's name (or URL) says."""
    for encoding, suffix in _SUFFIXES.items():
        if suffix and name.endswith(suffix):
            return encoding
    return Encoding.RAW


def jpegxl_available() -> bool:
    return bool(imagecodecs.JPEGXL.available)


class Encoder(Protocol):
    """What the archive writer drives: :class:`ArchiveEncoder` or :class:`JpegXlEncoder`."""

    encoding: Encoding | None
    raw_bytes: int
    stored_bytes: int

    def feed(self, chunk: bytes | memoryview) -> bytes: ...
    def finish(self) -> bytes: ...


def encoder_for(size: int, tile_map: TileMap | None) -> Encoder:
    """JPEG XL when tiles hold :data:`JPEGXL_COVERAGE` of the ``size`` bytes (and libjxl
    is there), else the zstd-or-raw decision."""
    if (
        tile_map is not None
        and size > 0
        and tile_map.covered >= JPEGXL_COVERAGE * size
        and jpegxl_available()
    ):
        return JpegXlEncoder(tile_map)
    return ArchiveEncoder()


class ArchiveEncoder:
    """Feed the blob's bytes in order; write what :meth:`feed` and :meth:`finish` return.

    :attr:`encoding` is None until the sample is in (or :meth:`finish` ran): open the
    object, named by :func:`object_name`, once it is set.
    """

    def __init__(self, *, sample_bytes: int = SAMPLE_BYTES, level: int = LEVEL) -> None:
        self.sample_bytes = sample_bytes
        self.level = level
        self.encoding: Encoding | None = None
        self.raw_bytes = 0
        self.stored_bytes = 0
        self._sample = bytearray()
        self._compressor: zstandard.ZstdCompressionObj | None = None

    def feed(self, chunk: bytes | memoryview) -> bytes:
        self.raw_bytes += len(chunk)
        if self.encoding is None:
            self._sample += chunk
            if len(self._sample) < self.sample_bytes:
                return b""
            return self._decide()
        return self._out(self._encode(bytes(chunk)))

    def finish(self) -> bytes:
        out = self._decide() if self.encoding is None else b""
        if self._compressor is not None:
            out += self._out(self._compressor.flush())
        return out

    def _decide(self) -> bytes:
        sample, self._sample = bytes(self._sample), bytearray()
        trial = zstandard.ZstdCompressor(level=self.level).compress(sample)
        if sample and len(trial) <= WORTH * len(sample):
            self.encoding = Encoding.ZSTD
            self._compressor = zstandard.ZstdCompressor(level=self.level).compressobj()
            return self._out(self._compressor.compress(sample))
        self.encoding = Encoding.RAW
        return self._out(sample)

    def _encode(self, chunk: bytes) -> bytes:
        return chunk if self._compressor is None else self._compressor.compress(chunk)

    def _out(self, data: bytes) -> bytes:
        self.stored_bytes += len(data)
        return data


class JpegXlEncoder:
    """The JPEG XL container, fed like :class:`ArchiveEncoder` (its encoding is known from
    the start). CPU-bound (libjxl, single-threaded per tile): call it off the event loop.

    Holds at most one tile (up to :data:`MAX_TILE`) or one run segment (:data:`SEGMENT`)
    besides the chunk being fed: :attr:`buffered`.
    """

    def __init__(self, tile_map: TileMap, *, segment: int = SEGMENT, level: int = LEVEL) -> None:
        self.encoding: Encoding | None = Encoding.JPEGXL
        self.segment = segment
        self.raw_bytes = 0
        self.stored_bytes = 0
        self.tiles_jpegxl = 0
        self.tiles_raw = 0
        self._tiles = _in_order(tile_map)
        self._next = next(self._tiles, None)
        self._held = bytearray()
        self._start = 0
        """Where :attr:`_held` begins in the blob."""
        self._in_tile = self._next is not None and self._next.offset == 0
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._started = False

    @property
    def buffered(self) -> int:
        return len(self._held)

    def feed(self, chunk: bytes | memoryview) -> bytes:
        self.raw_bytes += len(chunk)
        out = [self._magic()]
        view = memoryview(chunk)
        while view:
            end = self._boundary()
            take = min(end - self._start - len(self._held), len(view))
            self._held += view[:take]
            view = view[take:]
            if self._start + len(self._held) == end:
                out.append(self._emit(complete=True))
        return self._out(b"".join(out))

    def finish(self) -> bytes:
        # A tile cut short by the end of the blob (a map that promised too much) is a run.
        tail = self._emit(complete=False) if self._held else b""
        return self._out(self._magic() + tail + HEADER.pack(b"E", 0, 0, 0))

    def _magic(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return MAGIC

    def _boundary(self) -> int:
        """Where the segment being held ends."""
        if self._in_tile:
            assert self._next is not None
            return self._next.offset + self._next.length
        limit = self._start + self.segment
        return limit if self._next is None else min(limit, self._next.offset)

    def _emit(self, *, complete: bool) -> bytes:
        data = bytes(self._held)
        self._held.clear()
        if self._in_tile and complete:
            assert self._next is not None
            segment = self._tile(data, self._next.tables)
            self._next = next(self._tiles, None)
        else:
            segment = self._run(data)
        self._start += len(data)
        self._in_tile = self._next is not None and self._next.offset == self._start
        return segment

    def _run(self, data: bytes) -> bytes:
        packed = self._compressor.compress(data)
        if len(packed) <= WORTH * len(data):
            return HEADER.pack(b"Z", len(packed), len(data), 0) + packed
        return HEADER.pack(b"R", len(data), len(data), 0) + data

    def _tile(self, tile: bytes, tables: bytes) -> bytes:
        jxl = _recompressed(tile, tables)
        if jxl is None:
            self.tiles_raw += 1
            return HEADER.pack(b"R", len(tile), len(tile), 0) + tile
        self.tiles_jpegxl += 1
        return HEADER.pack(b"J", len(jxl), len(tile), _cut(tables)) + jxl

    def _out(self, data: bytes) -> bytes:
        self.stored_bytes += len(data)
        return data


def _in_order(tile_map: TileMap) -> Iterator[Tile]:
    """The map's tiles by offset, without overlaps or oversized ones."""
    end = 0
    for tile in tile_map.tiles():
        if tile.offset >= end and 0 < tile.length <= MAX_TILE:
            end = tile.offset + tile.length
            yield tile


def _cut(tables: bytes) -> int:
    return len(tables) - 2 if tables else 0


def _rebuilt(jpeg: bytes, cut: int) -> bytes:
    """The tile's own bytes from the standalone JPEG (its page's tables taken out)."""
    return jpeg if cut == 0 else jpeg[:2] + jpeg[cut:]


def _recompressed(tile: bytes, tables: bytes) -> bytes | None:
    """The tile's JPEG XL, if it is smaller and gives the tile back exactly."""
    if tables:
        if not (tables.startswith(_SOI) and tables.endswith(_EOI) and tile.startswith(_SOI)):
            return None
        jpeg = tables[:-2] + tile[2:]
    else:
        jpeg = tile
    try:
        jxl = imagecodecs.jpegxl_encode_jpeg(jpeg, numthreads=1)
        back = bytes(imagecodecs.jpegxl_decode_jpeg(jxl, numthreads=1))
    except imagecodecs.JpegxlError:
        return None
    if len(jxl) + HEADER.size >= len(tile) or _rebuilt(back, _cut(tables)) != tile:
        return None
    return bytes(jxl)


def decoded(stored: IO[bytes], encoding: Encoding) -> Iterator[bytes]:
    """The original bytes of an archived object, :data:`READ_CHUNK` (or a segment) at a
    time; :class:`ArchiveCorrupt` if it does not decode."""
    if encoding is Encoding.JPEGXL:
        yield from _container(stored)
        return
    reader: IO[bytes] = stored
    if encoding is Encoding.ZSTD:
        reader = zstandard.ZstdDecompressor().stream_reader(stored, read_size=READ_CHUNK)
    try:
        while chunk := reader.read(READ_CHUNK):
            yield chunk
    except zstandard.ZstdError as exc:
        raise ArchiveCorrupt(f"zstd: {exc}") from None


def _container(stored: IO[bytes]) -> Iterator[bytes]:
    """The container's segments decoded in order; JPEG XL tiles on a few threads at once
    (libjxl releases the GIL), at most :data:`DECODE_AHEAD` tiles ahead of the reader."""
    pending: collections.deque[Future[bytes] | bytes] = collections.deque()
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="ssjx-decode") as pool:
        try:
            for kind, body, original, cut in _segments(stored):
                if kind == b"J":
                    pending.append(pool.submit(_tile_decoded, body, original, cut))
                else:
                    pending.append(body)
                while len(pending) > DECODE_AHEAD or (pending and _ready(pending[0])):
                    yield _result(pending.popleft())
            while pending:
                yield _result(pending.popleft())
        finally:
            for item in pending:
                if isinstance(item, Future):
                    item.cancel()


def _ready(item: Future[bytes] | bytes) -> bool:
    return not isinstance(item, Future) or item.done()


def _result(item: Future[bytes] | bytes) -> bytes:
    return item.result() if isinstance(item, Future) else item


def _segments(stored: IO[bytes]) -> Iterator[tuple[bytes, bytes, int, int]]:
    """``(kind, body, original size, cut)`` of each segment; runs already decoded (zstd is
    cheap and its decompressor not thread-safe), tiles still JPEG XL."""
    if _exactly(stored, len(MAGIC)) != MAGIC:
        raise ArchiveCorrupt("not a JPEG XL archive container (bad magic)")
    unzstd = zstandard.ZstdDecompressor()
    while True:
        kind, size, original, cut = HEADER.unpack(_exactly(stored, HEADER.size))
        if kind == b"E":
            if size or original or stored.read(1):
                raise ArchiveCorrupt("JPEG XL container: bytes after its end")
            return
        # Sizes are checked before anything is read or decoded: no corrupt header makes
        # the decoder allocate more than the encoder ever wrote.
        if size > MAX_TILE or original > MAX_TILE:
            raise ArchiveCorrupt(f"JPEG XL container: a {kind!r} segment of {size} bytes")
        body = _exactly(stored, size)
        if kind == b"R":
            out = body
        elif kind == b"Z":
            try:
                out = unzstd.decompress(body, max_output_size=original)
            except zstandard.ZstdError as exc:
                raise ArchiveCorrupt(f"JPEG XL container: {kind!r} segment: {exc}") from None
        elif kind == b"J":
            yield kind, body, original, cut
            continue
        else:
            raise ArchiveCorrupt(f"JPEG XL container: unknown segment kind {kind!r}")
        _check_length(kind, out, original)
        yield kind, out, original, cut


def _tile_decoded(body: bytes, original: int, cut: int) -> bytes:
    try:
        out = _rebuilt(bytes(imagecodecs.jpegxl_decode_jpeg(body, numthreads=1)), cut)
    except imagecodecs.JpegxlError as exc:
        raise ArchiveCorrupt(f"JPEG XL container: {b'J'!r} segment: {exc}") from None
    _check_length(b"J", out, original)
    return out


def _check_length(kind: bytes, out: bytes, original: int) -> None:
    if len(out) != original:
        raise ArchiveCorrupt(
            f"JPEG XL container: a {kind!r} segment gave {len(out)} bytes, not {original}"
        )


def _exactly(stored: IO[bytes], count: int) -> bytes:
    data = stored.read(count)
    if len(data) != count:
        raise ArchiveCorrupt("JPEG XL container cut short")
    return data
