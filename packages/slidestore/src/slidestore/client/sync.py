"""The synchronous client: the async client run on an event loop thread of its own.

Every method hands its coroutine to that loop and waits for the result, so the sync and
async clients share one implementation. ``RemoteSlide.pyramid`` is a plain ``zarr.Group``
(zarr runs it on zarr's own loop; the transport keeps an HTTP client per loop).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self

import zarr

from slidestore.client.auth import TokenProvider
from slidestore.client.cluster import DEFAULT_PARTS, AsyncCluster, Wait
from slidestore.client.hashing import CHUNK_SIZE
from slidestore.client.slide import AsyncRemoteSlide, RemoteSlideInfo
from slidestore.client.store import FailoverHTTPStore
from slidestore.cluster import wire
from slidestore.imaging import RGBArray
from slidestore.metadata import SlideMetadata


class LoopThread:
    """An event loop running forever in a daemon thread; :meth:`run` waits for a coroutine."""

    def __init__(self, name: str = "slidestore-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run[T](self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("the client's event loop is closed")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # KeyboardInterrupt while waiting: stop the work too
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class RemoteSlide:
    """Synchronous face of :class:`AsyncRemoteSlide` (same attributes, blocking methods)."""

    def __init__(self, core: AsyncRemoteSlide, runner: LoopThread) -> None:
        self._core = core
        self._run = runner.run
        self._pyramid: zarr.Group | None = None

    def __repr__(self) -> str:
        return f"RemoteSlide({self.blob_id[:12]}…)"

    @property
    def blob_id(self) -> str:
        return self._core.blob_id

    @property
    def info(self) -> RemoteSlideInfo:
        return self._core.info

    @property
    def metadata(self) -> SlideMetadata:
        return self._core.metadata

    @property
    def replicas(self) -> tuple[wire.ReplicaView, ...]:
        return self._core.replicas

    @property
    def store(self) -> FailoverHTTPStore:
        return self._core.store

    @property
    def pyramid(self) -> zarr.Group:
        if self._pyramid is None:
            self._pyramid = zarr.Group(self._run(self._core.pyramid()))
        return self._pyramid

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> RGBArray:
        return self._run(self._core.read_region(location, level, size))

    def thumbnail(self, size: int = 512) -> RGBArray:
        return self._run(self._core.thumbnail(size))

    def analyze(self, model: Any, params: Any = None, **options: Any) -> Any:
        """``slidestore.analysis.run(model, self, params, **options)``: an ``AnalysisResult``
        (needs the ``analysis`` extra; Dask workers read this blob's replicas themselves)."""
        from slidestore.analysis import run

        return run(model, self, params, **options)


class Cluster:
    """Synchronous face of :class:`AsyncCluster`; a context manager, or call :meth:`close`."""

    def __init__(
        self,
        url: str | Sequence[str],
        token: str | TokenProvider | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
    ) -> None:
        self._core = AsyncCluster(url, token, timeout=timeout, retries=retries, backoff=backoff)
        self._runner = LoopThread()
        self._run = self._runner.run

    def __repr__(self) -> str:
        return f"Cluster({self._core.transport.coordinators!r})"

    def close(self) -> None:
        if not self._runner.loop.is_closed():
            self._run(self._core.aclose())
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        progress: bool = True,
        wait: Wait = "primary",
        replicas: int | None = None,
        expires_at: float | None = None,
        retries: int = 8,
        chunk_size: int = CHUNK_SIZE,
        wait_timeout: float = 600.0,
        on_offset: Callable[[int], None] | None = None,
        parts: int = DEFAULT_PARTS,
    ) -> str:
        return self._run(
            self._core.upload(
                path,
                progress=progress,
                wait=wait,
                replicas=replicas,
                expires_at=expires_at,
                retries=retries,
                chunk_size=chunk_size,
                wait_timeout=wait_timeout,
                on_offset=on_offset,
                parts=parts,
            )
        )

    def info(self, blob_id: str) -> wire.BlobView:
        return self._run(self._core.info(blob_id))

    blob = info

    def replicas(self, blob_id: str) -> list[wire.ReplicaView]:
        return self._run(self._core.replicas(blob_id))

    def delete(self, blob_id: str) -> None:
        self._run(self._core.delete(blob_id))

    def nodes(self) -> list[wire.NodeView]:
        return self._run(self._core.nodes())

    def restore(self, blob_id: str, retention: wire.Retention | None = None) -> wire.BlobView:
        return self._run(self._core.restore(blob_id, retention))

    def archive(self, blob_id: str) -> wire.BlobView:
        return self._run(self._core.archive(blob_id))

    def set_lifecycle(self, blob_id: str, archive_after_days: float | None) -> wire.BlobView:
        return self._run(self._core.set_lifecycle(blob_id, archive_after_days))

    def archived_thumbnail(self, blob_id: str) -> bytes:
        return self._run(self._core.archived_thumbnail(blob_id))

    def wait(
        self, blob_id: str, replicas: int | None = None, *, timeout: float = 600.0
    ) -> wire.BlobView:
        return self._run(self._core.wait(blob_id, replicas, timeout=timeout))

    def open(self, blob_id: str, *, replicas: list[str] | None = None) -> RemoteSlide:
        return RemoteSlide(self._run(self._core.open(blob_id, replicas=replicas)), self._runner)


def connect(
    url: str | Sequence[str],
    token: str | TokenProvider | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.25,
) -> Cluster:
    """A :class:`Cluster` (sync). ``url``: a coordinator URL or several."""
    return Cluster(url, token, timeout=timeout, retries=retries, backoff=backoff)
