"""``write_svs``: a synthetic Aperio slide of any size, streamed to disk.

Page order is Aperio's (OpenSlide relies on it): level 0 (tiled), thumbnail (stripped,
always the second page), the lower levels (tiled), then label (LZW) and macro (JPEG).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Final

from slidestore.synthetic import associated, strips
from slidestore.synthetic.aperio import (
    LEVEL_STEP,
    ScanInfo,
    associated_description,
    level_sizes,
    thumbnail_size,
)
from slidestore.synthetic.pyramid import LevelTiles, PyramidBuilder, Spool
from slidestore.synthetic.rgb_jpeg import RgbJpegEncoder
from slidestore.synthetic.sample import RGB, load_sample
from slidestore.synthetic.tiff_writer import Tag, TiffWriter
from slidestore.synthetic.tissue import GRID, TissueField

DEFAULT_TILE_SIZE: Final = 240
DEFAULT_QUALITY: Final = 30
DEFAULT_MPP: Final = 0.499
DEFAULT_OBJECTIVE_POWER: Final = 20
DEFAULT_SCANNED_AT: Final = datetime(2024, 1, 15, 10, 20, 30)
"""A fixed scan time, so that the same parameters always give the same bytes."""

THUMBNAIL_QUALITY: Final = 70
MACRO_QUALITY: Final = 50

Progress = Callable[[int, int], None]
"""Called with (level-0 tile rows written, total rows)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SvsSpec:
    """Everything that determines a generated slide's bytes."""

    width: int
    height: int
    tile_size: int = DEFAULT_TILE_SIZE
    quality: int = DEFAULT_QUALITY
    mpp: float = DEFAULT_MPP
    objective_power: int = DEFAULT_OBJECTIVE_POWER
    levels: int | None = None
    seed: int = 0
    bigtiff: bool | None = None
    label: bool = True
    macro: bool = True
    islands: int | None = None
    sample: Path | None = None
    scanned_at: datetime = DEFAULT_SCANNED_AT

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"slide size must be positive, got {self.width}x{self.height}")
        if self.tile_size < GRID or self.tile_size % GRID or self.tile_size > 65520:
            raise ValueError(f"tile size must be a multiple of 16 up to 65520: {self.tile_size}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {self.quality}")
        if self.mpp <= 0 or self.objective_power <= 0:
            raise ValueError("mpp and objective power must be positive")
        if self.levels is not None and self.levels < 1:
            raise ValueError(f"levels must be at least 1, got {self.levels}")
        if self.islands is not None and self.islands < 1:
            raise ValueError(f"islands must be at least 1, got {self.islands}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")

    def level_sizes(self) -> list[tuple[int, int]]:
        return level_sizes(self.width, self.height, self.tile_size, self.levels)


