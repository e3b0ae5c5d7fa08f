"""Node settings: a default for one laptop, each overridable by ``SLIDESTORE_*`` env vars."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from slidestore.tokens import check_secret


class NodeSettings(msgspec.Struct, kw_only=True, frozen=True):
    data_dir: Path = Path("./slidestore-data")
    """SLIDESTORE_DATA_DIR: blobs, upload sessions and the node id live here."""
    secret: str = ""
    """SLIDESTORE_SECRET: the cluster's HMAC secret for tokens (required: at least 32
    random bytes, from ``slidestore-server secret``; the same on every server)."""
    host: str = "127.0.0.1"
    """SLIDESTORE_HOST"""
    port: int = 8700
    """SLIDESTORE_PORT"""
    public_url: str | None = None
    """SLIDESTORE_PUBLIC_URL: how clients reach this node (default http://host:port)."""
    reserve_bytes: int = 1 << 30
    """SLIDESTORE_RESERVE_BYTES: free space never handed out to uploads."""
    max_upload_bytes: int = 64 << 30
    """SLIDESTORE_MAX_UPLOAD_BYTES: the largest single upload accepted (tus Tus-Max-Size)."""
    upload_expiry_seconds: int = 24 * 3600
    """SLIDESTORE_UPLOAD_EXPIRY_SECONDS: an upload untouched this long is discarded."""
    tile_cache_bytes: int = 256 << 20
    """SLIDESTORE_TILE_CACHE_BYTES: decoded tiles kept in memory (shared by all slides)."""
    open_slides: int = 64
    """SLIDESTORE_OPEN_SLIDES: open slide handles kept."""
    cache_max_age: int = 31536000
    """SLIDESTORE_CACHE_MAX_AGE: Cache-Control max-age of content-addressed responses."""
    coordinator_url: str | None = None
    """SLIDESTORE_COORDINATOR_URL: register and heartbeat there when set."""
    zone: str = "default"
    """SLIDESTORE_ZONE: failure domain for replica placement."""
    workers: int = 1
    """SLIDESTORE_WORKERS: server worker processes."""
    heartbeat_interval: float = 1.0
    """SLIDESTORE_HEARTBEAT_INTERVAL: seconds between heartbeats until the coordinator's
    registration answer names its own interval."""
    scrub_bytes_per_second: float = 50e6
    """SLIDESTORE_SCRUB_BYTES_PER_SECOND: read rate of the background scrubber (0: off)."""
    scrub_interval_seconds: float = 3600.0
    """SLIDESTORE_SCRUB_INTERVAL_SECONDS: pause between scrub passes (0: off)."""
    capacity_bytes: int = 0
    """SLIDESTORE_CAPACITY_BYTES: pretend the disk holds this much (0: the filesystem's
    size); reported free space is then min(filesystem free, capacity - used)."""
    cors_origins: str = "*"
    """SLIDESTORE_CORS_ORIGINS: comma-separated origins whose pages may call the node
    (browser uploads and viewers on the portal's origin); tokens, not origins, are what
    protect the data, so the default allows any."""
    prerender: bool = True
    """SLIDESTORE_PRERENDER: render every slide's Deep Zoom tiles ahead of time in the
    background (about a third of the slide's size on disk; levels between the scanner's
    then serve as fast as native tiles)."""
    prerender_threads: int = 1
    """SLIDESTORE_PRERENDER_THREADS: threads the background prerendering uses."""
    prerender_space_retry_seconds: float = 60.0
    """SLIDESTORE_PRERENDER_SPACE_RETRY_SECONDS: a rendition that did not fit on the disk
    (or filled it) is tried again this much later."""
    recheck_seconds: float = 60.0
    """SLIDESTORE_RECHECK_SECONDS: how long a check of an open slide's bytes against their
    checksums is trusted before OpenSlide may read them unchecked: after this, each chunk
    is checked again before its next read (a byte can rot on disk after its check while
    the slide stays open for hours). 0: check before every read."""
    busy_replica_bytes_per_second: float = 32e6
    """SLIDESTORE_BUSY_REPLICA_BYTES_PER_SECOND: how fast this node sends a blob to another
    node (repair, replication) while people are using it (a request in the last half
    second); idle, it sends at full speed. 0: always full speed."""
    iiif_render_budget_bytes: int = 512 << 20
    """SLIDESTORE_IIIF_RENDER_BUDGET_BYTES: memory the IIIF renders in progress may take
    together (each estimated before it starts; per server worker process). A render that
    does not fit waits for room; one larger than the whole budget is refused (400)."""
    iiif_render_wait_seconds: float = 2.0
    """SLIDESTORE_IIIF_RENDER_WAIT_SECONDS: how long a render waits for room in the budget
    before the node answers 503 ``busy`` with a Retry-After."""
    upload_idle_expiry_seconds: int = 300
    """SLIDESTORE_UPLOAD_IDLE_EXPIRY_SECONDS: an upload that has received no byte this long
    is discarded (with its promise of disk space); once bytes arrive,
    ``upload_expiry_seconds`` applies."""
    upload_read_idle_seconds: float = 15.0
    """SLIDESTORE_UPLOAD_READ_IDLE_SECONDS: a ``PATCH`` whose body sends no byte for this
    long is ended (the client's network died without closing the connection): the bytes
    that arrived are kept and the upload is unlocked for a resume."""
    upload_max_sessions_per_token: int = 16
    """SLIDESTORE_UPLOAD_MAX_SESSIONS_PER_TOKEN: open (incomplete) upload sessions one
    token (its nonce) may hold at once; one more is refused (429 ``upload_quota``)."""
    archive_url: str | None = None
    """SLIDESTORE_ARCHIVE_URL: the archive this node may restore blobs from (the
    coordinator's ``archive_url``, an fsspec URL); ``POST /replicas`` pulls only
    ``{archive_url}/{blob id}``. Unset: no archive pulls."""

    def __post_init__(self) -> None:
        check_secret(self.secret)

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


def from_env(
    cls: type[Any] = NodeSettings, environ: dict[str, str] | None = None, **overrides: Any
) -> Any:
    """Build settings from ``SLIDESTORE_<FIELD>`` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        value = env.get(f"SLIDESTORE_{field.name.upper()}")
        if value is not None:
            raw[field.name] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return msgspec.convert(raw, cls, strict=False, dec_hook=_dec_hook)


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Path:
        return Path(obj)
    raise NotImplementedError(type_)
