"""Responses for content-addressed data: strong ETags, immutable caching, 304s.

A blob id is the sha256 of its content and rendering is deterministic, so everything
derived from a blob can carry a strong ETag and be cached forever by browsers and CDNs.
``RENDER_VERSION`` goes into derived ETags so a change in how we render invalidates them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

RENDER_VERSION = "1"


def etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(part.strip().removeprefix("W/") == etag for part in header.split(","))


def immutable(
    request: Request,
    body: bytes,
    media_type: str,
    etag_key: str,
    *,
    max_age: int,
    headers: dict[str, str] | None = None,
    shared: bool = True,
) -> Response:
    etag = f'"{etag_key}"'
    all_headers = {
        "ETag": etag,
        "Cache-Control": f"{'public' if shared else 'private'}, max-age={max_age}, immutable",
        **(headers or {}),
    }
    if etag_matches(request, etag):
        return Response(status_code=304, headers=all_headers)
    return Response(body, media_type=media_type, headers=all_headers)
