"""The slidestore error hierarchy.

Every error also inherits the builtin a caller would naturally catch, so
``except FileNotFoundError`` keeps working for code that knows nothing of slidestore.
Servers map each class to one HTTP status (see ``slidestore_server``); ``code`` is the
stable machine-readable name that goes into the JSON error body.
"""

from __future__ import annotations


class SlidestoreError(Exception):
    """Base of every error slidestore raises on purpose."""

    code: str = "slidestore_error"


class SlideNotFound(SlidestoreError, FileNotFoundError):
    """The slide file does not exist."""

    code = "slide_not_found"


class UnsupportedFormat(SlidestoreError, ValueError):
    """The file exists but is not a slide slidestore can open (OpenSlide's reason included)."""

    code = "unsupported_format"


class SlideReadError(SlidestoreError, OSError):
    """The slide opened but reading pixels from it failed (corrupt tile data)."""

    code = "slide_read_error"


class DecompressionBomb(SlidestoreError, ValueError):
    """Stored image data that declares far more pixels than its place in the file holds
    (a JPEG tile whose frame says 60000x60000): refused before anything is decoded."""

    code = "decompression_bomb"


class InvalidRequest(SlidestoreError, ValueError):
    """Arguments that can never be valid: zero or negative sizes, unknown formats."""

    code = "invalid_request"


class RegionTooLarge(InvalidRequest):
    """A region larger than the configured pixel budget: refused instead of exhausting memory."""

    code = "region_too_large"


class OutOfBounds(SlidestoreError, IndexError):
    """A level, tile or region that lies outside the slide."""

    code = "out_of_bounds"


class AssociatedImageNotFound(SlidestoreError, KeyError):
    """The slide has no associated image of that name (label, macro, thumbnail)."""

    code = "associated_image_not_found"

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else self.code


class PassthroughUnavailable(SlidestoreError, NotImplementedError):
    """The stored tiles are not standalone JPEG, so they cannot be passed through unchanged."""

    code = "passthrough_unavailable"


class Busy(SlidestoreError, RuntimeError):
    """The server has no room for this work now (its memory budget is taken by requests
    in progress); ``retry_after`` seconds is a fair time to wait before trying again."""

    code = "busy"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SlideClosed(SlidestoreError, RuntimeError):
    """The slide was used after ``close()``."""

    code = "slide_closed"


# -- access ---------------------------------------------------------------------------


class AuthError(SlidestoreError, PermissionError):
    """Base of token problems."""

    code = "auth_error"


class TokenMissing(AuthError):
    code = "token_missing"


class InvalidToken(AuthError):
    """Malformed, forged (bad signature) or signed with another secret."""

    code = "invalid_token"


class TokenExpired(AuthError):
    code = "token_expired"


class Forbidden(AuthError):
    """A valid token that does not grant this operation on this blob."""

    code = "forbidden"


class GrantUsed(Forbidden):
    """A single-use grant (an upload token) that already made what it allows."""

    code = "grant_used"


class WeakSecret(SlidestoreError, ValueError):
    """A cluster secret that is unset, known, or too short to sign tokens safely."""

    code = "weak_secret"


# -- blobs and uploads ----------------------------------------------------------------


class InvalidBlobId(InvalidRequest):
    """Not a lowercase hex sha256."""

    code = "invalid_blob_id"


class BlobNotFound(SlidestoreError, FileNotFoundError):
    code = "blob_not_found"


class InsufficientStorage(SlidestoreError, OSError):
    """Accepting the bytes would eat into the node's free-space reserve."""

    code = "insufficient_storage"


class ChecksumMismatch(SlidestoreError, ValueError):
    """The bytes received do not hash to what the client declared."""

    code = "checksum_mismatch"


class UploadNotFound(SlidestoreError, FileNotFoundError):
    code = "upload_not_found"


class UploadExpired(SlidestoreError, FileNotFoundError):
    code = "upload_expired"


class UploadOffsetMismatch(SlidestoreError, ValueError):
    """A chunk that does not start where the upload currently ends."""

    code = "upload_offset_mismatch"


class UploadTooLarge(SlidestoreError, ValueError):
    """More bytes than the upload declared, or than the node accepts."""

    code = "upload_too_large"


class UploadConflict(SlidestoreError, RuntimeError):
    """Another request is writing to the same upload right now."""

    code = "upload_conflict"


class UploadQuotaExceeded(SlidestoreError, PermissionError):
    """The token already holds as many open upload sessions, or as many bytes in them, as
    it may: finish or delete one first (or wait for an unused one to expire)."""

    code = "upload_quota"


class RangeNotSatisfiable(InvalidRequest):
    code = "range_not_satisfiable"


# -- cluster client -------------------------------------------------------------------


class ClusterUnavailable(SlidestoreError, ConnectionError):
    """No coordinator, or no node holding the blob, answered (connection errors, timeouts,
    5xx) after the client's retries."""

    code = "cluster_unavailable"


class ReplicationTimeout(SlidestoreError, TimeoutError):
    """The blob did not reach the requested number of healthy replicas in time (408)."""

    code = "replication_timeout"


# -- replication ----------------------------------------------------------------------


class SourceUnavailable(SlidestoreError, ConnectionError):
    """A replica's source (a peer node or the archive) could not be read: unreachable,
    refused, missing the blob, or cut off mid-copy. Nothing was kept; another source may do."""

    code = "source_unavailable"


class SourceCorrupt(SlidestoreError, ValueError):
    """A replica's source sent bytes that do not hash to the blob id (or not ``size`` of
    them). Nothing was kept; the source's copy needs a scrub."""

    code = "source_corrupt"
