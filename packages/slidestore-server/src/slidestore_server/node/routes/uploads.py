"""Resumable uploads over tus 1.0 (core, creation, creation-with-upload, checksum,
termination, expiration, concatenation) at ``/uploads``.

The bytes stream from the socket to the upload's data file in batches of at most 1 MiB
(never a whole body in memory). An acknowledged ``Upload-Offset`` is always durable:
the bytes are fsynced before the offset that vouches for them is persisted
(see :mod:`slidestore.uploads`).

Slidestore specifics:

- The whole file's sha256 may be declared in ``Upload-Metadata`` under the key
  ``sha256``; its value (base64, as every tus metadata value) is either the 64 hex digits
  (what tus clients send for a text value) or the 32-byte raw digest. It is checked at
  completion (460 on mismatch, nothing kept).
- On completion the file must open as a slide (422 with OpenSlide's reason otherwise,
  nothing kept). The completing ``PATCH``, and every ``HEAD`` after it, carry the blob id
  in ``Slidestore-Blob-Id``.
- Every request except ``OPTIONS`` needs a token granting ``upload`` or ``write``. An
  ``upload`` grant (what placements hand out) creates only an upload of the size, and of
  the sha256 when it names one, that it was minted for, and only one: a second ``POST``
  with it is 403 ``grant_used`` (also after a restart).
- An upload belongs to the token that created it: ``HEAD``, ``PATCH`` and ``DELETE``
  need a token with the same nonce (the same token, or a renewal of it: same nonce,
  later expiry) or ``admin``; for any other token the upload does not exist (404).
- ``Upload-Metadata`` is at most :data:`MAX_METADATA_CHARS` characters (400 beyond).
- One token (its nonce) holds at most ``upload_max_sessions_per_token`` open sessions,
  and when it names a size, no more bytes in them together than that size (429
  ``upload_quota``).
- An upload that has received no byte expires after ``upload_idle_expiry_seconds``;
  one that has, ``upload_expiry_seconds`` after its last byte.
- Concatenation: a large file goes up as several ``Upload-Concat: partial`` uploads in
  parallel, then ``POST`` with ``Upload-Concat: final;<url> <url> ...`` (no
  ``Upload-Length``) joins them, in order, and completes like any upload (sha256,
  validation, ``Slidestore-Blob-Id``) in that request; asking again resumes a final
  that was cut off. An ``upload`` grant's partial uploads may together hold at most its
  size; the final must have its size and content, uses the grant, and after it the
  grant makes no more parts.
- A body that sends no byte for ``upload_read_idle_seconds`` ends the request (408
  ``body_read_timeout``): the bytes that arrived are kept (without a chunk checksum)
  and the upload is unlocked, so a resume does not meet 423.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Final

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from slidestore.errors import InvalidRequest, SlidestoreError, UploadConflict, UploadTooLarge
from slidestore.tokens import Capability, Operation
from slidestore.uploads import CHUNK_ALGORITHMS, ChunkChecksum, UploadInfo, normalize_sha256
from slidestore.uploads.concat import parse_final
from slidestore_server.auth import check_partial_grant, check_upload_grant, require_upload
from slidestore_server.errors import error_response, slidestore_error_handler
from slidestore_server.node.state import NodeState

TUS_VERSION: Final = "1.0.0"
TUS_EXTENSIONS: Final = (
    "creation,creation-with-upload,checksum,termination,expiration,concatenation"
)
OFFSET_CONTENT_TYPE: Final = "application/offset+octet-stream"
BLOB_ID_HEADER: Final = "Slidestore-Blob-Id"
log = logging.getLogger("slidestore.uploads")
SHA256_METADATA_KEY: Final = "sha256"
MAX_METADATA_CHARS: Final = 4096
"""The whole ``Upload-Metadata`` header: a file name and a digest need a few hundred."""
_BATCH: Final = 1 << 20
_DIGITS: Final = re.compile(r"[0-9]{1,20}")

Handler = Callable[[Request, NodeState], Awaitable[Response]]


def _tus(
    handler: Handler, *, check_version: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    """Protocol plumbing every tus endpoint shares: the version check (412), errors as
    JSON bodies, and ``Tus-Resumable`` on every response, errors included."""

    async def endpoint(request: Request) -> Response:
        version = request.headers.get("tus-resumable")
        if check_version and version != TUS_VERSION:
            response = error_response(
                412,
                "unsupported_tus_version",
                f"this server speaks tus {TUS_VERSION}; the request says Tus-Resumable: {version!r}",
                headers={"Tus-Version": TUS_VERSION},
            )
        else:
            try:
                response = await handler(request, request.app.state.node)
            except SlidestoreError as exc:
                response = await slidestore_error_handler(request, exc)
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    return endpoint


# -- header parsing -------------------------------------------------------------------


def _int_header(request: Request, name: str) -> int:
    value = request.headers.get(name)
    if value is None:
        raise InvalidRequest(f"the {name} header is required")
    if not _DIGITS.fullmatch(value.strip()):
        raise InvalidRequest(f"{name} must be a non-negative integer, got {value[:40]!r}")
    return int(value)


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{what} is not valid base64") from None


def parse_metadata(header: str | None) -> dict[str, bytes]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (value optional)."""
    metadata: dict[str, bytes] = {}
    if not header or not header.strip():
        return metadata
    if len(header) > MAX_METADATA_CHARS:
        raise InvalidRequest(
            f"Upload-Metadata is {len(header)} characters; at most {MAX_METADATA_CHARS} are kept"
        )
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2:
            raise InvalidRequest(f"malformed Upload-Metadata pair {pair.strip()[:60]!r}")
        if key in metadata:
            raise InvalidRequest(f"Upload-Metadata repeats the key {key!r}")
        metadata[key] = (
            _b64(parts[1], f"the Upload-Metadata value of {key!r}") if len(parts) == 2 else b""
        )
    return metadata


