"""Resumable upload sessions on disk (tus-agnostic): the durable path from bytes to blob."""

from slidestore.uploads.appender import Appender
from slidestore.uploads.checksums import CHUNK_ALGORITHMS, ChunkChecksum, normalize_sha256
from slidestore.uploads.manager import UploadManager
from slidestore.uploads.state import UploadInfo
from slidestore.uploads.validate import validate_slide

__all__ = [
    "CHUNK_ALGORITHMS",
    "Appender",
    "ChunkChecksum",
    "UploadInfo",
    "UploadManager",
    "normalize_sha256",
    "validate_slide",
]
