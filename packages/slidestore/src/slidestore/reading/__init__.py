"""Opening slides and reading their pixels."""

from slidestore.reading.slide import Slide, open_slide

__all__ = ["Slide", "open_slide"]
