"""slidestore: whole-slide images kept safe and served fast."""

from typing import TYPE_CHECKING, Any

from slidestore.errors import SlidestoreError
from slidestore.geometry import LevelInfo, Region, TileAddress
from slidestore.metadata import SlideMetadata
from slidestore.reading import Slide, open_slide
from slidestore.source import SlideSource

if TYPE_CHECKING:
    from slidestore.client import aconnect, connect

__version__ = "0.1.0"

__all__ = [
    "LevelInfo",
    "Region",
    "Slide",
    "SlideMetadata",
    "SlideSource",
    "SlidestoreError",
    "TileAddress",
    "__version__",
    "aconnect",
    "connect",
    "open_slide",
]


def __getattr__(name: str) -> Any:
    # The client SDK (httpx, tqdm) loads only when used.
    if name in ("connect", "aconnect"):
        from slidestore import client

        return getattr(client, name)
    raise AttributeError(f"module 'slidestore' has no attribute {name!r}")