def encode_metadata(metadata: dict[str, bytes]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value).decode('ascii')}" if value else key
        for key, value in metadata.items()
    )


def parse_checksum(header: str | None) -> ChunkChecksum | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``; unsupported algorithm → 400."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if not encoded:
        raise InvalidRequest("Upload-Checksum must be '<algorithm> <base64 digest>'")
    return ChunkChecksum(algorithm.lower(), _b64(encoded.strip(), "the Upload-Checksum digest"))


def _upload_headers(info: UploadInfo, request: Request | None = None) -> dict[str, str]:
    headers = {
        "Upload-Offset": str(info.offset),
        "Upload-Length": str(info.length),
        "Cache-Control": "no-store",
    }
    if info.partial:
        headers["Upload-Concat"] = "partial"
    elif info.concat is not None and request is not None:
        urls = " ".join(_location(request, part) for part in info.parts)
        headers["Upload-Concat"] = f"final;{urls}"
    if info.complete:
        assert info.blob_id is not None
        headers[BLOB_ID_HEADER] = info.blob_id
    elif not (info.partial and info.offset == info.length):
        headers["Upload-Expires"] = formatdate(info.expires_at, usegmt=True)
    return headers


def _owner(cap: Capability) -> str | None:
    """Whose uploads a token may see and write: its nonce's; ``admin``: every upload."""
    return None if cap.allows(Operation.ADMIN) else cap.nonce


def _location(request: Request, upload_id: str) -> str:
    return str(request.url_for("tus_upload", upload_id=upload_id))


# -- receiving bytes ------------------------------------------------------------------


class BodyIdle(Exception):
    """No byte of the request body arrived for ``upload_read_idle_seconds``."""


async def _idle_bounded(chunks: AsyncIterator[bytes], idle: float) -> AsyncIterator[bytes]:
    """The body's chunks, ending in :class:`BodyIdle` when none arrives for ``idle`` s.

    A client whose network died without closing the connection sends neither bytes nor a
    disconnect: without this the request, and the upload's lock with it, would wait for
    the operating system to give up on the socket (many minutes)."""
    iterator = aiter(chunks)
    while True:
        try:
            with anyio.fail_after(idle):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyIdle(f"no body byte arrived for {idle:g} s") from None
        yield chunk


