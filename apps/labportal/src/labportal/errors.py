"""RFC 9457 problem details: the portal's error types and the handlers that render them."""

from __future__ import annotations

import logging
from typing import Any

from advanced_alchemy.exceptions import (
    DuplicateKeyError,
    ForeignKeyError,
    IntegrityError,
    NotFoundError,
)
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("labportal.errors")

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """An error with an HTTP status, a stable ``code`` and a human ``detail``."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(Problem):
    status, code = 401, "unauthorized"


class Forbidden(Problem):
    status, code = 403, "forbidden"


class NotFound(Problem):
    status, code = 404, "not_found"


class Conflict(Problem):
    status, code = 409, "conflict"


class Gone(Problem):
    status, code = 410, "gone"


class Unprocessable(Problem):
    status, code = 422, "invalid"


class TooManyRequests(Problem):
    status, code = 429, "rate_limited"


class ServiceUnavailable(Problem):
    status, code = 503, "unavailable"


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        **extra,
    }
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def handle_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    return problem_response(request, exc.status, exc.code, exc.detail, exc.headers, **exc.extra)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        return handle_unexpected(request, exc)
    extra: dict[str, Any] = {}
    code = TITLES.get(status, "error").lower().replace(" ", "_")
    detail = exc.detail
    if isinstance(exc, ValidationException):
        code = "validation_failed"
        errors = exc.extra if isinstance(exc.extra, list) else []
        extra["errors"] = [
            {k: v for k, v in e.items() if k in {"message", "key", "source"}}
            for e in errors
            if isinstance(e, dict)
        ]
        if extra["errors"]:
            detail = "; ".join(
                f"{e.get('key') or e.get('source', 'body')}: {e.get('message')}"
                for e in extra["errors"]
            )
    headers = dict(exc.headers or {})
    return problem_response(request, status, code, detail, headers, **extra)


def handle_not_found(request: Request[Any, Any, Any], exc: NotFoundError) -> Response[Any]:
    return problem_response(request, 404, "not_found", "no such resource")


def handle_integrity(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[Any]:
    if isinstance(exc, ForeignKeyError):
        return problem_response(
            request, 422, "invalid_reference", "a referenced record does not exist"
        )
    if isinstance(exc, DuplicateKeyError):
        return problem_response(
            request, 409, "duplicate", "a record with these values already exists"
        )
    return problem_response(request, 409, "conflict", "the change conflicts with existing data")


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request, HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", "an unexpected error occurred"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    NotFoundError: handle_not_found,
    IntegrityError: handle_integrity,
    Exception: handle_unexpected,
}
