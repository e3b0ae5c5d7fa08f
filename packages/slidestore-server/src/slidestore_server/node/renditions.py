"""Prerendering every slide's Deep Zoom tiles in the background, once per blob.

A blob's rendition lives in ``<data>/renditions/<blob_id>/<key>/`` (see
``slidestore.protocols.deepzoom.prerender``). One worker process of the node does the
work — the one holding ``renditions/.lock`` — in one thread at a lower CPU priority, so
tile requests keep the cores when both want them. It wakes when an upload commits in its
own process and rescans the blob store every ``RESCAN_SECONDS`` for blobs that arrived
through other workers or replication. Until a rendition is complete, tiles it does not
hold yet are rendered on demand, with the same bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Final

from slidestore import open_slide
from slidestore.blobs import BlobStore
from slidestore.errors import SlidestoreError
from slidestore.protocols.deepzoom import DeepZoom, Rendition, Stopped, prerender
from slidestore.protocols.deepzoom.prerender import is_complete, read_manifest
from slidestore.pyramid import PyramidOptions, open_pyramid

log = logging.getLogger("slidestore.renditions")

RESCAN_SECONDS: Final = 5.0
NICENESS: Final = 10
UNSUPPORTED: Final = "unsupported"
"""Marker file: the blob is not a slide we can render (it is never retried)."""
SOURCE_CACHE_BYTES: Final = 32 << 20
"""Decoded source tiles kept while rendering: a strip of tiles and its halo."""


class Prerenderer:
    def __init__(self, blobs: BlobStore, root: Path, *, threads: int = 1, enabled: bool = True):
        self.blobs = blobs
        self.root = root
        self.threads = max(1, threads)
        self.enabled = enabled
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self.current: str | None = None

    def directory(self, blob_id: str, key: str) -> Path:
        return self.root / blob_id / key

    def status(self, blob_id: str, key: str) -> dict[str, object]:
        directory = self.directory(blob_id, key)
        manifest: Rendition | None = read_manifest(directory)
        if manifest is not None:
            state = "complete"
        elif (self.root / blob_id / UNSUPPORTED).exists():
            state = "unsupported"
        elif not self.enabled:
            state = "disabled"
        else:
            state = "rendering" if self.current == blob_id else "pending"
        body: dict[str, object] = {"key": key, "state": state}
        if manifest is not None:
            body.update(tiles=manifest.tiles, bytes=manifest.bytes, seconds=manifest.seconds)
        return body

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> bool:
        """Start the background thread unless another worker of this node already runs it."""
        if not self.enabled:
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self._thread = threading.Thread(target=self._run, name="prerender", daemon=True)
        self._thread.start()
        return True

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def forget(self, blob_id: str) -> None:
        """Drop a deleted blob's renditions."""
        shutil.rmtree(self.root / blob_id, ignore_errors=True)

    # -- the work ----------------------------------------------------------------------

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # lower priority for this thread and its pool
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._pass()
            except Exception:  # a bug must not end prerendering for every later blob
                log.exception("prerendering pass failed")
            self._wake.wait(RESCAN_SECONDS)

    def _pass(self) -> None:
        held = set(self.blobs.ids())
        for stale in self.root.iterdir() if self.root.is_dir() else ():
            if stale.is_dir() and stale.name not in held:
                shutil.rmtree(stale, ignore_errors=True)
        for blob_id in sorted(held):
            if self._stop.is_set():
                return
            self._render(blob_id)

    def _render(self, blob_id: str) -> None:
        base = self.root / blob_id
        if (base / UNSUPPORTED).exists():
            return
        try:
            slide = open_slide(self.blobs.path(blob_id))
        except SlidestoreError as exc:
            base.mkdir(parents=True, exist_ok=True)
            (base / UNSUPPORTED).write_text(f"{type(exc).__name__}: {exc}\n")
            return
        with slide:
            pyramid = open_pyramid(slide, PyramidOptions(cache_bytes=SOURCE_CACHE_BYTES))
            deepzoom = DeepZoom(pyramid)
            directory = base / deepzoom.rendition_key
            if is_complete(directory):
                return
            self.current = blob_id
            started = time.monotonic()
            try:
                rendition = prerender(deepzoom, directory, threads=self.threads, stop=self._stop)
            except Stopped:
                return
            except SlidestoreError as exc:  # undecodable pixels: serve what can be served
                log.warning("cannot prerender %s: %s", blob_id, exc)
                (base / UNSUPPORTED).write_text(f"{type(exc).__name__}: {exc}\n")
                return
            finally:
                self.current = None
        log.info(
            "prerendered",
            extra={
                "blob_id": blob_id,
                "tiles": rendition.tiles,
                "bytes": rendition.bytes,
                "seconds": round(time.monotonic() - started, 2),
            },
        )
