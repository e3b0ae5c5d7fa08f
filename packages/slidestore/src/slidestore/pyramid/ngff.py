"""The ``zarr.json`` documents of the pyramid: zarr v3 metadata with OME-Zarr (NGFF) 0.5.

Arrays are ``(c, y, x)`` because NGFF requires the channel axis before the spatial ones;
``dimension_names`` must repeat the axis names. Scales are micrometres per pixel when the
slide records its resolution; otherwise NGFF asks for the factor relative to level 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from slidestore.metadata import SlideMetadata
from slidestore.pyramid.levels import PyramidLevel

NGFF_VERSION: Final = "0.5"
FILL_VALUE: Final = 255
DOWNSCALING: Final = (
    "Levels with a native_level are the scanner's own; the others are 2x2 box means of the "
    "next finer level, rounded half up ((a+b+c+d+2)//4), the last column/row replicated "
    "when the finer level has an odd size."
)


def array_document(level: PyramidLevel) -> dict[str, Any]:
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [3, level.height, level.width],
        "data_type": "uint8",
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [3, level.tile_height, level.tile_width]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        # Chunks are the decoded tiles as they are: no compression to undo on either side.
        "codecs": [{"name": "bytes"}],
        "fill_value": FILL_VALUE,
        "attributes": {},
        "dimension_names": ["c", "y", "x"],
    }


def _scale(meta: SlideMetadata, level: PyramidLevel) -> list[float]:
    # Per axis: a level's y and x downsamples differ slightly when a size was rounded.
    ds_y = meta.height / level.height
    ds_x = meta.width / level.width
    if meta.mpp_x is None or meta.mpp_y is None:
        return [1.0, ds_y, ds_x]
    return [1.0, meta.mpp_y * ds_y, meta.mpp_x * ds_x]


def group_document(
    name: str, meta: SlideMetadata, levels: Sequence[PyramidLevel]
) -> dict[str, Any]:
    space_unit = {} if meta.mpp_x is None or meta.mpp_y is None else {"unit": "micrometer"}
    multiscale = {
        "name": name,
        "axes": [
            {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", **space_unit},
            {"name": "x", "type": "space", **space_unit},
        ],
        "datasets": [
            {
                "path": str(level.index),
                "coordinateTransformations": [{"type": "scale", "scale": _scale(meta, level)}],
            }
            for level in levels
        ],
        "type": "mean",
        "metadata": {"description": DOWNSCALING, "method": "slidestore.pyramid.derive.halve"},
    }
    omero = {
        "name": name,
        "channels": [
            {
                "label": label,
                "color": color,
                "active": True,
                "coefficient": 1,
                "family": "linear",
                "inverted": False,
                "window": {"min": 0, "max": 255, "start": 0, "end": 255},
            }
            for label, color in (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))
        ],
        "rdefs": {"model": "color", "defaultT": 0, "defaultZ": 0},
    }
    slidestore = {
        "vendor": meta.vendor,
        "width": meta.width,
        "height": meta.height,
        "mpp_x": meta.mpp_x,
        "mpp_y": meta.mpp_y,
        "objective_power": meta.objective_power,
        "quickhash": meta.quickhash,
        "background_color": list(meta.background_color),
        "levels": [msgspec.to_builtins(level) for level in levels],
    }
    return {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {
            "ome": {"version": NGFF_VERSION, "multiscales": [multiscale], "omero": omero},
            "slidestore": slidestore,
        },
    }


def documents(name: str, meta: SlideMetadata, levels: Sequence[PyramidLevel]) -> dict[str, bytes]:
    """Every metadata key of the store and its bytes."""
    docs = {"zarr.json": msgspec.json.encode(group_document(name, meta, levels))}
    for level in levels:
        docs[f"{level.index}/zarr.json"] = msgspec.json.encode(array_document(level))
    return docs
