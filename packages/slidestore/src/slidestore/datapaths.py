"""Where the shared sample data (the real sample slide) and the generated-slide cache live.

The real sample slides sit *beside* the repository (``<repo>/../shared/data``), never in
it, so we need the repository root. It is found by walking up from this file (an
editable install lives inside the repo) and from the working directory (tests and
benchmarks run from the repo); every location can be overridden by an environment
variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

TEST_DATA_ENV: Final = "SLIDESTORE_TEST_DATA"
SAMPLE_SLIDE_ENV: Final = "SLIDESTORE_SAMPLE_SLIDE"
CACHE_DIR_ENV: Final = "SLIDESTORE_CACHE_DIR"

SAMPLE_SLIDE_NAME: Final = "CMU-1-Small-Region.svs"


def _candidates() -> Iterator[Path]:
    here = Path(__file__).resolve()
    yield from here.parents
    cwd = Path.cwd().resolve()
    yield cwd
    yield from cwd.parents


def repo_root() -> Path | None:
    """The workspace root (holds ``pyproject.toml`` and ``packages/slidestore``), if found."""
    for directory in _candidates():
        if (directory / "pyproject.toml").is_file() and (
            directory / "packages" / "slidestore"
        ).is_dir():
            return directory
    return None


def shared_data_dir() -> Path:
    """``$SLIDESTORE_TEST_DATA``, else ``<repo>/../shared/data``."""
    configured = os.environ.get(TEST_DATA_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{TEST_DATA_ENV}={configured}: not a directory")
        return path
    root = repo_root()
    if root is not None:
        path = (root.parent / "shared" / "data").resolve()
        if path.is_dir():
            return path
    raise FileNotFoundError(
        "test data not found: expected <repo>/../shared/data; "
        f"set {TEST_DATA_ENV} to the directory holding {SAMPLE_SLIDE_NAME}"
    )


def sample_slide_path() -> Path:
    """The real Aperio slide whose tissue the generator reuses."""
    configured = os.environ.get(SAMPLE_SLIDE_ENV)
    path = Path(configured).expanduser() if configured else shared_data_dir() / SAMPLE_SLIDE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"sample slide not found: {path} (set {SAMPLE_SLIDE_ENV})")
    return path


def slide_cache_dir() -> Path:
    """``$SLIDESTORE_CACHE_DIR``, else ``<repo>/.cache/slides`` (git-ignored).

    Outside a checkout it falls back to the user's cache directory.
    """
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    root = repo_root()
    if root is not None:
        return root / ".cache" / "slides"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "slidestore" / "slides"
