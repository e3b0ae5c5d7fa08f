"""Fixtures for every test directory of the workspace (packages/*/tests, tests/).

They live in ``slidestore.testing.fixtures`` so that any suite, in or out of this
repository, can import the same ones; importing them here registers them once.
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
