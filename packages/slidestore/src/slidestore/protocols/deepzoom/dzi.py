"""The ``.dzi`` descriptor OpenSeadragon reads before requesting tiles."""

from __future__ import annotations

from typing import Final
from xml.sax.saxutils import quoteattr

DZI_NAMESPACE: Final = "http://schemas.microsoft.com/deepzoom/2008"
DZI_MEDIA_TYPE: Final = "application/xml"


def dzi_xml(*, width: int, height: int, tile_size: int, overlap: int, format: str) -> str:
    """The Deep Zoom Image XML: tile size, overlap, tile file extension, full image size.

    ``format`` becomes the tiles' file extension in the viewer's URLs
    (``{name}_files/{level}/{col}_{row}.{format}``), so it must be one the tile endpoint
    accepts.
    """
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Image xmlns="{DZI_NAMESPACE}" Format={quoteattr(format)} '
        f'Overlap="{int(overlap)}" TileSize="{int(tile_size)}">'
        f'<Size Height="{int(height)}" Width="{int(width)}"/>'
        "</Image>\n"
    )
