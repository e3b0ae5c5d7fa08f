"""What a JPEG stream's frame header (SOFn) declares, read without decoding anything.

A decoder allocates for the size the frame header declares, not for the size of the
compressed data: a 2 KB tile whose header says 60000 x 60000 makes libjpeg-turbo fill
a 10 GB buffer. So every stored JPEG segment is checked against the size its TIFF
page gives it *before* it reaches a decoder (ours or OpenSlide's).

The walk follows libjpeg's own marker reader: segments are skipped by their length,
bytes between segments that are not a marker are skipped too (libjpeg tolerates them
with a warning), and the first SOFn is the one a decoder would use (a second is an error
there). A stream that reaches its scan (SOS) or its end without a frame has no size to
allocate for and is refused as well.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from slidestore.errors import DecompressionBomb, SlideReadError

# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range.
SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0..7: no length
_SOS: Final = 0xDA
_EOI: Final = 0xD9
_SOI: Final = 0xD8
_SOF_FIELDS: Final = struct.Struct(">HHB")  # after length (2) and precision (1)


class Frame(NamedTuple):
    """The image a JPEG stream declares: what a decoder will allocate for."""

    width: int
    height: int
    components: int


class Truncated(Exception):
    """The bytes given end before the frame header: read more of the stream.

    ``at`` is where the next marker was expected: exactly ``len(data)`` when the data
    ends cleanly after a segment (JPEG tables do), beyond it when a segment runs on.
    """

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.at = at


def frame_fields(width: int, height: int, components: int = 3) -> bytes:
    """The height, width and component count as a frame header stores them, for
    comparing the bytes of a frame directly (see :func:`starts_with_frame`)."""
    return _SOF_FIELDS.pack(height, width, components)


def starts_with_frame(data: bytes, fields: bytes) -> bool:
    """Whether ``data`` is SOI followed at once by a frame with exactly ``fields``
    (:func:`frame_fields`): how scanners store tiles, checked without a marker walk."""
    return (
        data[:3] == b"\xff\xd8\xff"
        and len(data) >= 12
        and data[3] in SOF_MARKERS
        and data[7:12] == fields
    )


def read_frame(data: bytes) -> Frame | None:
    """The first frame header of a JPEG stream (or of JPEG tables, which have none).

    Returns ``None`` when the stream (or table-only stream) holds no frame before its
    scan or end; raises :class:`Truncated` when ``data`` is a prefix that ends first.
    """
    n = len(data)
    pos = 0
    while True:
        found = data.find(0xFF, pos)  # junk between segments is skipped, as libjpeg does
        if found < 0:
            raise Truncated(pos)
        pos = found
        while pos < n and data[pos] == 0xFF:  # the marker's 0xFF and any fill bytes
            pos += 1
        if pos >= n:
            raise Truncated(pos)
        marker = data[pos]
        pos += 1
        if marker == _SOI or marker in _STANDALONE or marker == 0x00:  # 0x00: stuffed byte
            continue
        if marker in (_SOS, _EOI):
            return None
        if marker in SOF_MARKERS:
            if pos + 8 > n:
                raise Truncated(pos)
            height, width, components = _SOF_FIELDS.unpack_from(data, pos + 3)
            return Frame(width=width, height=height, components=components)
        if pos + 2 > n:
            raise Truncated(pos)
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            return None  # a decoder stops here with "bogus marker length"
        pos += length


def check_frame(
    frame: Frame | None,
    width: int,
    height: int,
    what: str,
    *,
    exact: bool = True,
    components: int = 3,
) -> None:
    """Refuse a segment whose frame declares more than ``width`` x ``height`` (anything
    but exactly that size when ``exact``) or more than ``components`` channels
    (:class:`DecompressionBomb`), or that has no frame a decoder could find within the
    bytes searched (:class:`SlideReadError`: corrupt, and its size is unknown)."""
    if frame is None:
        raise SlideReadError(f"{what}: the JPEG stream has no frame header; not decoded")
    w, h, c = frame
    fits = (w, h) == (width, height) if exact else 0 < w <= width and 0 < h <= height
    if not fits or not 0 < c <= components:
        expected = f"{width}x{height}" if exact else f"at most {width}x{height}"
        raise DecompressionBomb(
            f"{what}: the JPEG frame declares {w}x{h} pixels with {c} components, "
            f"expected {expected} with {components}; refused before decoding"
        )
