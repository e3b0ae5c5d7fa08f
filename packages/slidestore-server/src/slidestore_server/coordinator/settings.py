"""Coordinator settings: defaults for one laptop, each overridable by ``SLIDESTORE_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from slidestore.tokens import check_secret


class CoordinatorSettings(msgspec.Struct, kw_only=True, frozen=True):
    data_dir: Path = Path("./slidestore-coordinator")
    """SLIDESTORE_DATA_DIR: holds the SQLite database unless database_url says otherwise."""
    secret: str = ""
    """SLIDESTORE_SECRET: the cluster's HMAC secret for tokens (required: at least 32
    random bytes, from ``slidestore-server secret``; the same on every server)."""
    host: str = "127.0.0.1"
    """SLIDESTORE_HOST"""
    port: int = 8600
    """SLIDESTORE_PORT"""
    database_url: str | None = None
    """SLIDESTORE_DATABASE_URL: sqlite:///path or postgresql://user@host/db."""
    replicas: int = 3
    """SLIDESTORE_REPLICAS: copies of every blob unless the upload asked otherwise."""
    heartbeat_interval: float = 1.0
    """SLIDESTORE_HEARTBEAT_INTERVAL: told to nodes when they register."""
    suspect_after: float = 3.0
    """SLIDESTORE_SUSPECT_AFTER: seconds of silence before a node is suspect."""
    dead_after: float = 10.0
    """SLIDESTORE_DEAD_AFTER: seconds of silence before a node's replicas stop counting."""
    repair_grace: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """SLIDESTORE_REPAIR_GRACE: seconds a coordinator that has just become the leader starts
    no copies, so nodes still booting can register what they hold first (default:
    dead_after; 0: none). A node that appears holding data meanwhile restarts the wait."""
    max_copies: int = 4
    """SLIDESTORE_MAX_COPIES: repair copies running at once in the whole cluster."""
    copy_bytes_per_second: float | None = None
    """SLIDESTORE_COPY_BYTES_PER_SECOND: bandwidth cap of each repair copy."""
    rebalance: bool = False
    """SLIDESTORE_REBALANCE: move blobs from the fullest nodes to the emptiest (a node that
    joins a filled cluster) while nothing needs repair."""
    rebalance_tolerance: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.05
    """SLIDESTORE_REBALANCE_TOLERANCE: fill difference, fullest minus emptiest, left alone."""
    rebalance_max_copies: Annotated[int, msgspec.Meta(ge=0)] = 1
    """SLIDESTORE_REBALANCE_MAX_COPIES: moves running at once."""
    rebalance_bytes_per_second: Annotated[float, msgspec.Meta(ge=1024)] | None = 50e6
    """SLIDESTORE_REBALANCE_BYTES_PER_SECOND: bandwidth cap of each move's copy."""
    archive_url: str | None = None
    """SLIDESTORE_ARCHIVE_URL: fsspec URL expired and idle blobs are archived under (a
    local ``file://`` path, or any URL fsspec opens; nodes restore from the same URL)."""
    archive_jpegxl: bool = False
    """SLIDESTORE_ARCHIVE_JPEGXL: archive a slide whose JPEG tiles hold at least half its
    bytes as JPEG XL (libjxl's lossless JPEG recompression: tiles a quarter smaller, bit
    for bit on restore). Off by default: one core encodes ~1.8 MB/s and a restore decodes
    ~10 MB/s per core (on up to 8 threads), so a 25 GB slide comes back in ~6 min on 8
    cores, ~30 on 2, instead of ~2 (zstd); turn it on for a cold archive where space
    matters more than the wait."""
    archive_idle_days: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """SLIDESTORE_ARCHIVE_IDLE_DAYS: archive blobs nobody read (tiles, zarr, downloads)
    for this many days (needs archive_url; None or 0: never; a blob's own
    ``PUT /v1/blobs/{id}/lifecycle`` overrides it)."""
    clock_file: Path | None = None
    """SLIDESTORE_CLOCK_FILE: for tests: a file holding seconds added to the retention
    clock (last access and idle periods), re-read at every use: days pass without waiting."""
    loop_interval: float = 0.5
    """SLIDESTORE_LOOP_INTERVAL: seconds between passes of the leader's loop."""
    lease_seconds: float = 3.0
    """SLIDESTORE_LEASE_SECONDS: SQLite leader lease; a dead leader is replaced after it."""
    tombstone_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """SLIDESTORE_TOMBSTONE_DAYS: how long the database and every node remember a deleted
    blob. A node that comes back after longer with a copy of it makes it reappear
    (adopted, pinned): keep it well above the longest a node may be away."""

    @property
    def tombstone_seconds(self) -> float:
        return self.tombstone_days * 86400.0

    @property
    def grace_seconds(self) -> float:
        return self.dead_after if self.repair_grace is None else self.repair_grace

    def __post_init__(self) -> None:
        check_secret(self.secret)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'coordinator.db'}"
