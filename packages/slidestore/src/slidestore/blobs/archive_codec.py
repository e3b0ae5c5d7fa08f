"""How a blob is stored in the archive: zstd when that is smaller, as is otherwise.

Slides are mostly JPEG tiles, which zstd barely shrinks (CMU-1-Small-Region.svs: 8 % at
level 3, from its uncompressed thumbnail/label/macro strips and TIFF structure), so the
encoder decides from the blob's first :data:`SAMPLE_BYTES`: zstd only when the sample
compresses to at most :data:`WORTH` of its size. Either way memory stays bounded: the
sample is the only buffer, the rest streams chunk by chunk (one zstd frame for the whole
blob, so ``zstd -d`` restores it too). Decoding streams as well, and whoever restores
checks the sha256 of what comes out against the blob id.

The object's name carries its encoding: ``{blob_id}`` (raw) or ``{blob_id}.zst``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import IO, Final

import zstandard

#: Bytes the decision is made on (and buffered before the first write).
SAMPLE_BYTES: Final = 4 << 20
#: zstd is kept when the sample shrinks to at most this fraction.
WORTH: Final = 0.97
LEVEL: Final = 3
#: What a decoder hands out at a time.
READ_CHUNK: Final = 1 << 20


class Encoding(enum.StrEnum):
    RAW = "raw"
    ZSTD = "zstd"

    @property
    def suffix(self) -> str:
        return ".zst" if self is Encoding.ZSTD else ""


def object_name(blob_id: str, encoding: Encoding) -> str:
    return f"{blob_id}{encoding.suffix}"


def encoding_of(name: str) -> Encoding:
    """The encoding an archived object's name (or URL) says."""
    return Encoding.ZSTD if name.endswith(".zst") else Encoding.RAW


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


def decoded(stored: IO[bytes], encoding: Encoding) -> Iterator[bytes]:
    """The original bytes of an archived object, :data:`READ_CHUNK` at a time."""
    reader: IO[bytes] = stored
    if encoding is Encoding.ZSTD:
        reader = zstandard.ZstdDecompressor().stream_reader(stored, read_size=READ_CHUNK)
    while chunk := reader.read(READ_CHUNK):
        yield chunk
