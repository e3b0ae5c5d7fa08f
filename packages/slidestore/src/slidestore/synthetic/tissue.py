"""Level-0 content of a synthetic slide: islands of real tissue on white glass.

The layout (a few irregular blobs, deterministic from the seed) is described by a signed
distance to the tissue edge, sampled every 16 pixels and interpolated bilinearly, so a
tile can be classified from a handful of samples: all far outside (plain glass, the
common case, served from a few pre-encoded glass tiles), all far inside (a straight
copy of the tissue texture) or on the edge (blended with a 2-pixel anti-aliased rim).

The tissue texture is the sample's densest tissue square, turned by the seed and
mirror-tiled into an endless seamless plane, so any tile is a slice of one array.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from slidestore.synthetic.sample import RGB, SampleTissue

GRID: Final = 16
"""Spacing of the signed-distance samples, in level-0 pixels (divides every tile size)."""

RIM: Final = 1.0
"""Half-width of the anti-aliased tissue edge, in pixels."""

GLASS_VARIANTS: Final = 8
_MARGIN: Final = 0.06
"""Fraction of each side kept free of tissue, so glass surrounds every island."""
_MAX_WOBBLE: Final = 0.3
"""Largest relative change of an island's radius from its outline harmonics."""

_OUTSIDE: Final = np.float32(-1e6)

Float = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Island:
    """A rotated ellipse whose radius wobbles with a few angular harmonics."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    harmonics: tuple[tuple[int, float, float], ...]  # (order, amplitude, phase)

    @property
    def reach(self) -> float:
        """No tissue lies farther than this from the centre."""
        return (1 + _MAX_WOBBLE) * max(self.rx, self.ry)

    def signed_distance(self, xs: Float, ys: Float) -> Float:
        """Approximate distance to the edge (pixels, > 0 inside) on the grid ``ys x xs``."""
        dx = (xs - self.cx)[np.newaxis, :]
        dy = (ys - self.cy)[:, np.newaxis]
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        u = (dx * cos + dy * sin) / self.rx
        v = (dy * cos - dx * sin) / self.ry
        theta = np.arctan2(v, u)
        radius = np.ones_like(theta)
        for order, amplitude, phase in self.harmonics:
            radius += amplitude * np.cos(order * theta + phase)
        result: Float = ((radius - np.hypot(u, v)) * math.sqrt(self.rx * self.ry)).astype(
            np.float32
        )
        return result


def plan_islands(width: int, height: int, count: int, rng: np.random.Generator) -> list[Island]:
    """``count`` islands side by side along the slide's longer axis, inside the margins."""
    horizontal = width >= height
    long_side, short_side = (width, height) if horizontal else (height, width)
    usable_long = long_side * (1 - 2 * _MARGIN)
    usable_short = short_side * (1 - 2 * _MARGIN)
    cell = usable_long / count
    islands = []
    for index in range(count):
        centre_long = long_side * _MARGIN + cell * (index + 0.5)
        centre_short = short_side / 2
        half_w, half_h = (
            (cell / 2, usable_short / 2) if horizontal else (usable_short / 2, cell / 2)
        )
        rx = half_w * rng.uniform(0.75, 0.95)
        ry = half_h * rng.uniform(0.75, 0.95)
        angle = rng.uniform(-0.35, 0.35)
        # Shrink until the rotated, wobbling outline fits its cell.
        cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
        extent_x = (1 + _MAX_WOBBLE) * math.hypot(rx * cos, ry * sin)
        extent_y = (1 + _MAX_WOBBLE) * math.hypot(rx * sin, ry * cos)
        scale = min(1.0, 0.95 * half_w / extent_x, 0.95 * half_h / extent_y)
        rx, ry = rx * scale, ry * scale
        slack_x = max(0.0, 0.95 * half_w - extent_x * scale)
        slack_y = max(0.0, 0.95 * half_h - extent_y * scale)
        cx, cy = (centre_long, centre_short) if horizontal else (centre_short, centre_long)
        cx += rng.uniform(-1, 1) * slack_x
        cy += rng.uniform(-1, 1) * slack_y
        # Broad lobes plus a ragged fringe; amplitudes sum to at most _MAX_WOBBLE.
        orders = [2, 3, 4, 5, 7, 11, 13, 17]
        amplitudes = np.array([0.1, 0.07, 0.05, 0.03, 0.02, 0.012, 0.01, 0.008])
        amplitudes *= rng.uniform(0.4, 1.0, size=len(orders))
        amplitudes *= min(1.0, _MAX_WOBBLE / float(amplitudes.sum()))
        phases = rng.uniform(0, 2 * math.pi, size=len(orders))
        harmonics = tuple(
            (order, float(a), float(p))
            for order, a, p in zip(orders, amplitudes, phases, strict=True)
        )
        islands.append(Island(cx, cy, max(rx, 1.0), max(ry, 1.0), angle, harmonics))
    return islands


