"""Library exceptions as HTTP answers: the JSON error body, and the status each class
declares (the one table is :mod:`slidestore.errors`; this module only reads it).

Every error leaves the server as ``{"error": code, "detail": text}``.

A detail never names a file under a node's data directory: such a path (an OpenSlide
message about a blob file, an OSError's) is replaced by the blob or upload it belongs
to, so an error tells a client nothing about the server's disk.
"""

from __future__ import annotations

import logging
import math
import re
from http import HTTPStatus
from pathlib import Path
from typing import Final

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from slidestore import errors as e
from slidestore.blobs import is_blob_id
from slidestore.error_codes import codes_by_status, error_classes, status_of

STATUS: Final[dict[type[BaseException], int]] = {k: k.status for k in error_classes()}
"""Every library error class and its status: a view of the one table in
:mod:`slidestore.errors` (each class declares its status; subclasses inherit it)."""

EXTRA_CODES: Final[dict[int, tuple[str, ...]]] = {
    400: ("client_disconnected",),
    404: ("not_found",),
    405: ("method_not_allowed",),
    408: ("body_read_timeout",),
    412: ("unsupported_tus_version",),
    415: ("unsupported_media_type",),
}
"""Codes of the HTTP and tus layers, not of an error class: no such route or method, a
tus version or PATCH content type the node does not speak, a body cut off mid-way."""

_PHRASES: Final[dict[int, str]] = {460: "Checksum Mismatch"}


def describe(status: int) -> str:
    """An OpenAPI response description for ``status``, generated from the status table:
    the reason phrase and every error code a server answers with it."""
    phrase = _PHRASES.get(status) or HTTPStatus(status).phrase
    codes = [*codes_by_status().get(status, ()), *EXTRA_CODES.get(status, ())]
    return f"{phrase} ({', '.join(codes)})" if codes else phrase


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
    return status_of(exc)


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
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float):
        headers = {"Retry-After": str(math.ceil(retry_after))}
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
