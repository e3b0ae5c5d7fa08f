"""The slidestore error hierarchy.

Every error also inherits the builtin a caller would naturally catch, so
``except FileNotFoundError`` keeps working for code that knows nothing of slidestore.
Each class declares its wire ``code`` (the stable machine-readable name in the JSON error
body) and the HTTP ``status`` servers answer it with: this is the one status table. Servers
look the status up here, the client SDK maps codes back to these classes
(:mod:`slidestore.error_codes` gathers every class, the cluster's too), and the servers'
OpenAPI texts are generated from it.
"""

from __future__ import annotations

from typing import Self


class SlidestoreError(Exception):
    """Base of every error slidestore raises on purpose."""

    code: str = "slidestore_error"
    status: int = 400
    """The HTTP status a server answers with (the one status table: subclasses inherit
    their parent's unless they declare their own)."""

    @classmethod
    def from_wire(cls, detail: str) -> Self:
        """The error a client raises for an answer carrying this class's ``code``."""
        return cls(detail)


class SlideNotFound(SlidestoreError, FileNotFoundError):
    """The slide file does not exist."""

    code = "slide_not_found"
    status = 404


class UnsupportedFormat(SlidestoreError, ValueError):
    """The file exists but is not a slide slidestore can open (OpenSlide's reason included)."""

    code = "unsupported_format"
    status = 422


class MetadataSchemaError(SlidestoreError, ValueError):
    """A vendor metadata schema file is malformed (its path and the reason included)."""

    code = "invalid_metadata_schema"
    status = 422


class SlideReadError(SlidestoreError, OSError):
    """The slide opened but reading pixels from it failed (corrupt tile data)."""

    code = "slide_read_error"
    status = 422


class DecompressionBomb(SlidestoreError, ValueError):
    """Stored image data that declares far more pixels than its place in the file holds
    (a JPEG tile whose frame says 60000x60000): refused before anything is decoded."""

    code = "decompression_bomb"
    status = 422


class InvalidRequest(SlidestoreError, ValueError):
    """Arguments that can never be valid: zero or negative sizes, unknown formats."""

    code = "invalid_request"
    status = 400


class RegionTooLarge(InvalidRequest):
    """A region larger than the configured pixel budget: refused instead of exhausting memory."""

    code = "region_too_large"


class OutOfBounds(SlidestoreError, IndexError):
    """A level, tile or region that lies outside the slide."""

    code = "out_of_bounds"
    status = 404


class AssociatedImageNotFound(SlidestoreError, KeyError):
    """The slide has no associated image of that name (label, macro, thumbnail)."""

    code = "associated_image_not_found"
    status = 404

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else self.code


class PassthroughUnavailable(SlidestoreError, NotImplementedError):
    """The stored tiles are not standalone JPEG, so they cannot be passed through unchanged."""

    code = "passthrough_unavailable"
    status = 404


class Busy(SlidestoreError, RuntimeError):
    """The server has no room for this work now (its memory budget is taken by requests
    in progress); ``retry_after`` seconds is a fair time to wait before trying again."""

    code = "busy"
    status = 503

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SlideClosed(SlidestoreError, RuntimeError):
    """The slide was used after ``close()``."""

    code = "slide_closed"
    status = 503


# -- access ---------------------------------------------------------------------------


class AuthError(SlidestoreError, PermissionError):
    """Base of token problems."""

    code = "auth_error"
    status = 401


class TokenMissing(AuthError):
    code = "token_missing"
    status = 401


class InvalidToken(AuthError):
    """Malformed, forged (bad signature) or signed with another secret."""

    code = "invalid_token"
    status = 401


class TokenExpired(AuthError):
    code = "token_expired"
    status = 401


class Forbidden(AuthError):
    """A valid token that does not grant this operation on this blob."""

    code = "forbidden"
    status = 403


class GrantUsed(Forbidden):
    """A single-use grant (an upload token) that already made what it allows."""

    code = "grant_used"


class WeakSecret(SlidestoreError, ValueError):
    """A cluster secret that is unset, known, or too short to sign tokens safely."""

    code = "weak_secret"
    status = 400


# -- blobs and uploads ----------------------------------------------------------------


class InvalidBlobId(InvalidRequest):
    """Not a lowercase hex sha256."""

    code = "invalid_blob_id"


class BlobNotFound(SlidestoreError, FileNotFoundError):
    code = "blob_not_found"
    status = 404


class ReplicaCorrupt(SlidestoreError, OSError):
    """This node's copy of a blob failed its checksums (a flipped byte, a truncated file):
    it has been quarantined and nothing of it was served. Another replica has good bytes;
    a client tries the next one."""

    code = "replica_corrupt"
    status = 503


class InsufficientStorage(SlidestoreError, OSError):
    """Accepting the bytes would eat into the node's free-space reserve."""

    code = "insufficient_storage"
    status = 507


class ChecksumMismatch(SlidestoreError, ValueError):
    """The bytes received do not hash to what the client declared."""

    code = "checksum_mismatch"
    status = 460


class UploadNotFound(SlidestoreError, FileNotFoundError):
    code = "upload_not_found"
    status = 404


class UploadExpired(SlidestoreError, FileNotFoundError):
    code = "upload_expired"
    status = 410


class UploadOffsetMismatch(SlidestoreError, ValueError):
    """A chunk that does not start where the upload currently ends."""

    code = "upload_offset_mismatch"
    status = 409


class UploadTooLarge(SlidestoreError, ValueError):
    """More bytes than the upload declared, or than the node accepts."""

    code = "upload_too_large"
    status = 413


class UploadConflict(SlidestoreError, RuntimeError):
    """Another request is writing to the same upload right now."""

    code = "upload_conflict"
    status = 423


class UploadQuotaExceeded(SlidestoreError, PermissionError):
    """The token already holds as many open upload sessions, or as many bytes in them, as
    it may: finish or delete one first (or wait for an unused one to expire)."""

    code = "upload_quota"
    status = 429


class RangeNotSatisfiable(InvalidRequest):
    code = "range_not_satisfiable"
    status = 416


# -- cluster client -------------------------------------------------------------------


class ClusterUnavailable(SlidestoreError, ConnectionError):
    """No coordinator, or no node holding the blob, answered (connection errors, timeouts,
    5xx) after the client's retries."""

    code = "cluster_unavailable"
    status = 503


class ReplicationTimeout(SlidestoreError, TimeoutError):
    """The blob did not reach the requested number of healthy replicas in time (408)."""

    code = "replication_timeout"
    status = 408


# -- replication ----------------------------------------------------------------------


class SourceUnavailable(SlidestoreError, ConnectionError):
    """A replica's source (a peer node or the archive) could not be read: unreachable,
    refused, missing the blob, or cut off mid-copy. Nothing was kept; another source may do."""

    code = "source_unavailable"
    status = 502


class SourceCorrupt(SlidestoreError, ValueError):
    """A replica's source sent bytes that do not hash to the blob id (or not ``size`` of
    them). Nothing was kept; the source's copy needs a scrub."""

    code = "source_corrupt"
    status = 502