def _mirror_plane(texture: RGB, turn: int, pad: int) -> RGB:
    """The texture turned by ``turn`` (0..7), mirror-tiled to 2x2, wrap-padded by ``pad``.

    Mirroring makes the plane seamless in both directions; the padding lets any
    ``pad``-sized window be a plain slice however close it starts to the far edge.
    """
    turned = np.rot90(texture, turn % 4)
    if turn >= 4:
        turned = turned[:, ::-1]
    top = np.concatenate([turned, turned[:, ::-1]], axis=1)
    plane = np.concatenate([top, top[::-1]], axis=0)
    return np.ascontiguousarray(np.pad(plane, ((0, pad), (0, pad), (0, 0)), mode="wrap"))


@dataclass(frozen=True, slots=True)
class _Interpolation:
    """Bilinear weights from the samples around one tile to its pixels, along one axis.

    The tile's samples run from the one just before it to the one just after it; sample
    ``i`` sits at pixel ``(i + 0.5) * GRID``, so pixel ``p`` (centre ``p + 0.5``) falls at
    sample index ``(p + 0.5) / GRID - 0.5``, plus one for the leading sample. Plain
    element-wise arithmetic rather than a matrix product: BLAS is slow on such tiny
    non-contiguous operands and may round differently from machine to machine.
    """

    lower: npt.NDArray[np.intp]
    upper_weight: Float
    lower_weight: Float

    @classmethod
    def for_tile(cls, tile_size: int) -> _Interpolation:
        position = (np.arange(tile_size) + 0.5) / GRID + 0.5
        lower = np.floor(position).astype(np.intp)
        weight = (position - lower).astype(np.float32)
        return cls(lower, weight, (1 - weight).astype(np.float32))

    def __call__(self, block: Float) -> Float:
        """Upsample a ``(n + 2, n + 2)`` block of samples to the tile's pixels."""
        lo, w_lo, w_hi = self.lower, self.lower_weight, self.upper_weight
        rows = block[lo] * w_lo[:, np.newaxis] + block[lo + 1] * w_hi[:, np.newaxis]
        result = rows[:, lo] * w_lo + rows[:, lo + 1] * w_hi
        return result.astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class BandPlan:
    """The signed distances around one row of level-0 tiles."""

    row: int
    distances: Float  # (tile_size / GRID + 2, columns * tile_size / GRID + 2)


