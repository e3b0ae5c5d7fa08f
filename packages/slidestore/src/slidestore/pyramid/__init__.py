"""The slide as a cached zarr v3 pyramid (OME-Zarr 0.5): what notebooks, DeepZoom and IIIF read.

``open_pyramid(slide)`` plans power-of-two levels (native where the slide has them, 2x2 box
means otherwise), serves tiles through a byte-bounded cache, and exposes them as a
read-only zarr store: ``zarr.open_group(pyramid.store, mode="r")``.
"""

from slidestore.pyramid.levels import PyramidLevel, plan_levels
from slidestore.pyramid.options import PyramidOptions
from slidestore.pyramid.persistent import PersistentTileCache
from slidestore.pyramid.pyramid import Pyramid, open_pyramid
from slidestore.pyramid.store import PyramidStore

__all__ = [
    "PersistentTileCache",
    "Pyramid",
    "PyramidLevel",
    "PyramidOptions",
    "PyramidStore",
    "open_pyramid",
    "plan_levels",
]