async def _receive(
    request: Request,
    node: NodeState,
    upload_id: str,
    offset: int,
    checksum: ChunkChecksum | None,
    owner: str | None,
) -> UploadInfo:
    """Stream the request body into the upload; returns its state after the chunk.

    File writes and fsyncs run in worker threads. If the client goes away midway (or goes
    silent: :class:`BodyIdle`), every byte that arrived is kept and made durable — unless
    a chunk checksum can no longer be verified — and the exception propagates.
    """
    appender = await run_in_threadpool(node.uploads.open_append, upload_id, offset, checksum, owner)
    batch = bytearray()
    try:
        declared = request.headers.get("content-length")
        if declared is not None and _DIGITS.fullmatch(declared.strip()):
            length = appender.info.length
            if offset + int(declared) > length:
                # Refused before reading a byte of the body.
                raise UploadTooLarge(
                    f"upload {upload_id} declared {length} bytes; a {declared}-byte chunk "
                    f"at offset {offset} would go past it"
                )
        idle = node.settings.upload_read_idle_seconds
        async for chunk in _idle_bounded(request.stream(), idle):
            batch += chunk
            if len(batch) >= _BATCH:
                await run_in_threadpool(appender.write, batch)
                batch = bytearray()
        if batch:
            await run_in_threadpool(appender.write, batch)
            batch = bytearray()
        return await run_in_threadpool(appender.commit)
    finally:
        if not appender.closed:
            # Keep what arrived, the batch not yet written included, even when this task
            # is being cancelled; abort fsyncs it before recording the new offset.
            with anyio.CancelScope(shield=True):
                if batch:
                    with contextlib.suppress(SlidestoreError):  # it closed the appender
                        await run_in_threadpool(appender.write, batch)
                await run_in_threadpool(appender.abort)


def _disconnected() -> Response:
    # Nobody will read this; answering keeps Starlette from logging a 500.
    return error_response(400, "client_disconnected", "the client closed the connection mid-body")


def _body_idle(exc: BodyIdle) -> Response:
    return error_response(
        408,
        "body_read_timeout",
        f"{exc}; the bytes received are kept: ask HEAD for the offset and resume",
        headers={"Connection": "close"},
    )


def _arrived(node: NodeState, info: UploadInfo) -> None:
    """A request completed the upload: the node learns of its new blob (replication,
    prerendering) and the log says so."""
    if not info.complete:
        return
    node.blob_arrived()
    log.info(
        "upload complete",
        extra={"upload_id": info.id, "blob_id": info.blob_id, "bytes": info.length},
    )


# -- endpoints ------------------------------------------------------------------------


async def options(request: Request, node: NodeState) -> Response:
    return Response(
        status_code=204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(node.settings.max_upload_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHUNK_ALGORITHMS),
        },
    )


def _concat_kind(request: Request) -> str | None:
    header = request.headers.get("upload-concat")
    if header is None:
        return None
    kind = header.split(";", 1)[0].strip().lower()
    if kind not in ("partial", "final"):
        raise InvalidRequest(
            f"Upload-Concat must be 'partial' or 'final;<urls>', got {header[:60]!r}"
        )
    return kind


def _declared_sha256(metadata: dict[str, bytes]) -> str | None:
    declared = metadata.get(SHA256_METADATA_KEY)
    return normalize_sha256(declared) if declared is not None else None


async def create_final(request: Request, node: NodeState, cap: Capability) -> Response:
    """Join complete partial uploads into the final upload and complete it."""
    if "upload-length" in request.headers:
        raise InvalidRequest("a final upload has no Upload-Length: its parts make its length")
    try:
        parts = parse_final(request.headers["upload-concat"])
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    metadata = parse_metadata(request.headers.get("upload-metadata"))
    sha256 = _declared_sha256(metadata)
    lengths = await run_in_threadpool(node.uploads.part_lengths, parts, cap.nonce)
    check_upload_grant(cap, sum(lengths), sha256)
    info = await run_in_threadpool(
        functools.partial(
            node.uploads.concatenate,
            parts,
            metadata,
            sha256,
            owner=cap.nonce,
            single_use_until=cap.exp if cap.is_upload_grant else None,
        )
    )
    _arrived(node, info)
    headers = _upload_headers(info, request)
    headers["Location"] = _location(request, info.id)
    return Response(status_code=201, headers=headers)


