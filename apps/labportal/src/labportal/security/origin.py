"""Guards for state-changing requests a cross-site page could forge without a CSRF token.

Login and registration carry no session yet, so the X-CSRF-Token check cannot protect them:
a form on another site could post ``text/plain`` that parses as JSON and log the victim into
the attacker's account. A cross-site form cannot send ``application/json`` (that needs a
CORS preflight this portal never grants), and browsers name the page's origin in ``Origin``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from labportal.errors import Forbidden, Problem
from labportal.settings import Settings


class UnsupportedMediaType(Problem):
    status, code = 415, "unsupported_media_type"


DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _origin_of(url: str) -> str:
    """``scheme://host[:port]`` in lower case, without the scheme's default port."""
    parts = urlsplit(url.strip().lower())
    default = DEFAULT_PORTS.get(parts.scheme)
    netloc = parts.netloc.removesuffix(default) if default else parts.netloc
    return f"{parts.scheme}://{netloc}"


def own_origin(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> str:
    """The configured public origin, else the scheme and host this request came to."""
    if settings.base_url:
        return _origin_of(settings.base_url)
    return _origin_of(f"{connection.url.scheme}://{connection.headers.get('host', '')}")


def same_origin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """An ``Origin`` header, when sent, must be the portal's own (scripts send none)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return
    if _origin_of(origin) != own_origin(connection, connection.app.state.settings):
        raise Forbidden("cross-origin request refused", code="cross_origin")


def json_body(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The body must be declared ``application/json``: no simple (form-postable) types."""
    media_type = connection.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("send the body as Content-Type: application/json")


UNAUTHENTICATED_WRITE = [same_origin, json_body]
"""Guards for an endpoint that changes state without a session (login, registration)."""
