"""A read-only zarr v3 store whose keys are computed from a pyramid on request.

Layout: ``zarr.json`` (group, OME-Zarr 0.5), ``{level}/zarr.json`` (arrays) and chunks
``{level}/c/0/{row}/{col}`` (default chunk key encoding of a ``(3, h, w)`` array).
Decoding a chunk blocks, so the async methods hand it to a worker thread and the event
loop zarr runs on stays free.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Protocol

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from slidestore.geometry import LevelInfo
from slidestore.source import SlideSource


class KeySource(Protocol):
    """What the store reads (a :class:`~slidestore.pyramid.Pyramid`): the store does not
    know how keys are computed, so the pyramid can own its store without a cycle."""

    @property
    def slide(self) -> SlideSource: ...

    @property
    def levels(self) -> Sequence[LevelInfo]: ...

    @property
    def metadata_keys(self) -> frozenset[str]: ...

    def get_key(self, key: str) -> bytes | None: ...

    def chunk_address(self, key: str) -> tuple[int, int, int] | None: ...


def byte_slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    """The part of ``data`` a zarr byte request asks for (clipped like a file read)."""
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[max(0, len(data) - byte_range.suffix) :]
    raise TypeError(f"unexpected byte range {byte_range!r}")


def index(text: str) -> int | None:
    """The number a key segment spells in canonical form (``"7"``, not ``"07"`` or ``"+7"``)."""
    if not (text.isascii() and text.isdigit()) or (text[0] == "0" and text != "0"):
        return None
    return int(text)


class PyramidStore(Store):
    """The pyramid as zarr keys. Read-only: every write raises ``ValueError``."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True

    def __init__(self, pyramid: KeySource) -> None:
        super().__init__(read_only=True)
        self.pyramid = pyramid

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PyramidStore) and other.pyramid is self.pyramid

    def __hash__(self) -> int:
        return hash(id(self.pyramid))

    def __repr__(self) -> str:
        return f"PyramidStore({self.pyramid.slide.path.name!r})"

    def with_read_only(self, read_only: bool = False) -> PyramidStore:
        if not read_only:
            raise ValueError("a PyramidStore is always read-only")
        return PyramidStore(self.pyramid)

    # -- reads -------------------------------------------------------------------------

    def _value(
        self, key: str, prototype: BufferPrototype | None, byte_range: ByteRequest | None
    ) -> Buffer | None:
        data = self.pyramid.get_key(key)
        if data is None:
            return None
        return (prototype or default_buffer_prototype()).buffer.from_bytes(
            byte_slice(data, byte_range)
        )

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if key in self.pyramid.metadata_keys:  # precomputed: not worth a thread hop
            return self._value(key, prototype, byte_range)
        return await asyncio.to_thread(self._value, key, prototype, byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        return self._value(key, prototype, byte_range)

    async def exists(self, key: str) -> bool:
        return key in self.pyramid.metadata_keys or self.pyramid.chunk_address(key) is not None

    async def getsize(self, key: str) -> int:
        if key in self.pyramid.metadata_keys:
            return len(self.pyramid.get_key(key) or b"")
        address = self.pyramid.chunk_address(key)
        if address is None:
            raise FileNotFoundError(key)
        level = self.pyramid.levels[address[0]]
        return 3 * level.tile_width * level.tile_height  # uint8, uncompressed

    # -- writes ------------------------------------------------------------------------

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()

    def set_sync(self, key: str, value: Buffer) -> None:
        self._check_writable()

    async def delete(self, key: str) -> None:
        self._check_writable()

    def delete_sync(self, key: str) -> None:
        self._check_writable()

    # -- listing -----------------------------------------------------------------------

    def _children(self, prefix: str) -> list[str]:
        """Names directly below ``prefix`` (a key path without trailing slash)."""
        parts = [p for p in prefix.split("/") if p]
        levels = self.pyramid.levels
        if not parts:
            return ["zarr.json", *(str(level.index) for level in levels)]
        number = index(parts[0])
        if number is None or number >= len(levels):
            return []
        level = levels[number]
        match parts[1:]:
            case []:
                return ["zarr.json", "c"]
            case ["c"]:
                return ["0"]
            case ["c", "0"]:
                return [str(r) for r in range(level.rows)]
            case ["c", "0", row] if (r := index(row)) is not None and r < level.rows:
                return [str(c) for c in range(level.columns)]
        return []

    def _walk(self, prefix: str) -> Iterator[str]:
        for name in self._children(prefix):
            key = f"{prefix}/{name}" if prefix else name
            if key.endswith("zarr.json") or self.pyramid.chunk_address(key) is not None:
                yield key
            else:
                yield from self._walk(key)

    async def list(self) -> AsyncIterator[str]:
        for key in self._walk(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        # Start the walk at the deepest complete path the prefix names, then filter.
        start = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        for key in self._walk(start):
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        for name in self._children(prefix.strip("/")):
            yield name
