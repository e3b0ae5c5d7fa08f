"""Viewer protocols over the pyramid: Deep Zoom (OpenSeadragon) and IIIF Image API 3.0.

The subpackages import the pyramid lazily through their types only, so importing
``slidestore.protocols.iiif`` for request parsing costs no slide machinery.
"""

from slidestore.protocols.deepzoom import DeepZoom, DeepZoomTile
from slidestore.protocols.iiif import IIIFRequestError

__all__ = ["DeepZoom", "DeepZoomTile", "IIIFRequestError"]
