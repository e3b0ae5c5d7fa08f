"""JPEG tiles the way Aperio stores them: RGB without colour transform, tables shared.

Aperio ``JPEG/RGB`` pages hold *abbreviated* JPEG streams (SOI, SOF0, SOS, entropy data,
EOI) whose quantisation and Huffman tables live once in the page's JPEGTables tag; the
components are R, G, B compressed directly (PhotometricInterpretation = RGB, no
RGB→YCbCr transform), all three using quantisation table 0 and Huffman tables 0, with
component ids 0, 1, 2.

libjpeg(-turbo) produces exactly those tables when asked for an RGB JPEG colour space
(``jpeg_set_colorspace(JCS_RGB)``) at a fixed quality with the standard (not optimised)
Huffman tables: at Q=30 they are byte-identical to CMU-1's JPEGTables. So we encode each
tile as a full JPEG and cut it apart: the tables go to JPEGTables (checked identical for
every tile), the Adobe APP14 marker libjpeg adds to flag RGB is dropped (Aperio writes
none; readers must take the colour space from the TIFF), and the component ids
``R``/``G``/``B`` become 0/1/2 as in Aperio files, so that decoders get the same
ambiguity real slides give them.
"""

from __future__ import annotations

from typing import Final

import imagecodecs
import numpy as np
import numpy.typing as npt

SOI: Final = b"\xff\xd8"
EOI: Final = b"\xff\xd9"
_SOF0: Final = 0xC0
_DHT: Final = 0xC4
_SOS: Final = 0xDA
_DQT: Final = 0xDB
_APP14: Final = 0xEE


class JpegLayoutError(RuntimeError):
    """libjpeg produced a stream we cannot turn into an Aperio tile (should not happen)."""


def _segments(stream: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The marker segments before the scan data, and where the SOS segment starts."""
    if not stream.startswith(SOI):
        raise JpegLayoutError("JPEG stream does not start with SOI")
    segments: list[tuple[int, bytes]] = []
    pos = 2
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            raise JpegLayoutError(f"expected a marker at byte {pos}")
        marker = stream[pos + 1]
        if marker == _SOS:
            return segments, pos
        length = int.from_bytes(stream[pos + 2 : pos + 4], "big")
        segments.append((marker, stream[pos : pos + 2 + length]))
        pos += 2 + length
    raise JpegLayoutError("JPEG stream has no SOS marker")


def _renumber_components(segment: bytes, first: int, stride: int) -> bytes:
    """Set the component ids in an SOF/SOS segment to 0, 1, 2 (ids start at ``first``)."""
    data = bytearray(segment)
    count = data[first - 1]
    for index in range(count):
        data[first + index * stride] = index
    return bytes(data)


class RgbJpegEncoder:
    """Encodes RGB pixels to abbreviated Aperio-style JPEG streams sharing :attr:`tables`."""

    def __init__(self, quality: int) -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {quality}")
        self.quality = quality
        probe = self._encode_full(np.full((8, 8, 3), 128, dtype=np.uint8))
        self._table_segments = self._split(probe)[0]
        self.tables: bytes = SOI + self._table_segments + EOI
        """The JPEGTables tag value: SOI, DQT, DHT..., EOI."""

    def _encode_full(self, pixels: npt.NDArray[np.uint8]) -> bytes:
        # colorspace=RGB in and out: libjpeg compresses the RGB samples as they are.
        # optimize=False keeps the standard Huffman tables, identical for every tile.
        return bytes(
            imagecodecs.jpeg8_encode(
                pixels,
                level=self.quality,
                colorspace="RGB",
                outcolorspace="RGB",
                optimize=False,
            )
        )

    @staticmethod
    def _split(stream: bytes) -> tuple[bytes, bytes]:
        """(table segments, abbreviated stream) of a full JPEG from :meth:`_encode_full`."""
        segments, sos = _segments(stream)
        tables = b""
        frame = b""
        for marker, segment in segments:
            if marker in (_DQT, _DHT):
                tables += segment
            elif marker == _SOF0:
                # SOF0: length(2) P(1) Y(2) X(2) Nf(1), then Nf x (id, sampling, table).
                frame = _renumber_components(segment, first=10, stride=3)
            elif marker == _APP14:
                continue
            else:
                raise JpegLayoutError(f"unexpected JPEG marker 0xFF{marker:02X}")
        if not frame:
            raise JpegLayoutError("JPEG stream has no baseline SOF0 frame header")
        # SOS: length(2) Ns(1), then Ns x (id, tables), Ss, Se, Ah/Al; entropy data follows.
        header_end = sos + 2 + int.from_bytes(stream[sos + 2 : sos + 4], "big")
        scan = _renumber_components(stream[sos:header_end], first=5, stride=2)
        return tables, SOI + frame + scan + stream[header_end:]

    def encode(self, pixels: npt.NDArray[np.uint8]) -> bytes:
        """One tile or strip, ``(h, w, 3)`` uint8 (rows may be strided), as a tile stream."""
        tables, stream = self._split(self._encode_full(pixels))
        if tables != self._table_segments:
            raise JpegLayoutError("libjpeg chose different tables for this tile")
        return stream
