"""Turning Aperio's abbreviated JPEG tile streams into standalone JPEG files.

Aperio (and most tiled TIFF writers) store each tile as an *abbreviated* JPEG stream:
SOI, frame, scan, EOI, but no quantisation or Huffman tables; those live once in the
page's JPEGTables tag. A standalone file is SOI + tables + the tile stream after its SOI.

When the TIFF says PhotometricInterpretation = RGB, the JPEG data was compressed without
the RGB→YCbCr transform, yet nothing in the stream says so and decoders assume YCbCr.
An Adobe APP14 marker with transform = 0 tells every decoder the components are RGB.
"""

from __future__ import annotations

from typing import Final

SOI: Final = b"\xff\xd8"
EOI: Final = b"\xff\xd9"
# APP14 "Adobe", length 14, DCTEncodeVersion 100, flags0 0, flags1 0, transform 0 (none).
ADOBE_RGB: Final = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


def tile_header(jpeg_tables: bytes | None, rgb: bool) -> bytes:
    """The bytes to put in front of a tile stream (minus the tile's own SOI)."""
    header = SOI
    if jpeg_tables:
        tables = jpeg_tables
        if tables.startswith(SOI):
            tables = tables[2:]
        if tables.endswith(EOI):
            tables = tables[:-2]
        header += tables
    if rgb:
        header += ADOBE_RGB
    return header


def standalone(header: bytes, tile_stream: bytes) -> bytes:
    """Splice a stored tile stream behind a header from :func:`tile_header`."""
    if tile_stream.startswith(SOI):
        tile_stream = tile_stream[2:]
    return header + tile_stream
