"""Synthetic Aperio slides for tests and benchmarks.

:func:`write_svs` streams a realistic ``.svs`` of any size to disk (real tissue from the
sample slide on white glass, JPEG tiles stored like Aperio's, a pyramid, thumbnail,
label and macro); :func:`cached_svs` generates one once per parameter set into a shared
cache. ``slidestore.testing.fixtures`` holds pytest fixtures built on them.
"""

from slidestore.synthetic.aperio import level_sizes, thumbnail_size
from slidestore.synthetic.svs import SvsSpec, write_spec, write_svs
from slidestore.testing.cache import SvsOptions, cached_svs
from slidestore.testing.paths import sample_slide_path, shared_data_dir, slide_cache_dir

__all__ = [
    "SvsOptions",
    "SvsSpec",
    "cached_svs",
    "level_sizes",
    "sample_slide_path",
    "shared_data_dir",
    "slide_cache_dir",
    "thumbnail_size",
    "write_spec",
    "write_svs",
]
