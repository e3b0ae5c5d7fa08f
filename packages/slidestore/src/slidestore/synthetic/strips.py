"""Stripped pages (thumbnail, label, macro) and their TIFF tags.

Aperio stores the associated images in strips, not tiles: the thumbnail and macro as
JPEG (RGB, tables in JPEGTables, 16 rows per strip), the label as LZW with horizontal
differencing (about 8 KB per strip).
"""

from __future__ import annotations

from typing import Final

import imagecodecs
import numpy as np
import numpy.typing as npt

from slidestore.synthetic.rgb_jpeg import RgbJpegEncoder
from slidestore.synthetic.sample import RGB
from slidestore.synthetic.tiff_writer import Tag, TiffWriter

JPEG_ROWS_PER_STRIP: Final = 16
LZW_STRIP_BYTES: Final = 8192

COMPRESSION_LZW: Final = 5
COMPRESSION_JPEG: Final = 7
PHOTOMETRIC_RGB: Final = 2
PREDICTOR_HORIZONTAL: Final = 2


def rgb_page_tags(width: int, height: int, compression: int, subfile: int) -> list[Tag]:
    """Tags every Aperio RGB page has (ImageDepth 1 is what Aperio writes)."""
    return [
        Tag.long(254, subfile),  # NewSubfileType
        Tag.long(256, width),
        Tag.long(257, height),
        Tag.short(258, 8, 8, 8),  # BitsPerSample
        Tag.short(259, compression),
        Tag.short(262, PHOTOMETRIC_RGB),
        Tag.short(277, 3),  # SamplesPerPixel
        Tag.short(284, 1),  # PlanarConfiguration: contiguous
        Tag.long(32997, 1),  # ImageDepth
    ]


def jpeg_tables_tags(encoder: RgbJpegEncoder) -> list[Tag]:
    # Real Aperio JPEG pages also carry YCbCrSubSampling 2,2 although they are RGB;
    # readers ignore it for RGB and so must code reading our files.
    return [Tag.undefined(347, encoder.tables), Tag.short(530, 2, 2)]


def _strip_tags(rows_per_strip: int, offsets: list[int], counts: list[int]) -> list[Tag]:
    return [
        Tag.offsets_array(273, np.array(offsets, dtype=np.uint64)),
        Tag.long(278, rows_per_strip),
        Tag.counts_array(279, np.array(counts, dtype=np.uint64)),
    ]


def write_jpeg_strips(
    writer: TiffWriter, pixels: RGB, encoder: RgbJpegEncoder, description: str, subfile: int
) -> list[Tag]:
    """Append ``pixels`` as JPEG strips; returns the page's complete tag list."""
    height, width = pixels.shape[:2]
    offsets, counts = [], []
    for top in range(0, height, JPEG_ROWS_PER_STRIP):
        data = encoder.encode(pixels[top : top + JPEG_ROWS_PER_STRIP])
        offsets.append(writer.append(data))
        counts.append(len(data))
    return [
        *rgb_page_tags(width, height, COMPRESSION_JPEG, subfile),
        Tag.ascii(270, description),
        *_strip_tags(JPEG_ROWS_PER_STRIP, offsets, counts),
        *jpeg_tables_tags(encoder),
    ]


def _horizontal_difference(pixels: RGB) -> npt.NDArray[np.uint8]:
    """TIFF predictor 2: each sample minus the same sample of the pixel to its left."""
    diff = pixels.copy()
    diff[:, 1:] -= pixels[:, :-1]  # uint8 arithmetic wraps, as the predictor requires
    return diff


def write_lzw_strips(writer: TiffWriter, pixels: RGB, description: str, subfile: int) -> list[Tag]:
    """Append ``pixels`` as LZW strips with horizontal differencing; returns the tags."""
    height, width = pixels.shape[:2]
    rows_per_strip = max(1, LZW_STRIP_BYTES // (width * 3))
    offsets, counts = [], []
    for top in range(0, height, rows_per_strip):
        strip = _horizontal_difference(pixels[top : top + rows_per_strip])
        data = bytes(imagecodecs.lzw_encode(strip.tobytes()))
        offsets.append(writer.append(data))
        counts.append(len(data))
    return [
        *rgb_page_tags(width, height, COMPRESSION_LZW, subfile),
        Tag.ascii(270, description),
        *_strip_tags(rows_per_strip, offsets, counts),
        Tag.short(317, PREDICTOR_HORIZONTAL),
    ]