def write_svs(
    path: str | os.PathLike[str],
    width: int,
    height: int,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    quality: int = DEFAULT_QUALITY,
    mpp: float = DEFAULT_MPP,
    objective_power: int = DEFAULT_OBJECTIVE_POWER,
    levels: int | None = None,
    seed: int = 0,
    bigtiff: bool | None = None,
    label: bool = True,
    macro: bool = True,
    islands: int | None = None,
    sample: str | os.PathLike[str] | None = None,
    scanned_at: datetime | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write a synthetic Aperio SVS of ``width`` x ``height`` pixels to ``path``.

    The slide holds 1..3 islands (or ``islands``) of real tissue from ``sample`` (default
    CMU-1-Small-Region.svs, see :func:`slidestore.datapaths.sample_slide_path`) on
    white glass, laid out from ``seed``; the same arguments give the same bytes.
    ``levels=None`` adds 4x-smaller levels until one fits in about two tiles.
    ``bigtiff=None`` writes BigTIFF only when the file would not fit a classic TIFF.
    Memory depends on the width only: one tile row per level (about
    ``tile_size * width * 4`` bytes in all) besides ~100 MB to load the sample; a
    60000 x 50000 slide peaks near 210 MB RSS. ``workers`` threads render and encode
    tiles (default: up to 4); the output does not depend on it. ``progress`` is called
    with (level-0 tile rows done, total) as rows are written.
    """
    spec = SvsSpec(
        width=width,
        height=height,
        tile_size=tile_size,
        quality=quality,
        mpp=mpp,
        objective_power=objective_power,
        levels=levels,
        seed=seed,
        bigtiff=bigtiff,
        label=label,
        macro=macro,
        islands=islands,
        sample=Path(sample) if sample is not None else None,
        scanned_at=scanned_at or DEFAULT_SCANNED_AT,
    )
    return write_spec(path, spec, workers=workers, progress=progress)


def write_spec(
    path: str | os.PathLike[str],
    spec: SvsSpec,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """:func:`write_svs` from an :class:`SvsSpec`. A failed write leaves no file behind."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "wb", buffering=1 << 20) as file:
            _write(file, target.parent, spec, workers, progress)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _pyramid_plan(spec: SvsSpec) -> tuple[list[tuple[int, int]], int, int]:
    """(sizes of every level to compute, how many are written, the thumbnail's source).

    The thumbnail is shrunk from the smallest level still at least its size; that level
    may lie below the written ones, then it is computed but not stored.
    """
    written = spec.level_sizes()
    thumb_w, thumb_h = thumbnail_size(spec.width, spec.height)
    chain = [(spec.width, spec.height)]
    while True:
        w, h = chain[-1][0] // LEVEL_STEP, chain[-1][1] // LEVEL_STEP
        if w < thumb_w or h < thumb_h:
            break
        chain.append((w, h))
    source = len(chain) - 1
    sizes = written if len(written) > source else chain
    return sizes, len(written), source


def _write(
    file: BinaryIO,
    directory: Path,
    spec: SvsSpec,
    workers: int | None,
    progress: Progress | None,
) -> None:
    info = ScanInfo(
        width=spec.width,
        height=spec.height,
        tile_size=spec.tile_size,
        quality=spec.quality,
        mpp=spec.mpp,
        objective_power=spec.objective_power,
        scanned_at=spec.scanned_at,
        seed=spec.seed,
    )
    encoder = RgbJpegEncoder(spec.quality)
    writer = TiffWriter(file)
    sizes, levels, overview = _write_levels(writer, directory, spec, encoder, workers, progress)
    pages = [
        _level_page(info, spec, encoder, size, tiles)
        for size, tiles in zip(sizes, levels, strict=True)
    ]

    thumb_size = thumbnail_size(spec.width, spec.height)
    thumb = associated.thumbnail(overview, thumb_size)
    thumb_description = info.thumbnail_description(*thumb_size)
    pages.insert(
        1,
        strips.write_jpeg_strips(
            writer, thumb, RgbJpegEncoder(THUMBNAIL_QUALITY), thumb_description, subfile=0
        ),
    )
    sticker = associated.label(
        spec.seed, ["slidestore", f"synthetic #{spec.seed}", f"{spec.width} x {spec.height}"]
    )
    if spec.label:
        description = associated_description("label", sticker.shape[1], sticker.shape[0])
        pages.append(strips.write_lzw_strips(writer, sticker, description, subfile=1))
    if spec.macro:
        photo = associated.macro(sticker, thumb, (spec.width, spec.height), spec.mpp)
        description = associated_description("macro", photo.shape[1], photo.shape[0])
        pages.append(
            strips.write_jpeg_strips(
                writer, photo, RgbJpegEncoder(MACRO_QUALITY), description, subfile=9
            )
        )
    for page in pages:
        writer.add_page(page)
    writer.finish(spec.bigtiff)


def _write_levels(
    writer: TiffWriter,
    directory: Path,
    spec: SvsSpec,
    encoder: RgbJpegEncoder,
    workers: int | None,
    progress: Progress | None,
) -> tuple[list[tuple[int, int]], list[LevelTiles], RGB]:
    """Write every level's tiles, level 0 first; returns their sizes and tile locations,
    and a small level (at least thumbnail-sized) whole, to draw the thumbnail from."""
    sizes, written, overview = _pyramid_plan(spec)
    field = TissueField(
        spec.width,
        spec.height,
        spec.tile_size,
        load_sample(spec.sample),
        spec.seed,
        islands=spec.islands,
    )
    count = workers if workers is not None else min(4, os.cpu_count() or 1)
    with ExitStack() as stack:
        spools = [Spool(directory) for _ in range(written - 1)]
        for spool in spools:
            stack.callback(spool.close)
        levels = [
            LevelTiles(
                -(-w // spec.tile_size),
                -(-h // spec.tile_size),
                spools[index - 1] if index else writer,
            )
            for index, (w, h) in enumerate(sizes[:written])
        ]
        executor = stack.enter_context(ThreadPoolExecutor(count)) if count > 1 else None
        builder = PyramidBuilder(
            sizes,
            spec.tile_size,
            field.glass,
            encoder,
            levels,
            keep=overview,
            glass_tiles=field.glass_tiles,
            executor=executor,
        )
        builder.run(field.renderer, progress)
        for tiles, spool in zip(levels[1:], spools, strict=True):
            spool.file.flush()
            tiles.rebase(writer.append_file(spool.file))
    kept = builder.kept
    if kept is None:  # pragma: no cover - PyramidBuilder always keeps the requested level
        raise RuntimeError("the thumbnail's source level was not kept")
    return sizes[:written], levels, kept


def _level_page(
    info: ScanInfo,
    spec: SvsSpec,
    encoder: RgbJpegEncoder,
    size: tuple[int, int],
    tiles: LevelTiles,
) -> list[Tag]:
    width, height = size
    return [
        *strips.rgb_page_tags(width, height, strips.COMPRESSION_JPEG, 0),
        Tag.ascii(270, info.level_description(width, height)),
        Tag.short(322, spec.tile_size),  # TileWidth
        Tag.short(323, spec.tile_size),  # TileLength
        Tag.offsets_array(324, tiles.offsets),
        Tag.counts_array(325, tiles.counts),
        *strips.jpeg_tables_tags(encoder),
    ]
