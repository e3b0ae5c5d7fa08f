"""The memory estimate a node admits IIIF renders by, and the stored-tile split."""

from __future__ import annotations

from pathlib import Path

import slidestore
from slidestore.protocols import iiif
from slidestore.pyramid import Pyramid


def _cost(pyramid: Pyramid, path: str) -> int:
    level0 = pyramid.levels[0]
    plan = iiif.resolve(iiif.parse(*path.split("/")), level0.width, level0.height)
    return iiif.render_bytes(pyramid, plan)


def test_render_bytes_grows_with_the_work(generated_svs: Path) -> None:
    with slidestore.open_slide(generated_svs) as slide:
        p = slide.pyramid
        native = _cost(p, "0,0,2000,2000/max/0/default.jpg")  # read as is: no source band
        assert native == 2000 * 2000 * 6
        assert _cost(p, "0,0,2000,2000/max/0/default.png") == 2000 * 2000 * 10
        assert _cost(p, "0,0,2000,2000/max/90/default.jpg") == 2000 * 2000 * 9
        assert _cost(p, "0,0,2000,2000/max/0/gray.jpg") == 2000 * 2000 * 11
        # At half size the pyramid's derived level is read as is; at 0.6 level 0 is
        # resampled, and the source band (the whole 2000x2000 box here) counts too.
        assert _cost(p, "0,0,2000,2000/1000,/0/default.jpg") == 1000 * 1000 * 6
        scaled = _cost(p, "0,0,2000,2000/1200,/0/default.jpg")
        assert 1200 * 1200 * 6 + 2000 * 2000 * 10 <= scaled < 1200 * 1200 * 6 + 2020**2 * 10


def test_stored_tile_only_for_a_native_tile(generated_svs: Path) -> None:
    with slidestore.open_slide(generated_svs) as slide:
        p = slide.pyramid
        level0 = p.levels[0]
        tile = iiif.resolve(
            iiif.parse("240,480,240,240", "max", "0", "default.jpg"), level0.width, level0.height
        )
        stored = iiif.stored_tile(p, tile)
        assert stored is not None and stored.passthrough
        assert stored.data == slide.raw_tile(0, 1, 2)
        rendered = iiif.render_plan(p, tile, stored=False)
        assert not rendered.passthrough
        other = iiif.resolve(
            iiif.parse("0,0,300,300", "max", "0", "default.jpg"), level0.width, level0.height
        )
        assert iiif.stored_tile(p, other) is None
