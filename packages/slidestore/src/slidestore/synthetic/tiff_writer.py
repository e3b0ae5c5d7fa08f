"""A minimal streaming TIFF / BigTIFF writer: image data first, directories last.

Slides are written as they are generated, so the writer appends tile and strip data as
it comes and keeps only each page's tags (offset arrays are small: one integer per
tile). All IFDs go after the data, in the order pages were added, which is what the
format prescribes for Aperio (level 0, thumbnail, lower levels, label, macro) while the
data itself stays in generation order.

Because the header is written last, the choice between classic TIFF and BigTIFF can be
made when the final size is known: 16 bytes are reserved at the start (the BigTIFF
header size); a classic header uses the first 8 and leaves the rest unused, which TIFF
allows.
"""

from __future__ import annotations

import enum
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

_HEADER_SPACE: Final = 16
_CLASSIC_LIMIT: Final = 2**32 - 1


class TagType(enum.IntEnum):
    ASCII = 2
    SHORT = 3
    LONG = 4
    UNDEFINED = 7
    LONG8 = 16


class TiffTooLargeError(ValueError):
    """Classic TIFF was requested but the file is larger than 32-bit offsets can address."""


@dataclass(frozen=True, slots=True)
class Tag:
    """One IFD entry. ``offsets=True`` stores LONG in classic TIFF and LONG8 in BigTIFF."""

    code: int
    type: TagType
    values: bytes | Sequence[int] | npt.NDArray[np.uint64]
    offsets: bool = False

    @staticmethod
    def ascii(code: int, text: str) -> Tag:
        return Tag(code, TagType.ASCII, text.encode("ascii") + b"\0")

    @staticmethod
    def short(code: int, *values: int) -> Tag:
        return Tag(code, TagType.SHORT, values)

    @staticmethod
    def long(code: int, *values: int) -> Tag:
        return Tag(code, TagType.LONG, values)

    @staticmethod
    def undefined(code: int, data: bytes) -> Tag:
        return Tag(code, TagType.UNDEFINED, data)

    @staticmethod
    def offsets_array(code: int, values: npt.NDArray[np.uint64]) -> Tag:
        return Tag(code, TagType.LONG8, values, offsets=True)

    @staticmethod
    def counts_array(code: int, values: npt.NDArray[np.uint64]) -> Tag:
        return Tag(code, TagType.LONG, values)

    def encoded(self, bigtiff: bool) -> tuple[TagType, int, bytes]:
        """(type actually written, value count, little-endian value bytes)."""
        if isinstance(self.values, bytes):
            return self.type, len(self.values), self.values
        kind = self.type
        if self.offsets and not bigtiff:
            kind = TagType.LONG
        dtype = {TagType.SHORT: "<u2", TagType.LONG: "<u4", TagType.LONG8: "<u8"}[kind]
        array = np.asarray(self.values)
        if array.size and int(array.max()) > np.iinfo(dtype).max:
            raise TiffTooLargeError(f"tag {self.code}: value {int(array.max())} exceeds {dtype}")
        return kind, int(array.size), array.astype(dtype).tobytes()


class TiffWriter:
    """Append data with :meth:`append`, describe pages with :meth:`add_page`, then :meth:`finish`."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._file.write(b"\0" * _HEADER_SPACE)
        self.position = _HEADER_SPACE
        self._pages: list[list[Tag]] = []

    def append(self, data: bytes) -> int:
        """Write ``data`` at the end of the file; returns its offset."""
        offset = self.position
        self._file.write(data)
        self.position += len(data)
        return offset

    def append_file(self, source: BinaryIO) -> int:
        """Copy all of ``source`` (a spool file) to the end; returns where it starts."""
        offset = self.position
        size = source.seek(0, 2)
        source.seek(0)
        shutil.copyfileobj(source, self._file, length=1 << 22)
        self.position += size
        return offset

    def add_page(self, tags: Sequence[Tag]) -> None:
        self._pages.append(sorted(tags, key=lambda tag: tag.code))

    def _directory_size(self, bigtiff: bool) -> int:
        """Bytes the IFDs and their out-of-line values will take after the data."""
        entry, inline, head = (20, 8, 16) if bigtiff else (12, 4, 6)
        total = 8  # worst-case alignment padding before the first value
        for tags in self._pages:
            total += head + entry * len(tags) + 8
            for tag in tags:
                if tag.offsets:  # their values may not fit yet; only their size matters
                    nbytes = np.asarray(tag.values).size * (8 if bigtiff else 4)
                else:
                    nbytes = len(tag.encoded(bigtiff)[2])
                if nbytes > inline:
                    total += nbytes + 8
        return total

    def finish(self, bigtiff: bool | None) -> bool:
        """Write the directories and the header. ``None`` picks BigTIFF only when needed.

        Returns whether the file is a BigTIFF.
        """
        if bigtiff is None:
            bigtiff = self.position + self._directory_size(False) > _CLASSIC_LIMIT
        elif not bigtiff and self.position + self._directory_size(False) > _CLASSIC_LIMIT:
            raise TiffTooLargeError(
                f"{self.position} bytes of image data do not fit a classic TIFF; use BigTIFF"
            )
        entry_format, inline, count_format = ("<HHQ", 8, "<Q") if bigtiff else ("<HHI", 4, "<H")
        next_format = "<Q" if bigtiff else "<I"
        align = 8 if bigtiff else 2

        # Out-of-line values first, then every IFD, each pointing at the next.
        encoded_pages = []
        for tags in self._pages:
            entries = []
            for tag in tags:
                kind, count, data = tag.encoded(bigtiff)
                if len(data) > inline:
                    self._pad(align)
                    field = struct.pack(next_format, self.append(data))
                else:
                    field = data.ljust(inline, b"\0")
                entries.append(struct.pack(entry_format, tag.code, kind, count) + field)
            encoded_pages.append(entries)

        self._pad(align)
        sizes = [
            struct.calcsize(count_format) + len(b"".join(e)) + struct.calcsize(next_format)
            for e in encoded_pages
        ]
        first = self.position
        starts = [first + sum(sizes[:i]) for i in range(len(sizes))]
        for index, entries in enumerate(encoded_pages):
            following = starts[index + 1] if index + 1 < len(starts) else 0
            self.append(
                struct.pack(count_format, len(entries))
                + b"".join(entries)
                + struct.pack(next_format, following)
            )
        if not bigtiff and self.position > _CLASSIC_LIMIT:
            raise TiffTooLargeError("classic TIFF directories ended beyond 4 GiB")

        self._file.seek(0)
        if bigtiff:
            self._file.write(b"II+\0" + struct.pack("<HHQ", 8, 0, first))
        else:
            self._file.write(b"II*\0" + struct.pack("<I", first))
        self._file.seek(0, 2)
        return bigtiff

    def _pad(self, align: int) -> None:
        if self.position % align:
            self.append(b"\0" * (align - self.position % align))
