"""The pyramid as a zarr v3 store: protocol, OME-Zarr 0.5 metadata, zarr/dask reads.

Exactness of the zarr view: any region sliced from a level's array (``(c, y, x)``,
transposed to ``(y, x, c)``) equals, with zero tolerance, ``Slide.read_region`` on native
levels and the reference 2x2 box mean of the native level a derived level comes from.
"""

from __future__ import annotations

import asyncio
import functools
import json
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import dask
import dask.array as da
import msgspec
import numpy as np
import numpy.typing as npt
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype

import slidestore
from slidestore.errors import SlideReadError
from slidestore.pyramid import Pyramid, PyramidOptions, PyramidStore, open_pyramid
from slidestore.pyramid.ngff import group_document
from slidestore.testing import shared_data_dir
from slidestore.testing.compare import reference_halve

DATA = shared_data_dir()
SLIDES = ("CMU-1-Small-Region.svs", "boxes.tiff")
PROTO = default_buffer_prototype()

Image = npt.NDArray[np.uint8]


@functools.cache
def references(name: str) -> list[Image]:
    """Each pyramid level whole: native levels by ``read_region`` from their origin (OpenSlide
    resamples regions starting at fractional positions), derived ones by reference halving."""
    images: list[Image] = []
    with slidestore.open_slide(DATA / name) as slide:
        for level in open_pyramid(slide).levels:
            if level.native_level is None:
                images.append(reference_halve(images[-1]))
            else:
                info = slide.levels[level.native_level]
                images.append(slide.read_region((0, 0), info.index, (info.width, info.height)))
    return images


@pytest.fixture(scope="module", params=SLIDES)
def opened(request: pytest.FixtureRequest) -> Iterator[tuple[Pyramid, zarr.Group, list[Image]]]:
    with slidestore.open_slide(DATA / request.param) as slide:
        pyramid = open_pyramid(slide, PyramidOptions(cache_bytes=64 * 2**20))
        yield pyramid, pyramid.group(), references(request.param)


@pytest.fixture
def cmu() -> Iterator[Pyramid]:
    with slidestore.open_slide(DATA / "CMU-1-Small-Region.svs") as slide:
        yield open_pyramid(slide)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(iterator: Any) -> list[str]:
    return [key async for key in iterator]


# -- exactness through zarr ------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_zarr_slice_equals_the_reference(
    opened: tuple[Pyramid, zarr.Group, list[Image]], data: st.DataObject
) -> None:
    pyramid, group, references = opened
    level = data.draw(st.integers(0, len(pyramid.levels) - 1), label="level")
    info = pyramid.levels[level]
    x = data.draw(st.integers(0, info.width - 1), label="x")
    y = data.draw(st.integers(0, info.height - 1), label="y")
    w = data.draw(st.integers(1, min(400, info.width - x)), label="w")
    h = data.draw(st.integers(1, min(400, info.height - y)), label="h")
    got = group[str(level)][:, y : y + h, x : x + w].transpose(1, 2, 0)
    np.testing.assert_array_equal(got, references[level][y : y + h, x : x + w])


def test_level_zero_through_zarr_equals_read_region(cmu: Pyramid) -> None:
    array = cmu.group()["0"]
    for x, y, w, h in [(0, 0, 500, 500), (1234, 2345, 321, 432), (2219, 2966, 1, 1)]:
        np.testing.assert_array_equal(
            array[:, y : y + h, x : x + w].transpose(1, 2, 0),
            cmu.slide.read_region((x, y), 0, (w, h)),
        )


def test_dask_from_zarr_computes_every_level(
    opened: tuple[Pyramid, zarr.Group, list[Image]],
) -> None:
    pyramid, group, references = opened
    for level in pyramid.levels:
        array = da.from_zarr(group[str(level.index)])
        assert array.shape == (3, level.height, level.width)
        assert array.chunksize == (
            3,
            min(level.tile_height, level.height),
            min(level.tile_width, level.width),
        )
        with dask.config.set(scheduler="threads"):
            np.testing.assert_array_equal(
                array.transpose(1, 2, 0).compute(), references[level.index]
            )


