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

from typing import Final, NamedTuple

from slidestore.errors import DecompressionBomb, SlideReadError

# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range.
SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0..7: no length
_SOS: Final = 0xDA
_EOI: Final = 0xD9
_SOI: Final = 0xD8


class Frame(NamedTuple):
    """The image a JPEG stream declares: what a decoder will allocate for."""

    width: int
    height: int
    components: int


class Truncated(Exception):
    """The bytes given end before the frame header: read more of the stream."""


def read_frame(data: bytes | memoryview) -> Frame | None:
    """The first frame header of a JPEG stream (or of JPEG tables, which have none).

    Returns ``None`` when the stream (or table-only stream) holds no frame before its
    scan or end; raises :class:`Truncated` when ``data`` is a prefix that ends first.
    """
    view = memoryview(data)
    n = len(view)
    pos = 0
    while True:
        while pos < n and view[pos] != 0xFF:  # junk between segments, as libjpeg skips it
            pos += 1
        while pos < n and view[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise Truncated
        marker = view[pos]
        pos += 1
        if marker == _SOI or marker in _STANDALONE:
            continue
        if marker in (_SOS, _EOI):
            return None
        if marker == 0x00:  # a stuffed zero: entropy data, not a marker
            continue
        if pos + 2 > n:
            raise Truncated
        length = (view[pos] << 8) | view[pos + 1]
        if marker in SOF_MARKERS:
            if pos + 8 > n:
                raise Truncated
            height = (view[pos + 3] << 8) | view[pos + 4]
            width = (view[pos + 5] << 8) | view[pos + 6]
            return Frame(width=width, height=height, components=view[pos + 7])
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
