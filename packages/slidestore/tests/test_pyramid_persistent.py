"""The persistent cache of derived tiles in fsspec locations (local files, memory)."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import msgspec
import numpy as np
import pytest

import slidestore
from slidestore.errors import SlideReadError
from slidestore.pyramid import PyramidOptions, open_pyramid
from slidestore.pyramid.persistent import decode_tile, encode_tile, slide_fingerprint
from slidestore.testing import shared_data_dir

DATA = shared_data_dir()
CMU = DATA / "CMU-1-Small-Region.svs"


@pytest.fixture(params=["file", "memory"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield (tmp_path / "tiles").as_uri()
    else:
        url = f"memory://slidestore-test-{uuid.uuid4().hex}"
        yield url
        memory = fsspec.filesystem("memory")
        if memory.exists(url):
            memory.rm(url, recursive=True)


def forbid_reading(slide: slidestore.Slide, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(level: int, col: int, row: int) -> None:
        raise AssertionError(f"native tile {level}/{col}/{row} read; expected a cached one")

    monkeypatch.setattr(slide, "read_tile", refuse)


def test_encoding_is_lossless_and_rejects_damage() -> None:
    tile = np.random.default_rng(1).integers(0, 256, (240, 200, 3), dtype=np.uint8)
    data = encode_tile(tile)
    back = decode_tile(data)
    assert back is not None
    np.testing.assert_array_equal(back, tile)
    assert decode_tile(data[:-10]) is None
    assert decode_tile(b"garbage") is None
    assert decode_tile(data[:12] + b"\0" * (len(data) - 12)) is None


def test_derived_tiles_survive_a_new_pyramid(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = PyramidOptions(persistent_cache=location)
    with slidestore.open_slide(CMU) as slide:
        first = open_pyramid(slide, options)
        tiles = {(level, 0, 0): first.tile(level, 0, 0).copy() for level in (1, 2, 4)}
        assert first.persistent is not None
        assert first.persistent.hits == 0
        computed = first.persistent.misses  # every derived tile needed on the way

    with slidestore.open_slide(CMU) as slide:
        forbid_reading(slide, monkeypatch)  # everything must come from the persistent cache
        second = open_pyramid(slide, options)
        for (level, col, row), tile in tiles.items():
            np.testing.assert_array_equal(second.tile(level, col, row), tile)
        assert second.persistent is not None
        assert second.persistent.hits == 3
        with pytest.raises(AssertionError, match="native tile"):
            second.tile(0, 0, 0)  # native tiles are never persisted

    fs, root = fsspec.core.url_to_fs(location)
    names = fs.find(root)
    assert len(names) == computed
    assert all(name.endswith(".tile") for name in names)  # no partial files left behind


def test_a_damaged_entry_is_recomputed_and_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = PyramidOptions(persistent_cache=(tmp_path / "tiles").as_uri())
    with slidestore.open_slide(CMU) as slide:
        good = open_pyramid(slide, options).tile(3, 1, 0).copy()
        (entry,) = [
            p for p in (tmp_path / "tiles").rglob("*.tile") if p.parts[-3:] == ("3", "0", "1.tile")
        ]
        entry.write_bytes(entry.read_bytes()[:100])
        with caplog.at_level(logging.WARNING, logger="slidestore.pyramid.persistent"):
            again = open_pyramid(slide, options)
            np.testing.assert_array_equal(again.tile(3, 1, 0), good)
        assert "damaged" in caplog.text
        assert decode_tile(entry.read_bytes()) is not None


def test_an_unusable_location_never_fails_a_read(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    options = PyramidOptions(persistent_cache=(blocker / "tiles").as_uri())
    with slidestore.open_slide(CMU) as slide:
        plain = open_pyramid(slide).tile(2, 1, 1)
        np.testing.assert_array_equal(open_pyramid(slide, options).tile(2, 1, 1), plain)


def test_entries_are_keyed_by_content_not_by_path(tmp_path: Path) -> None:
    copy = tmp_path / "renamed.svs"
    shutil.copyfile(DATA / "small.svs", copy)
    with slidestore.open_slide(DATA / "small.svs") as a, slidestore.open_slide(copy) as b:
        assert slide_fingerprint(a) == slide_fingerprint(b) == a.metadata.quickhash
        # Without a quickhash the fingerprint hashes the file's size and ends.
        a.metadata = msgspec.structs.replace(a.metadata, quickhash=None)
        b.metadata = msgspec.structs.replace(b.metadata, quickhash=None)
        assert slide_fingerprint(a) == slide_fingerprint(b)
        assert len(slide_fingerprint(a)) == 64
    with slidestore.open_slide(DATA / "unreadable.svs") as c:
        c.metadata = msgspec.structs.replace(c.metadata, quickhash=None)
        assert slide_fingerprint(c) != slide_fingerprint(a)


def test_a_failed_derivation_writes_nothing(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with slidestore.open_slide(CMU) as slide:

        def broken(level: int, col: int, row: int) -> None:
            raise SlideReadError("Bogus marker length")

        monkeypatch.setattr(slide, "read_tile", broken)
        pyramid = open_pyramid(slide, PyramidOptions(persistent_cache=location))
        with pytest.raises(SlideReadError):
            pyramid.tile(1, 0, 0)
    fs, root = fsspec.core.url_to_fs(location)
    assert not fs.exists(root) or fs.find(root) == []
