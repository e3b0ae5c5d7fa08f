"""Settings of a pyramid view, each with an environment override."""

from __future__ import annotations

import os
from typing import Final

import msgspec

from slidestore.errors import InvalidRequest

CACHE_BYTES_ENV: Final = "SLIDESTORE_TILE_CACHE_BYTES"
PERSISTENT_CACHE_ENV: Final = "SLIDESTORE_PERSISTENT_TILE_CACHE"
DEFAULT_CACHE_BYTES: Final = 256 * 2**20


def _cache_bytes_from_env() -> int:
    raw = os.environ.get(CACHE_BYTES_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_CACHE_BYTES
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{CACHE_BYTES_ENV}={raw!r} is not a number of bytes") from None


def _persistent_cache_from_env() -> str | None:
    return os.environ.get(PERSISTENT_CACHE_ENV) or None


class PyramidOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How a :class:`~slidestore.pyramid.Pyramid` caches tiles.

    Defaults are read from the environment when the options are created, so a server
    configured by environment needs no code: ``SLIDESTORE_TILE_CACHE_BYTES`` (in-memory
    decoded-tile cache, default 256 MiB, 0 disables) and ``SLIDESTORE_PERSISTENT_TILE_CACHE``
    (an fsspec URL for derived tiles, default none).
    """

    cache_bytes: int = msgspec.field(default_factory=_cache_bytes_from_env)
    persistent_cache: str | None = msgspec.field(default_factory=_persistent_cache_from_env)
    """fsspec URL (``file:///var/cache/x``, ``memory://x``, ``s3://b/p``) for derived tiles."""

    def __post_init__(self) -> None:
        if self.cache_bytes < 0:
            raise InvalidRequest(f"cache_bytes must be >= 0, got {self.cache_bytes}")
