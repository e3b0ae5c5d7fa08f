"""The one table that maps library exceptions to HTTP statuses, and the JSON error body.

Every error leaves the server as ``{"error": code, "detail": text}``. Lookup walks the
exception's MRO, so a subclass inherits its parent's status unless listed itself.

A detail never names a file under a node's data directory: such a path (an OpenSlide
message about a blob file, an OSError's) is replaced by the blob or upload it belongs
to, so an error tells a client nothing about the server's disk.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Final

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from slidestore import errors as e
from slidestore.blobs import is_blob_id
from slidestore.cluster import errors as cluster_errors
from slidestore_server.coordinator import errors as coordinator_errors

STATUS: Final[dict[type[BaseException], int]] = {
    e.TokenMissing: 401,
    e.InvalidToken: 401,
    e.TokenExpired: 401,
    e.Forbidden: 403,
    e.SlideNotFound: 404,
    e.BlobNotFound: 404,
    e.UploadNotFound: 404,
    cluster_errors.UnknownNode: 404,
    coordinator_errors.WaitTimeout: 408,
    coordinator_errors.TooManyWaits: 429,
    coordinator_errors.NotArchived: 409,
    cluster_errors.NoPlacement: 507,
    e.AssociatedImageNotFound: 404,
    e.OutOfBounds: 404,
    e.PassthroughUnavailable: 404,
    e.UploadExpired: 410,
    e.UploadOffsetMismatch: 409,
    e.UploadConflict: 423,
    e.UploadTooLarge: 413,
    e.RangeNotSatisfiable: 416,
    e.UnsupportedFormat: 422,
    e.DecompressionBomb: 422,
    e.SlideReadError: 422,
    e.ChecksumMismatch: 460,
    e.InsufficientStorage: 507,
    e.SourceUnavailable: 502,
    e.SourceCorrupt: 502,
    e.InvalidRequest: 400,
    e.SlideClosed: 503,
    e.Busy: 503,
    e.SlidestoreError: 400,
}

_encoder = msgspec.json.Encoder()
log = logging.getLogger("slidestore.http")


class ErrorBody(msgspec.Struct):
    error: str
    detail: str


def _private_roots(request: Request) -> list[str]:
    """The data directory of the node serving ``request`` (as configured and resolved)."""
    node = getattr(request.app.state, "node", None)
    data_dir = getattr(getattr(node, "settings", None), "data_dir", None)
    if not isinstance(data_dir, Path):
        return []
    return sorted({str(data_dir), str(data_dir.resolve()), str(data_dir.absolute())}, key=len)[::-1]


def _what(inside: str) -> str:
    """What a file in the data directory holds (``inside``: its path there), in the words
    of the API."""
    parts = [part for part in inside.split("/") if part]
    for index, part in enumerate(parts):
        if is_blob_id(part):
            return f"blob {part}"
        if part == "uploads" and index + 1 < len(parts):
            return f"upload {parts[index + 1]}"
    return "a file on this node"


def redact_paths(detail: str, roots: list[str]) -> str:
    """``detail`` with every path under one of ``roots`` replaced by what it is."""
    for root in roots:
        if root and root in detail:
            pattern = re.compile(re.escape(root) + r"""((?:/[^\s'":,;)]*)?)(?![^\s'":,;)])""")
            detail = pattern.sub(lambda match: _what(match.group(1)), detail)
    return detail


_TOKEN_IN_PATH = re.compile(r"/t/[^/]+/")


def loggable_path(path: str) -> str:
    """``path`` without a capability carried in it (``/iiif/3/t/{token}/…``): logs are
    read by more people than the token was handed to."""
    return _TOKEN_IN_PATH.sub("/t/<token>/", path)


def status_for(exc: BaseException) -> int:
    for klass in type(exc).__mro__:
        if klass in STATUS:
            return STATUS[klass]
    return 500


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _encoder.encode(ErrorBody(error=code, detail=detail)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def slidestore_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.SlidestoreError)
    status = status_for(exc)
    log.log(
        logging.WARNING if status >= 500 or status == 422 else logging.INFO,
        "request refused",
        extra={
            "status": status,
            "error": exc.code,
            "path": loggable_path(request.url.path),
            "method": request.method,
        },
    )
    headers = {"WWW-Authenticate": 'Bearer realm="slidestore"'} if status == 401 else None
    if isinstance(exc, e.Busy | coordinator_errors.TooManyWaits):
        headers = {"Retry-After": str(math.ceil(exc.retry_after))}
    return error_response(
        status, exc.code, redact_paths(str(exc), _private_roots(request)), headers
    )


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


EXCEPTION_HANDLERS = {
    e.SlidestoreError: slidestore_error_handler,
    HTTPException: http_error_handler,
}