def test_pickled_store_reads_the_same_in_a_fresh_copy(cmu: Pyramid) -> None:
    copy = pickle.loads(pickle.dumps(cmu.store))
    assert isinstance(copy, PyramidStore)
    assert copy.pyramid is not cmu
    a = zarr.open_group(copy, mode="r")["2"][:, :100, :100]
    np.testing.assert_array_equal(a, cmu.group()["2"][:, :100, :100])


# -- OME-Zarr 0.5 metadata -------------------------------------------------------------


def check_ngff_05(group_attrs: dict[str, Any], arrays: dict[str, dict[str, Any]]) -> None:
    """The MUST rules of the OME-Zarr 0.5 image spec (axes, multiscales, datasets)."""
    ome = group_attrs["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    assert "version" not in multiscale  # 0.5 moved it to the "ome" namespace
    axes = multiscale["axes"]
    names = [axis["name"] for axis in axes]
    assert len(set(names)) == len(names)
    types = [axis.get("type") for axis in axes]
    assert 2 <= types.count("space") <= 3
    assert types == sorted(types, key=["time", "channel", "space"].index)  # t, c, then space
    space_units = {
        "angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer", "foot",
        "gigameter", "hectometer", "inch", "kilometer", "megameter", "meter", "micrometer",
        "mile", "millimeter", "nanometer", "parsec", "petameter", "picometer", "terameter",
        "yard", "yoctometer", "yottameter", "zeptometer", "zettameter",
    }  # fmt: skip
    for axis in axes:
        if axis.get("type") == "space" and "unit" in axis:
            assert axis["unit"] in space_units
    for key in ("name", "type", "metadata"):  # SHOULD in the spec, required by strict_image
        assert key in multiscale
    datasets = multiscale["datasets"]
    assert datasets
    sizes = []
    for dataset in datasets:
        array = arrays[dataset["path"]]
        assert array["node_type"] == "array"
        assert array["dimension_names"] == names
        assert len(array["shape"]) == len(axes)
        sizes.append(array["shape"][1] * array["shape"][2])
        transforms = dataset["coordinateTransformations"]
        kinds = [t["type"] for t in transforms]
        assert kinds.count("scale") == 1
        assert kinds[0] == "scale"
        assert set(kinds) <= {"scale", "translation"}
        for t in transforms:
            assert len(t[t["type"]]) == len(axes)
    assert sizes == sorted(sizes, reverse=True)  # highest resolution first
    omero = ome["omero"]
    assert len(omero["channels"]) == arrays[datasets[0]["path"]]["shape"][0]


def test_group_and_arrays_are_ome_zarr_05(opened: tuple[Pyramid, zarr.Group, list[Image]]) -> None:
    pyramid, group, _ = opened
    root = json.loads(pyramid.get_key("zarr.json") or b"")
    assert root["zarr_format"] == 3
    assert root["node_type"] == "group"
    arrays = {
        str(level.index): json.loads(pyramid.get_key(f"{level.index}/zarr.json") or b"")
        for level in pyramid.levels
    }
    check_ngff_05(root["attributes"], arrays)
    assert dict(group.attrs) == root["attributes"]

    meta = pyramid.slide.metadata
    multiscale = root["attributes"]["ome"]["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["c", "y", "x"]
    assert multiscale["axes"][2] == {"name": "x", "type": "space", "unit": "micrometer"}
    for level, dataset in zip(pyramid.levels, multiscale["datasets"], strict=True):
        assert dataset["path"] == str(level.index)
        (scale,) = dataset["coordinateTransformations"]
        assert scale["scale"] == pytest.approx(
            [1, meta.mpp_y * meta.height / level.height, meta.mpp_x * meta.width / level.width]
        )
        array = group[str(level.index)]
        assert array.shape == (3, level.height, level.width)
        assert array.chunks == (3, level.tile_height, level.tile_width)
        assert array.dtype == np.uint8
        assert array.fill_value == 255
        assert array.metadata.dimension_names == ("c", "y", "x")
        assert arrays[str(level.index)]["codecs"] == [{"name": "bytes"}]
    section = root["attributes"]["slidestore"]
    assert section["quickhash"] == meta.quickhash
    assert [lv["native_level"] for lv in section["levels"]] == [
        lv.native_level for lv in pyramid.levels
    ]


def test_without_resolution_scales_are_relative_and_unitless(cmu: Pyramid) -> None:
    meta = msgspec.structs.replace(cmu.slide.metadata, mpp_x=None, mpp_y=None)
    doc = group_document("x", meta, cmu.levels)
    multiscale = doc["attributes"]["ome"]["multiscales"][0]
    assert all("unit" not in axis for axis in multiscale["axes"])
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales[0] == [1, 1, 1]
    assert scales[1] == [1, 2967 / 1484, 2]


# -- the Store protocol ----------------------------------------------------------------


def test_store_is_read_only(cmu: Pyramid) -> None:
    store = cmu.store
    assert isinstance(store, Store)
    assert store.read_only
    assert not store.supports_writes
    assert not store.supports_deletes
    assert store.supports_listing
    buffer = PROTO.buffer.from_bytes(b"x")
    for attempt in (store.set("zarr.json", buffer), store.delete("zarr.json")):
        with pytest.raises(ValueError, match="read-only"):
            run(attempt)
    with pytest.raises(ValueError, match="read-only"):
        store.set_sync("zarr.json", buffer)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="read-only"):
        zarr.open_group(store, mode="a")
    assert store.with_read_only(True) == store
    with pytest.raises(ValueError, match="read-only"):
        store.with_read_only(False)


def test_store_equality(cmu: Pyramid) -> None:
    assert cmu.store == cmu.store
    assert cmu.store == PyramidStore(cmu)
    assert hash(cmu.store) == hash(PyramidStore(cmu))
    assert cmu.store != open_pyramid(cmu.slide).store
    assert cmu.store != "store"


def test_keys_exist_exactly_where_the_grid_has_chunks(cmu: Pyramid) -> None:
    store = cmu.store
    present = ["zarr.json", "0/zarr.json", "4/zarr.json", "0/c/0/0/0", "0/c/0/12/9", "4/c/0/0/0"]
    absent = [
        "5/zarr.json", "0/c/0/13/0", "0/c/0/0/10", "4/c/0/0/1", "0/c/0/01/0", "0/c/1/0/0",
        "0/c/0/0", "0/c", "x/c/0/0/0", "", "/zarr.json", "0/c/0/-1/0", "zarr.json/x",
    ]  # fmt: skip
    for key in present:
        assert run(store.exists(key)), key
        assert cmu.get_key(key) is not None, key
    for key in absent:
        assert not run(store.exists(key)), key
        assert run(store.get(key, PROTO)) is None, key
        assert cmu.get_key(key) is None, key


def test_chunk_bytes_are_the_tile_in_channel_planes(cmu: Pyramid) -> None:
    data = cmu.get_key("1/c/0/2/3")  # no event loop needed
    assert data is not None
    assert len(data) == 3 * 240 * 240
    chunk = np.frombuffer(data, np.uint8).reshape(3, 240, 240)
    np.testing.assert_array_equal(chunk.transpose(1, 2, 0), cmu.tile(1, 3, 2))
    assert run(cmu.store.getsize("1/c/0/2/3")) == len(data)
    assert run(cmu.store.getsize("zarr.json")) == len(cmu.get_key("zarr.json") or b"")
    with pytest.raises(FileNotFoundError):
        run(cmu.store.getsize("1/c/0/99/3"))


def test_byte_ranges_and_partial_values(cmu: Pyramid) -> None:
    store = cmu.store
    key = "0/c/0/1/1"
    whole = cmu.get_key(key)
    assert whole is not None
    requests = [
        (None, whole),
        (RangeByteRequest(10, 20), whole[10:20]),
        (RangeByteRequest(len(whole) - 5, len(whole) + 100), whole[-5:]),
        (OffsetByteRequest(172000), whole[172000:]),
        (SuffixByteRequest(7), whole[-7:]),
        (SuffixByteRequest(10**9), whole),
    ]
    for request, expected in requests:
        got = run(store.get(key, PROTO, request))
        assert got is not None
        assert got.to_bytes() == expected
        sync = store.get_sync(key, byte_range=request)  # type: ignore[attr-defined]
        assert sync.to_bytes() == expected
    meta = run(store.get("zarr.json", PROTO, RangeByteRequest(0, 5)))
    assert meta is not None
    assert meta.to_bytes() == (cmu.get_key("zarr.json") or b"")[:5]
    values = run(
        store.get_partial_values(
            PROTO, [(key, RangeByteRequest(0, 3)), ("nope", None), ("zarr.json", None)]
        )
    )
    assert values[0] is not None
    assert values[0].to_bytes() == whole[:3]
    assert values[1] is None
    assert values[2] is not None
    assert values[2].to_bytes() == cmu.get_key("zarr.json")


def test_listing(cmu: Pyramid) -> None:
    store = cmu.store
    keys = run(collect(store.list()))
    chunk_count = sum(level.columns * level.rows for level in cmu.levels)
    assert len(keys) == len(set(keys)) == 1 + len(cmu.levels) + chunk_count
    assert all(run(store.exists(key)) for key in keys[:50] + keys[-50:])
    assert sorted(run(collect(store.list_dir("")))) == sorted(
        ["zarr.json", "0", "1", "2", "3", "4"]
    )
    assert sorted(run(collect(store.list_dir("0")))) == ["c", "zarr.json"]
    assert sorted(run(collect(store.list_dir("0/")))) == ["c", "zarr.json"]
    assert run(collect(store.list_dir("0/c"))) == ["0"]
    assert run(collect(store.list_dir("0/c/0"))) == [str(r) for r in range(13)]
    assert run(collect(store.list_dir("0/c/0/12"))) == [str(c) for c in range(10)]
    assert run(collect(store.list_dir("0/c/0/13"))) == []
    assert run(collect(store.list_dir("9"))) == []
    assert run(collect(store.list_dir("0/zarr.json"))) == []
    for prefix in ("", "1", "1/", "0/c/0/1", "0/c/0/1/", "4/zarr.json", "zarr", "nothing"):
        expected = sorted(k for k in keys if k.startswith(prefix))
        assert sorted(run(collect(store.list_prefix(prefix)))) == expected, prefix
    assert not run(store.is_empty(""))
    assert run(store.is_empty("7"))
    group = cmu.group()
    assert sorted(name for name, _ in group.members()) == ["0", "1", "2", "3", "4"]


def test_async_reads_decode_off_the_event_loop(
    cmu: Pyramid, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    get_key = cmu.get_key

    def recording(key: str) -> bytes | None:
        threads.append(threading.current_thread())
        return get_key(key)

    monkeypatch.setattr(cmu, "get_key", recording)

    async def main() -> threading.Thread:
        await asyncio.gather(*(cmu.store.get(f"2/c/0/{r}/0", PROTO) for r in range(3)))
        return threading.current_thread()

    loop_thread = run(main())
    assert len(threads) == 3
    assert all(thread is not loop_thread for thread in threads)


# -- errors through zarr ---------------------------------------------------------------


def test_a_broken_slide_fails_through_zarr_and_recovers_nothing_wrong() -> None:
    with slidestore.open_slide(DATA / "unreadable.svs") as slide:
        pyramid = open_pyramid(slide)
        group = pyramid.group()  # metadata needs no pixels
        assert group["0"].shape == (3, 16, 16)
        with pytest.raises(SlideReadError):
            group["0"][:]
        with pytest.raises(SlideReadError):
            run(pyramid.store.get("0/c/0/0/0", PROTO))
        with pytest.raises(SlideReadError):
            da.from_zarr(group["0"]).compute(scheduler="threads")
        assert len(pyramid.cache) == 0
        assert pyramid.get_key("0/zarr.json") is not None
