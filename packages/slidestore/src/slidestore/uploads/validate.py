"""Proving that an uploaded file is a slide before it is kept."""

from __future__ import annotations

from pathlib import Path

from slidestore.errors import DecompressionBomb, SlideNotFound, SlideReadError, UnsupportedFormat
from slidestore.reading import open_slide
from slidestore.reading.frame_scan import scan_jpeg_frames


def validate_slide(path: Path) -> None:
    """Open ``path`` as a slide, check every JPEG tile's header, decode a tile of its
    first and last level.

    Opening alone is not enough: a file with a valid header and broken tile data opens
    fine and fails only when pixels are read. Decoding a sample is not enough either: a
    tile whose header declares a huge image (a decompression bomb) can hide anywhere, so
    the frame header of every JPEG tile and strip is checked first, without decoding
    (:class:`~slidestore.errors.DecompressionBomb`). Raises :class:`UnsupportedFormat`
    with OpenSlide's reason (and without the server-side path, which means nothing to a
    client).
    """
    try:
        with open_slide(path) as slide:
            scan_jpeg_frames(path)
            for index in sorted({0, slide.level_count - 1}):
                level = slide.levels[index]
                slide.read_tile(index, level.columns // 2, level.rows // 2)
    except DecompressionBomb as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise DecompressionBomb(f"not a slide slidestore will keep: {reason}") from exc
    except (UnsupportedFormat, SlideReadError, SlideNotFound) as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise UnsupportedFormat(f"not a slide slidestore can read: {reason}") from exc
