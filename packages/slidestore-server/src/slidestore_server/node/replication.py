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

import asyncio
import contextlib
import http.client
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final
from urllib.parse import urlsplit

import anyio
import fsspec

from slidestore import tokens
from slidestore.blobs import check_blob_id
from slidestore.blobs.archive_codec import ArchiveCorrupt, Encoding, decoded, encoding_of
from slidestore.blobs.scrub import Throttle
from slidestore.cluster.wire import PURPOSE_HEADER, REPLICA_PURPOSE, Replicate, Replicated
from slidestore.errors import (
    ChecksumMismatch,
    Forbidden,
    InvalidRequest,
    SourceCorrupt,
    SourceUnavailable,
)
from slidestore.tokens import Operation
from slidestore_server.node.state import NodeState
from slidestore_server.priority import lower_thread_priority

CHUNK: Final = 1 << 20
PEER_CHUNK: Final = 4 << 20
"""Larger reads from a peer: fewer Python-level iterations per gigabyte."""
MIN_BYTES_PER_SECOND: Final = 1024.0
"""Below this a cap is a mistake, not a throttle: the copy would never finish."""
COPY_NICENESS: Final = 10
"""A copy's threads yield the CPU to tile requests: a copy takes the cores they leave
idle, and on an otherwise idle machine runs at full speed all the same."""
READ_TIMEOUT: Final = 30.0
"""Seconds a peer may stay silent (connecting or mid-copy) before the copy fails."""


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


def check_archive_source(archive_url: str, blob_id: str, configured: str | None) -> None:
    """An archive pull reads only ``{configured}/{blob_id}`` (or its zstd or JPEG XL form,
    ``{blob_id}.zst``/``.ssjx``, see ``slidestore.blobs.archive_codec``): the order comes over the
    network, and without this check it could name any file the node can read (and have
    the node serve it as a blob). :class:`Forbidden` otherwise, before anything is read."""
    if configured is None:
        raise Forbidden("this node restores from no archive (SLIDESTORE_ARCHIVE_URL is not set)")
    stored = f"{configured.rstrip('/')}/{blob_id}"
    if archive_url not in {stored + encoding.suffix for encoding in Encoding}:
        raise Forbidden(f"archive_url is not blob {blob_id} in this node's archive")


async def replicate(node: NodeState, order: Replicate) -> tuple[Replicated, bool]:
    """Pull ``order.blob_id``; returns the answer and whether bytes were copied."""
    check_order(order)
    if order.archive_url is not None:
        check_archive_source(order.archive_url, order.blob_id, node.settings.archive_url)
    store = node.blobs
    with contextlib.suppress(FileNotFoundError):
        if await anyio.to_thread.run_sync(store.size, order.blob_id) == order.size:
            # Present with the right size; the scrubber vouches for its content.
            return Replicated(
                blob_id=order.blob_id, size=order.size, copied_bytes=0, seconds=0.0
            ), False
    cancelled = threading.Event()
    try:
        done = await _in_own_thread(lambda: _pull(node, order, cancelled))
    finally:
        cancelled.set()  # a cancelled request: the thread stops at its next chunk
    return done, True


