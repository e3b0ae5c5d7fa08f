"""slidestore: whole-slide images kept safe and served fast."""

from slidestore.errors import SlidestoreError
from slidestore.geometry import LevelInfo, Region, TileAddress
from slidestore.metadata import SlideMetadata
from slidestore.reading import Slide, open_slide

__version__ = "0.1.0"

__all__ = [
    "LevelInfo",
    "Region",
    "Slide",
    "SlideMetadata",
    "SlidestoreError",
    "TileAddress",
    "__version__",
    "open_slide",
]
