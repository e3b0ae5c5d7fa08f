"""The one table that maps library exceptions to HTTP statuses, and the JSON error body.

Every error leaves the server as ``{"error": code, "detail": text}``. Lookup walks the
exception's MRO, so a subclass inherits its parent's status unless listed itself.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from slidestore import errors as e
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
            "path": request.url.path,
            "method": request.method,
        },
    )
    headers = {"WWW-Authenticate": 'Bearer realm="slidestore"'} if status == 401 else None
    if isinstance(exc, e.Busy):
        headers = {"Retry-After": str(math.ceil(exc.retry_after))}
    return error_response(status, exc.code, str(exc), headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


EXCEPTION_HANDLERS = {
    e.SlidestoreError: slidestore_error_handler,
    HTTPException: http_error_handler,
}