async def _in_own_thread(work: Callable[[], Replicated]) -> Replicated:
    """Run ``work`` on a thread of its own (not the shared pool: it lowers its priority)."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[Replicated] = loop.create_future()

    def settle(value: Replicated | None, error: BaseException | None) -> None:
        if result.done():
            return  # the request was cancelled meanwhile
        if error is not None:
            result.set_exception(error)
        else:
            assert value is not None
            result.set_result(value)

    def run() -> None:
        try:
            value = work()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=run, name="replica-copy", daemon=True).start()
    return await result


def _pull(node: NodeState, order: Replicate, cancelled: threading.Event) -> Replicated:
    lower_thread_priority(COPY_NICENESS)
    started = time.monotonic()
    # Past the page cache: a replica is not read again soon, and its bytes would push out
    # the tiles this node serves (and cost the CPU a copy each, see blobs/direct.py).
    writer = node.blobs.writer(order.size, direct=True)
    try:
        throttle = Throttle(order.bytes_per_second)
        received = 0
        with _open_source(node, order) as chunks, _Pipe(writer.write) as pipe:
            for chunk in chunks:
                if cancelled.is_set():
                    raise SourceUnavailable(f"copy of blob {order.blob_id} was cancelled")
                received += len(chunk)
                if received > order.size:
                    raise SourceCorrupt(
                        f"source sent more than the {order.size} bytes of blob {order.blob_id}"
                    )
                pipe.put(chunk)
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


class _Pipe:
    """Hands chunks to ``consume`` on a second thread: receiving the next chunk from the
    network overlaps hashing and writing the last one (all release the GIL), where one
    thread doing both in turn runs at the slower one's pace plus the other's.

    Leaving the ``with`` block waits until every chunk is consumed and re-raises the
    consumer's error, if any.
    """

    DEPTH: Final = 4

    def __init__(self, consume: Callable[[bytes | memoryview], None]) -> None:
        self._consume = consume
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(self.DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replica-writer", daemon=True)

    def _run(self) -> None:
        lower_thread_priority(COPY_NICENESS)
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._consume(chunk)
                except BaseException as exc:  # reported to the producer; keep draining
                    self._error = exc

    def put(self, chunk: bytes | memoryview) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def __enter__(self) -> _Pipe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error


@contextlib.contextmanager
def _open_source(node: NodeState, order: Replicate) -> Iterator[Iterator[bytes | memoryview]]:
    if order.source_url is not None:
        with _from_peer(node, order.source_url, order.blob_id, order.size) as chunks:
            yield chunks
    else:
        assert order.archive_url is not None
        with _from_archive(order.archive_url, order.blob_id) as chunks:
            yield chunks


@contextlib.contextmanager
def _from_peer(
    node: NodeState, source_url: str, blob_id: str, size: int
) -> Iterator[Iterator[bytes | memoryview]]:
    """The peer's bytes, read by the standard library's HTTP client straight into fresh
    buffers (``readinto``: no per-chunk parsing or copying in Python)."""
    url = f"{source_url.rstrip('/')}/blobs/{blob_id}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"source_url {source_url[:80]!r} is not an http(s) URL")
    # Download on this one blob, for a minute: whatever answers at source_url learns nothing
    # it could use on another blob or operation.
    token = tokens.mint(
        node.settings.secret,
        ops={Operation.DOWNLOAD},
        blob=blob_id,
        ttl=60,
        subject=node.node_id,
    )
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=READ_TIMEOUT)
    try:
        headers = {"Authorization": f"Bearer {token}", PURPOSE_HEADER: REPLICA_PURPOSE}
        connection.request("GET", parts.path, headers=headers)
        answer = connection.getresponse()
        if answer.status != 200:
            raise SourceUnavailable(f"{url} answered {answer.status}")
        declared = answer.getheader("content-length")
        if declared is not None and declared.isdigit() and int(declared) != size:
            raise SourceCorrupt(f"{url} holds {declared} bytes, expected {size}")

        def chunks() -> Iterator[memoryview]:
            while True:
                buffer = bytearray(PEER_CHUNK)  # fresh: the writer thread may still hold the last
                count = answer.readinto(buffer)
                if not count:
                    return
                yield memoryview(buffer)[:count]

        yield chunks()
    except (OSError, http.client.HTTPException) as exc:  # also a connection lost mid-stream
        raise SourceUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
    finally:
        connection.close()


def _archive_failed(blob_id: str, exc: OSError) -> SourceUnavailable:
    """Named by the blob, not the archive's path (which an OSError's text includes)."""
    reason = exc.strerror or type(exc).__name__
    return SourceUnavailable(f"the archived copy of blob {blob_id} cannot be read: {reason}")


@contextlib.contextmanager
def _from_archive(archive_url: str, blob_id: str) -> Iterator[Iterator[bytes]]:
    try:
        opened = fsspec.open(archive_url, "rb").open()
    except (ValueError, ImportError) as exc:  # unknown protocol, or its driver missing
        raise InvalidRequest(f"the archive of this node is not usable: {exc}") from None
    except OSError as exc:
        raise _archive_failed(blob_id, exc) from None
    try:
        # Decoded as it streams (zstd, JPEG XL: bounded memory); the sha256 check after
        # the pull is what proves the bytes are the blob's.
        yield decoded(opened, encoding_of(archive_url))
    except OSError as exc:
        raise _archive_failed(blob_id, exc) from None
    except ArchiveCorrupt as exc:
        raise SourceCorrupt(f"the archived copy of blob {blob_id} does not decode: {exc}") from None
    finally:
        opened.close()