async def create(request: Request, node: NodeState) -> Response:
    cap = require_upload(request)
    kind = _concat_kind(request)
    if kind == "final":
        return await create_final(request, node, cap)
    if "upload-defer-length" in request.headers:
        raise InvalidRequest("Upload-Defer-Length is not supported: declare Upload-Length")
    length = _int_header(request, "upload-length")
    metadata = parse_metadata(request.headers.get("upload-metadata"))
    sha256 = _declared_sha256(metadata)
    partial = kind == "partial"
    if partial:
        check_partial_grant(cap, length)
    else:
        check_upload_grant(cap, length, sha256)
    with_body = (
        request.headers.get("content-type", "").split(";")[0].strip().lower() == OFFSET_CONTENT_TYPE
    )
    checksum = parse_checksum(request.headers.get("upload-checksum")) if with_body else None
    await run_in_threadpool(node.uploads.maybe_expire)
    info = await run_in_threadpool(
        functools.partial(
            node.uploads.create,
            length,
            metadata,
            sha256,
            owner=cap.nonce,
            single_use_until=cap.exp if cap.is_upload_grant else None,
            owner_bytes=cap.size,
            partial=partial,
        )
    )
    location = _location(request, info.id)
    if with_body and not info.complete:
        try:
            info = await _receive(request, node, info.id, 0, checksum, cap.nonce)
        except ClientDisconnect:
            return _disconnected()
        except BodyIdle as exc:
            response = _body_idle(exc)
            response.headers["Location"] = location
            return response
        except SlidestoreError as exc:
            # The upload exists (unless completing it failed): tell the client where.
            response = await slidestore_error_handler(request, exc)
            response.headers["Location"] = location
            return response
    _arrived(node, info)
    headers = _upload_headers(info, request)
    headers["Location"] = location
    return Response(status_code=201, headers=headers)


async def head(request: Request, node: NodeState) -> Response:
    owner = _owner(require_upload(request))
    upload_id = str(request.path_params["upload_id"])
    info = await run_in_threadpool(node.uploads.info, upload_id, owner)
    if info.offset == info.length and not info.complete and not info.partial:
        # The completing PATCH was cut off after its bytes were durable: complete now.
        # (UploadConflict: the completing request is still running; report what is durable.)
        with contextlib.suppress(UploadConflict):
            info = await run_in_threadpool(node.uploads.finish, upload_id, owner)
            _arrived(node, info)
    headers = _upload_headers(info, request)
    if info.metadata:
        headers["Upload-Metadata"] = encode_metadata(info.metadata)
    return Response(status_code=200, headers=headers)


async def patch(request: Request, node: NodeState) -> Response:
    owner = _owner(require_upload(request))
    upload_id = str(request.path_params["upload_id"])
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != OFFSET_CONTENT_TYPE:
        return error_response(
            415,
            "unsupported_media_type",
            f"a PATCH body must be sent as Content-Type: {OFFSET_CONTENT_TYPE}",
        )
    offset = _int_header(request, "upload-offset")
    checksum = parse_checksum(request.headers.get("upload-checksum"))
    try:
        info = await _receive(request, node, upload_id, offset, checksum, owner)
    except ClientDisconnect:
        log.info("upload interrupted", extra={"upload_id": upload_id})
        return _disconnected()
    except BodyIdle as exc:
        log.info("upload body went silent", extra={"upload_id": upload_id})
        return _body_idle(exc)
    _arrived(node, info)
    return Response(status_code=204, headers=_upload_headers(info, request))


async def terminate(request: Request, node: NodeState) -> Response:
    owner = _owner(require_upload(request))
    upload_id = str(request.path_params["upload_id"])
    await run_in_threadpool(node.uploads.terminate, upload_id, owner)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    async def collection(request: Request) -> Response:
        if request.method == "OPTIONS":
            return await _tus(options, check_version=False)(request)
        return await _tus(create)(request)

    async def upload(request: Request) -> Response:
        method = request.method
        if method == "OPTIONS":
            return await _tus(options, check_version=False)(request)
        handler = {"HEAD": head, "PATCH": patch, "DELETE": terminate}[method]
        return await _tus(handler)(request)

    return [
        Route("/uploads", collection, methods=["OPTIONS", "POST"], name="tus_uploads"),
        Route(
            "/uploads/{upload_id}",
            upload,
            methods=["OPTIONS", "HEAD", "PATCH", "DELETE"],
            name="tus_upload",
        ),
    ]
