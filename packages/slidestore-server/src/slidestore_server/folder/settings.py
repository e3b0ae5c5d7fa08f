"""The folder server's settings: ``SLIDESTORE_<FIELD>`` variables or ``serve`` flags."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from pathlib import Path

import msgspec


class FolderSettings(msgspec.Struct, kw_only=True, frozen=True):
    serve_root: Path
    """SLIDESTORE_SERVE_ROOT: the folder whose slides are served (recursively, read-only)."""
    host: str = "127.0.0.1"
    port: int = 8780
    workers: int = 1
    secret: str = ""
    """SLIDESTORE_SECRET: signs read tokens. Required unless ``host`` is loopback."""
    tokens_required: bool = True
    """Off only on loopback (the ``serve`` command decides): then a request without a token
    may read tiles, zarr, info and thumbnails of every slide (never label or macro)."""
    open_slides: int = 64
    tile_cache_bytes: int = 256 << 20
    cache_max_age: int = 86400
    iiif_render_budget_bytes: int = 512 << 20
    iiif_render_wait_seconds: float = 10.0
    viewer_dir: str = ""
    """SLIDESTORE_VIEWER_DIR: OpenSeadragon's build directory (default: the portal's
    ``apps/labportal/frontend/node_modules/openseadragon/build/openseadragon``)."""
    prerender: bool = True
    """SLIDESTORE_PRERENDER: render the Deep Zoom levels between the scanner's in the
    background, as a node does after an upload, so every level serves like a native tile.
    Written to ``render_cache_dir`` (about a fifth to a third of a slide's size), never beside it."""
    prerender_threads: int = 1
    render_cache_dir: str = ""
    """SLIDESTORE_RENDER_CACHE_DIR: where prerendered levels go (default
    ``$XDG_CACHE_HOME/slidestore/serve/<digest of the folder path>``)."""
    rescan_seconds: float = 5.0
    """The folder is walked again at most this often (on the index page or an unknown id)."""

    def renditions_dir(self) -> Path:
        if self.render_cache_dir:
            return Path(self.render_cache_dir).expanduser() / "renditions"
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        digest = hashlib.sha256(str(self.serve_root.resolve()).encode()).hexdigest()[:16]
        return base / "slidestore" / "serve" / digest / "renditions"

    @property
    def data_dir(self) -> Path:
        """Error details name no file below this (``errors.redact_paths``), as on a node."""
        return self.serve_root


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
