"""Decompression bombs for tests: valid slides with one JPEG frame header rewritten.

:func:`poison_frame` patches, in place, the width and height that one stored JPEG tile
or strip declares in its frame header (SOFn), leaving its few kilobytes of data as they
are. A decoder that trusts the header allocates for the declared size (60000 x 60000 is
10 GB of RGB), which is what the reading and upload guards must refuse to do.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import tifffile

from slidestore.jpeg_frame import SOF_MARKERS

BOMB_SIZE = 60000
"""The side a poisoned frame declares by default: 60000 x 60000 x 3 bytes is 10.8 GB."""


def poison_frame(
    path: str | os.PathLike[str],
    page: int,
    segment: int,
    *,
    width: int = BOMB_SIZE,
    height: int = BOMB_SIZE,
) -> None:
    """Make segment (tile or strip) ``segment`` of TIFF page ``page`` declare
    ``width`` x ``height`` pixels in its JPEG frame header."""
    with tifffile.TiffFile(path) as tif:
        target = tif.pages[page]
        assert isinstance(target, tifffile.TiffPage)
        offset = int(target.dataoffsets[segment])
        count = int(target.databytecounts[segment])
    with open(Path(path), "r+b") as file:
        file.seek(offset)
        data = file.read(count)
        pos = 2  # after SOI
        while data[pos + 1] not in SOF_MARKERS:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        file.seek(offset + pos + 5)  # marker (2), length (2), precision (1)
        file.write(struct.pack(">HH", height, width))
