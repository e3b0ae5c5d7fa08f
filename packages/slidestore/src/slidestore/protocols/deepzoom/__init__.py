"""Deep Zoom (DZI) for OpenSeadragon: the grid, the ``.dzi`` descriptor and the tiles."""

from slidestore.protocols.deepzoom.dzi import DZI_MEDIA_TYPE, dzi_xml
from slidestore.protocols.deepzoom.generator import DeepZoom, DeepZoomStats, DeepZoomTile
from slidestore.protocols.deepzoom.grid import DeepZoomGrid
from slidestore.protocols.deepzoom.prerender import Stopped, prerender
from slidestore.protocols.deepzoom.rendition import PackedLevels, Rendition

__all__ = [
    "DZI_MEDIA_TYPE",
    "DeepZoom",
    "DeepZoomGrid",
    "DeepZoomStats",
    "DeepZoomTile",
    "PackedLevels",
    "Rendition",
    "Stopped",
    "dzi_xml",
    "prerender",
]
