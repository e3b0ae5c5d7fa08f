"""Opening slides and reading their pixels, whichever library reads the file."""

from slidestore.reading.registry import open_slide, reader_names, register_reader
from slidestore.reading.slide import Slide
from slidestore.source import SlideSource

__all__ = ["Slide", "SlideSource", "open_slide", "reader_names", "register_reader"]
