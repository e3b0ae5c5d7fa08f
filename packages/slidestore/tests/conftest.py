"""Fixtures shared by slidestore's tests.

The fixtures live in ``slidestore.testing.fixtures`` so that other packages' suites can
import the same ones; importing them here registers them for this directory.
"""

from slidestore.testing.fixtures import (
    boxes_tiff_path,
    generated_svs,
    sample_slide_path,
    small_svs_path,
    unopenable_tiff_path,
    unreadable_svs_path,
)

__all__ = [
    "boxes_tiff_path",
    "generated_svs",
    "sample_slide_path",
    "small_svs_path",
    "unopenable_tiff_path",
    "unreadable_svs_path",
]
