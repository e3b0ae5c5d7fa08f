"""JSON in and out with msgspec, shared by the coordinator's routes."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from slidestore.cluster.errors import DatabaseUnavailable
from slidestore.errors import InvalidRequest
from slidestore_server.coordinator.db import database_unavailable
from slidestore_server.coordinator.state import Coordinator
from slidestore_server.errors import error_response

_encoder = msgspec.json.Encoder()
log = logging.getLogger("slidestore.http")


def coordinator(request: Request) -> Coordinator:
    coord: Coordinator = request.app.state.coordinator
    return coord


async def decode[T](request: Request, type_: type[T]) -> T:
    body = await request.body()
    try:
        return msgspec.json.decode(body or b"{}", type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidRequest(f"invalid {type_.__name__}: {exc}") from exc


def json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(obj), status_code=status, media_type="application/json", headers=headers
    )


def float_param(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


async def database_error_handler(request: Request, exc: Exception) -> Response:
    """503 with Retry-After for a database that is away (clients retry 5xx), else re-raise:
    a constraint or SQL error is a bug and stays a 500 with its traceback in the log."""
    if not database_unavailable(exc):
        raise exc
    log.warning(
        "database unavailable",
        extra={"path": request.url.path, "method": request.method, "cause": str(exc)[:200]},
    )
    detail = "the coordinator's database is unavailable; retry shortly"
    unavailable = DatabaseUnavailable
    return error_response(unavailable.status, unavailable.code, detail, {"Retry-After": "1"})
