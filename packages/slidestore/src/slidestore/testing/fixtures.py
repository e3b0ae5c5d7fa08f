"""Pytest fixtures for any suite that needs slides: the real sample files and a generated one.

Import the ones you need into a ``conftest.py``::

    from slidestore.testing.fixtures import generated_svs, sample_slide_path

The real files come from the shared test-data directory (``<repo>/../shared/data`` or
``$SLIDESTORE_TEST_DATA``); a missing file is an error, not a skip, so a broken checkout
cannot pass silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from slidestore.synthetic.svs import write_svs
from slidestore.testing import paths

GENERATED_SVS_SIZE: Final = (3072, 2560)
"""Three levels (3072x2560, 768x640, 192x160) with exact 4x / 16x downsamples, partial
edge tiles on level 0 and 1, so OpenSlide's ``read_region`` lines up with native tiles."""
GENERATED_SVS_SEED: Final = 7


def _shared_file(name: str) -> Path:
    try:
        path = paths.shared_data_dir() / name
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    if not path.is_file():
        pytest.fail(f"test file missing: {path}")
    return path


@pytest.fixture(scope="session")
def sample_slide_path() -> Path:
    """The real Aperio scan CMU-1-Small-Region.svs (2220x2967, one level, JPEG Q=30)."""
    return _shared_file(paths.SAMPLE_SLIDE_NAME)


@pytest.fixture(scope="session")
def small_svs_path() -> Path:
    """A tiny valid 16x16 Aperio slide with a thumbnail."""
    return _shared_file("small.svs")


@pytest.fixture(scope="session")
def unreadable_svs_path() -> Path:
    """An SVS that opens but whose tile data is broken (reading pixels fails)."""
    return _shared_file("unreadable.svs")


@pytest.fixture(scope="session")
def unopenable_tiff_path() -> Path:
    """A TIFF OpenSlide refuses to open (unsupported compression)."""
    return _shared_file("unopenable.tiff")


@pytest.fixture(scope="session")
def boxes_tiff_path() -> Path:
    """A small generic tiled TIFF pyramid (300x250, 4 levels), vendor ``generic-tiff``."""
    return _shared_file("boxes.tiff")


@pytest.fixture(scope="session")
def generated_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic multi-level Aperio slide (see :data:`GENERATED_SVS_SIZE`), made once."""
    directory = tmp_path_factory.mktemp("generated-svs")
    width, height = GENERATED_SVS_SIZE
    return write_svs(directory / "generated.svs", width, height, seed=GENERATED_SVS_SEED)