class TissueField:
    """Renders level-0 tiles of a ``width`` x ``height`` slide."""

    def __init__(
        self,
        width: int,
        height: int,
        tile_size: int,
        sample: SampleTissue,
        seed: int,
        islands: int | None = None,
    ) -> None:
        if tile_size % GRID:
            raise ValueError(f"tile size must be a multiple of {GRID}, got {tile_size}")
        self.width, self.height, self.tile_size = width, height, tile_size
        layout_rng, texture_rng, glass_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
        )
        count = islands if islands is not None else int(layout_rng.integers(1, 4))
        if count < 1:
            raise ValueError(f"a slide needs at least one tissue island, got {count}")
        self.islands = plan_islands(width, height, count, layout_rng)
        self._plane = _mirror_plane(sample.texture, int(texture_rng.integers(0, 8)), tile_size)
        self._period = 2 * sample.texture.shape[0], 2 * sample.texture.shape[1]
        self._offset = (
            int(texture_rng.integers(0, self._period[0])),
            int(texture_rng.integers(0, self._period[1])),
        )
        self.glass = np.array(sample.glass, dtype=np.uint8)
        self.glass_tiles = self._glass_tiles(glass_rng)
        self._interpolate = _Interpolation.for_tile(tile_size)
        self.columns = math.ceil(width / tile_size)
        self.rows = math.ceil(height / tile_size)
        self._seed = seed

    def _glass_tiles(self, rng: np.random.Generator) -> list[RGB]:
        """Empty glass: its colour with faint sensor noise, as scanners record it."""
        shape = (self.tile_size, self.tile_size)
        tiles = []
        for _ in range(GLASS_VARIANTS):
            shared = rng.normal(0.0, 1.0, size=(*shape, 1))
            own = rng.normal(0.0, 0.5, size=(*shape, 3))
            pixels = self.glass.astype(np.float32) + shared + own
            tile = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
            tile.setflags(write=False)
            tiles.append(tile)
        return tiles

    def glass_variant(self, col: int, row: int) -> int:
        """Which glass tile covers (col, row): a fixed scramble, so no pattern repeats."""
        return ((col * 73856093) ^ (row * 19349663) ^ self._seed) % GLASS_VARIANTS

    def plan(self, row: int) -> BandPlan:
        """Signed distances for tile row ``row`` (with one sample of margin all round)."""
        per_tile = self.tile_size // GRID
        first_y = row * per_tile - 1
        ys = ((np.arange(first_y, first_y + per_tile + 2) + 0.5) * GRID).astype(np.float32)
        xs = ((np.arange(-1, self.columns * per_tile + 1) + 0.5) * GRID).astype(np.float32)
        distances = np.full((len(ys), len(xs)), _OUTSIDE, dtype=np.float32)
        for island in self.islands:
            if ys[-1] < island.cy - island.reach or ys[0] > island.cy + island.reach:
                continue
            lo = int(np.searchsorted(xs, island.cx - island.reach))
            hi = int(np.searchsorted(xs, island.cx + island.reach, side="right"))
            if hi <= lo:
                continue
            np.maximum(
                distances[:, lo:hi],
                island.signed_distance(xs[lo:hi], ys),
                out=distances[:, lo:hi],
            )
        return BandPlan(row=row, distances=distances)

    def renderer(self, row: int) -> Callable[[int, RGB], int | None]:
        """``render`` bound to tile row ``row`` (its distances computed once, here)."""
        plan = self.plan(row)
        return functools.partial(self.render, plan)

    def render(self, plan: BandPlan, col: int, out: RGB) -> int | None:
        """Draw tile ``col`` of ``plan``'s row into ``out`` (tile_size x tile_size x 3).

        Returns the glass variant when the tile is exactly that pre-made glass tile (so
        its encoded form can be reused), else ``None``. Pixels beyond the slide's edge
        are plain glass colour.
        """
        ts = self.tile_size
        per_tile = ts // GRID
        block = plan.distances[:, col * per_tile : col * per_tile + per_tile + 2]
        x0, y0 = col * ts, plan.row * ts
        inside_w, inside_h = min(ts, self.width - x0), min(ts, self.height - y0)
        variant = self.glass_variant(col, plan.row)
        glass = self.glass_tiles[variant]
        if float(block.max()) <= -RIM:
            out[...] = glass
            if inside_w == ts and inside_h == ts:
                return variant
        else:
            ty = (y0 + self._offset[0]) % self._period[0]
            tx = (x0 + self._offset[1]) % self._period[1]
            tissue = self._plane[ty : ty + ts, tx : tx + ts]
            if float(block.min()) >= RIM:
                out[...] = tissue
            else:
                distance = self._interpolate(block)
                alpha = np.clip(0.5 + distance / (2 * RIM), 0.0, 1.0)[..., np.newaxis]
                base = glass.astype(np.float32)
                blended = base + alpha * (tissue.astype(np.float32) - base)
                out[...] = np.rint(blended).astype(np.uint8)
        out[inside_h:] = self.glass
        out[:, inside_w:] = self.glass
        return None
