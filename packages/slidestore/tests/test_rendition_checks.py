"""A prerendered tile carries the CRC-32 written when it was rendered and is checked on
every read: a damaged one is never served (the tile is rendered instead, the same bytes),
and its level is discarded with the manifest so prerendering makes it again. A rendition
is a cache: nothing here touches the slide."""

from __future__ import annotations

import os
import time
from pathlib import Path

from slidestore import open_slide
from slidestore.protocols.deepzoom import DeepZoom, PackedLevels, prerender
from slidestore.protocols.deepzoom.pack import TilePack, write_pack
from slidestore.protocols.deepzoom.prerender import is_complete, level_path
from slidestore.testing.faults import flip_byte


def test_a_damaged_tile_in_a_pack_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "level-3.pack"
    write_pack(path, [(0, b"first tile"), (2, b"second tile")], 4)
    pack = TilePack(path)
    assert pack.get(2) == b"second tile"
    start, length = pack.extent(2)
    flip_byte(path, start + length // 2)
    discarded: list[bool] = []
    levels = PackedLevels(tmp_path, (4, 4, 4, 4), on_discard=lambda: discarded.append(True))
    assert levels.get(3, 0, 0) == b"first tile"
    assert levels.get(3, 2, 0) is None  # damaged: never its bytes
    assert discarded == [True] and levels.damaged == 1
    assert not path.exists()  # the level is made again by prerendering
    assert levels.get(3, 0, 0) is None  # the whole level is gone until then
    pack.close()


def test_a_pack_that_does_not_open_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / "level-0.pack"
    write_pack(path, [(0, b"tile")], 1)
    flip_byte(path, os.path.getsize(path) - 3)  # the footer's count
    levels = PackedLevels(tmp_path, (1,))
    assert levels.get(0, 0, 0) is None
    assert not path.exists()


def test_a_damaged_prerendered_tile_is_rendered_instead_and_its_level_made_again(
    generated_svs: Path, tmp_path: Path
) -> None:
    with open_slide(generated_svs) as slide:
        dz = DeepZoom(slide)
        directory = tmp_path / dz.rendition_key
        prerender(dz, directory)
        level = next(z for z in range(dz.level_count) if level_path(directory, z).exists())
        pack = TilePack(level_path(directory, level))
        slot = next(i for i in range(pack.count) if pack.extent(i)[1])
        start, length = pack.extent(slot)
        pack.close()
        columns = dz.level_tiles[level][0]
        col, row = slot % columns, slot // columns
        served = DeepZoom(slide)
        served.use_rendition(directory)
        good = served.stored_tile(level, col, row)
        assert good is not None and good.prerendered

        flip_byte(level_path(directory, level), start + length // 2)
        assert served.stored_tile(level, col, row) is None
        again = served.tile_with_info(level, col, row)
        assert again.data == good.data and not again.prerendered
        assert not is_complete(directory)
        assert not level_path(directory, level).exists()

        prerender(dz, directory)  # what the node's prerenderer does next
        assert is_complete(directory)
        time.sleep(0.15)  # open renditions look for new packs every 0.1 s
        remade = served.stored_tile(level, col, row)
        assert remade is not None and remade.prerendered and remade.data == good.data
