"""Pulling a replica: stream a blob from a peer node or the archive into the local store.

The copy runs in one worker thread with a blocking HTTP client: receiving, hashing and
writing all release the GIL there, where an async client's pure-Python HTTP parsing
and a thread hop per chunk made copies 2x slower. The bytes go through a
:class:`~slidestore.blobs.BlobWriter`, hashed as they pass; the copy becomes visible only if it is exactly ``size`` bytes hashing to the
blob id, so a corrupt or truncated source leaves nothing behind. The writer reserves
``size`` bytes before the first one is fetched (507 when they do not fit), and the
optional bandwidth cap sleeps in the copy's thread. If the request is cancelled the
thread stops at its next chunk and drops what it wrote.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Final

import anyio
import fsspec
import httpx

from slidestore import tokens
from slidestore.blobs import check_blob_id
from slidestore.blobs.scrub import Throttle
from slidestore.cluster.wire import Replicate, Replicated
from slidestore.errors import (
    ChecksumMismatch,
    InvalidRequest,
    SourceCorrupt,
    SourceUnavailable,
)
from slidestore.tokens import Operation
from slidestore_server.node.state import NodeState

CHUNK: Final = 1 << 20
PEER_CHUNK: Final = 4 << 20
"""Larger reads from a peer: fewer Python-level iterations per gigabyte."""
MIN_BYTES_PER_SECOND: Final = 1024.0
"""Below this a cap is a mistake, not a throttle: the copy would never finish."""
TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)


def check_order(order: Replicate) -> None:
    """Refuse what can never work, before reserving space or touching the network."""
    check_blob_id(order.blob_id)
    if order.size < 0:
        raise InvalidRequest(f"size must be >= 0, got {order.size}")
    if (order.source_url is None) == (order.archive_url is None):
        raise InvalidRequest("name exactly one source: source_url or archive_url")
    if order.source_url is not None and not order.source_url.startswith(("http://", "https://")):
        raise InvalidRequest(f"source_url must be an http(s) URL, got {order.source_url[:80]!r}")
    if order.archive_url is not None and "://" not in order.archive_url:
        raise InvalidRequest(
            f"archive_url must be an fsspec URL with a protocol (file://, s3://, …), "
            f"got {order.archive_url[:80]!r}"
        )
    if order.bytes_per_second is not None and not (order.bytes_per_second >= MIN_BYTES_PER_SECOND):
        raise InvalidRequest(
            f"bytes_per_second must be at least {MIN_BYTES_PER_SECOND:.0f} (or null), "
            f"got {order.bytes_per_second}"
        )


async def replicate(node: NodeState, order: Replicate) -> tuple[Replicated, bool]:
    """Pull ``order.blob_id``; returns the answer and whether bytes were copied."""
    check_order(order)
    store = node.blobs
    with contextlib.suppress(FileNotFoundError):
        if await anyio.to_thread.run_sync(store.size, order.blob_id) == order.size:
            # Present with the right size; the scrubber vouches for its content.
            return Replicated(
                blob_id=order.blob_id, size=order.size, copied_bytes=0, seconds=0.0
            ), False
    cancelled = threading.Event()
    try:
        done = await anyio.to_thread.run_sync(_pull, node, order, cancelled, abandon_on_cancel=True)
    finally:
        cancelled.set()  # a cancelled request: the thread stops at its next chunk
    return done, True


def _pull(node: NodeState, order: Replicate, cancelled: threading.Event) -> Replicated:
    started = time.monotonic()
    writer = node.blobs.writer(order.size)
    try:
        throttle = Throttle(order.bytes_per_second)
        with _open_source(node, order) as chunks:
            for chunk in chunks:
                if cancelled.is_set():
                    raise SourceUnavailable(f"copy of blob {order.blob_id} was cancelled")
                if writer.written + len(chunk) > order.size:
                    raise SourceCorrupt(
                        f"source sent more than the {order.size} bytes of blob {order.blob_id}"
                    )
                writer.write(chunk)
                throttle.account(len(chunk))
        if writer.written != order.size:
            raise SourceCorrupt(
                f"source sent {writer.written} bytes of blob {order.blob_id}, expected {order.size}"
            )
        try:
            writer.commit(order.blob_id)
        except ChecksumMismatch as exc:
            raise SourceCorrupt(f"copy of blob {order.blob_id} from its source: {exc}") from None
    finally:
        writer.abort()  # a no-op after commit; otherwise drops the temp file and reservation
    return Replicated(
        blob_id=order.blob_id,
        size=order.size,
        copied_bytes=order.size,
        seconds=time.monotonic() - started,
    )


@contextlib.contextmanager
def _open_source(node: NodeState, order: Replicate) -> Iterator[Iterator[bytes]]:
    if order.source_url is not None:
        with _from_peer(node, order.source_url, order.blob_id, order.size) as chunks:
            yield chunks
    else:
        assert order.archive_url is not None
        with _from_archive(order.archive_url) as chunks:
            yield chunks


@contextlib.contextmanager
def _from_peer(
    node: NodeState, source_url: str, blob_id: str, size: int
) -> Iterator[Iterator[bytes]]:
    url = f"{source_url.rstrip('/')}/blobs/{blob_id}"
    token = tokens.mint(node.settings.secret, ops={Operation.ADMIN}, ttl=60, subject=node.node_id)
    try:
        with (
            httpx.Client(timeout=TIMEOUT) as client,
            client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as answer,
        ):
            if answer.status_code != 200:
                raise SourceUnavailable(f"{url} answered {answer.status_code}")
            declared = answer.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) != size:
                raise SourceCorrupt(f"{url} holds {declared} bytes, expected {size}")
            yield answer.iter_raw(PEER_CHUNK)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise InvalidRequest(f"source_url {source_url[:80]!r} is not usable: {exc}") from None
    except httpx.HTTPError as exc:  # also a connection lost mid-stream
        raise SourceUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None


@contextlib.contextmanager
def _from_archive(archive_url: str) -> Iterator[Iterator[bytes]]:
    try:
        opened = fsspec.open(archive_url, "rb").open()
    except (ValueError, ImportError) as exc:  # unknown protocol, or its driver missing
        raise InvalidRequest(f"archive_url {archive_url[:80]!r} is not usable: {exc}") from None
    except OSError as exc:
        raise SourceUnavailable(f"{archive_url}: {type(exc).__name__}: {exc}") from None
    try:
        yield iter(lambda: opened.read(CHUNK), b"")
    except OSError as exc:
        raise SourceUnavailable(f"{archive_url}: {type(exc).__name__}: {exc}") from None
    finally:
        opened.close()
