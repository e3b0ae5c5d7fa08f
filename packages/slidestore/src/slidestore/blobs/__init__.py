"""A node's content-addressed blob store: durable streaming writes, ranges, space guard, scrub."""

from slidestore.blobs.ids import check_blob_id, fanout, is_blob_id
from slidestore.blobs.reader import BlobRange
from slidestore.blobs.scrub import hash_file
from slidestore.blobs.space import Reservation, SpaceGuard, free_bytes
from slidestore.blobs.store import BlobStats, BlobStore
from slidestore.blobs.writer import BlobWriter

__all__ = [
    "BlobRange",
    "BlobStats",
    "BlobStore",
    "BlobWriter",
    "Reservation",
    "SpaceGuard",
    "check_blob_id",
    "fanout",
    "free_bytes",
    "hash_file",
    "is_blob_id",
]
