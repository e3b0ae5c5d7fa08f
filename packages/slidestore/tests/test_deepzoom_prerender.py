"""Prerendered Deep Zoom tiles: byte-identical to on-demand ones, resumable, atomic."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from slidestore import open_slide
from slidestore.errors import SlideReadError
from slidestore.protocols.deepzoom import DeepZoom, PackedLevels, Stopped, prerender
from slidestore.protocols.deepzoom.pack import TilePack, write_pack
from slidestore.protocols.deepzoom.prerender import is_complete, level_path, read_manifest


def every_tile(dz: DeepZoom) -> list[tuple[int, int, int]]:
    return [
        (z, c, r)
        for z in range(dz.level_count)
        for c in range(dz.level_tiles[z][0])
        for r in range(dz.level_tiles[z][1])
    ]


@pytest.mark.parametrize("threads", [1, 2])
def test_prerendered_tiles_equal_on_demand_tiles_byte_for_byte(
    generated_svs: Path, tmp_path: Path, threads: int
) -> None:
    with open_slide(generated_svs) as slide:
        dz = DeepZoom(slide)
        rendition = prerender(dz, tmp_path / dz.rendition_key, threads=threads)
        served = DeepZoom(slide)
        served.use_rendition(tmp_path / dz.rendition_key)
        reference = DeepZoom(slide, encoded_cache_bytes=0)
        passthrough = prerendered = 0
        for z, c, r in every_tile(dz):
            tile = served.tile_with_info(z, c, r)
            assert tile.data == reference.render_tile(z, c, r) or tile.passthrough
            assert tile.data == reference.tile(z, c, r)
            assert not tile.cached
            passthrough += tile.passthrough
            prerendered += tile.prerendered
        assert prerendered == rendition.tiles > 0
        assert passthrough > 0
        assert served.stats().rendered == 0
        assert read_manifest(tmp_path / dz.rendition_key) == rendition
        # Other formats are not in the rendition: rendered on demand as before.
        png = served.tile_with_info(dz.level_count - 2, 0, 0, "png")
        assert not png.prerendered and not png.passthrough


def test_stop_leaves_no_partial_level_and_a_second_run_resumes(
    generated_svs: Path, tmp_path: Path
) -> None:
    with open_slide(generated_svs) as slide:
        dz = DeepZoom(slide)
        directory = tmp_path / dz.rendition_key
        stop = threading.Event()
        seen: list[int] = []

        def progress(done: int, total: int) -> None:
            seen.append(done)
            if done == total // 2:
                stop.set()

        with pytest.raises(Stopped):
            prerender(dz, directory, stop=stop, progress=progress)
        assert not is_complete(directory)
        assert not list(directory.glob(".*partial"))
        kept = sorted(p.name for p in directory.glob("level-*.pack"))
        rendition = prerender(dz, directory)
        assert is_complete(directory)
        assert set(kept) <= {level_path(directory, z).name for z in rendition.levels}
        assert seen[-1] < rendition.tiles


def test_packed_levels_pick_up_packs_written_later(generated_svs: Path, tmp_path: Path) -> None:
    with open_slide(generated_svs) as slide:
        dz = DeepZoom(slide)
        directory = tmp_path / dz.rendition_key
        directory.mkdir()
        columns = tuple(c for c, _ in dz.level_tiles)
        packs = PackedLevels(directory, columns, refresh_seconds=0.0)
        level = dz.level_count - 2
        assert packs.get(level, 0, 0) is None and not packs.complete
        prerender(dz, directory)
        assert packs.get(level, 0, 0) == dz.render_tile(level, 0, 0)
        assert packs.complete
        packs.close()


def test_a_truncated_pack_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "level-3.pack"
    write_pack(path, [(0, b"abc"), (2, b"defg")], 3)
    pack = TilePack(path)
    assert (pack.get(0), pack.get(1), pack.get(2)) == (b"abc", None, b"defg")
    pack.close()
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(SlideReadError, match="not a tile pack"):
        TilePack(path)


def test_a_failed_pack_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "level-1.pack"
    with pytest.raises(IndexError):
        write_pack(path, [(0, b"x"), (5, b"y")], 2)
    assert list(tmp_path.iterdir()) == []
