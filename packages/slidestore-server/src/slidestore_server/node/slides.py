"""Open slides of the blobs a node holds, kept open in a small LRU.

Opening a slide parses its TIFF structure (milliseconds to tens of ms for big files), so
handles are reused across requests. All open slides share one decoded-tile cache and one
encoded-tile cache, each bounded in bytes, so the node's tile memory stays bounded
whatever the number of slides.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from slidestore import Slide, open_slide
from slidestore.blobs.checked import CheckedFile
from slidestore.cache import LRUCache
from slidestore.imaging import RGBArray
from slidestore.protocols.deepzoom import DeepZoom
from slidestore.pyramid import Pyramid, PyramidOptions, open_pyramid
from slidestore.pyramid.pyramid import TileKey

if TYPE_CHECKING:
    from slidestore.blobs import BlobStore
    from slidestore_server.node.renditions import Prerenderer


class SlideEntry:
    def __init__(
        self,
        blob_id: str,
        slide: Slide,
        tiles: LRUCache[TileKey, RGBArray],
        encoded: LRUCache[Hashable, bytes],
        renditions: Prerenderer | None = None,
        fd: int | None = None,
    ) -> None:
        self.blob_id = blob_id
        self.slide = slide
        self.fd = fd
        """The blob file, open for checked reads of what the slide serves as is (and of
        what it renders from: the slide's ``check`` reads through it too)."""
        self._tiles = tiles
        self._encoded = encoded
        # Built here, not lazily: a cached_property is not thread-safe and these are cheap.
        self.pyramid: Pyramid = open_pyramid(
            slide, PyramidOptions(cache_bytes=tiles.max_bytes), cache=tiles
        )
        self.deepzoom: DeepZoom = DeepZoom(self.pyramid, cache=encoded)
        if renditions is not None:
            self.deepzoom.use_rendition(
                renditions.directory(blob_id, self.deepzoom.rendition_key),
                on_discard=renditions.wake,
            )

    def close(self) -> None:
        self.deepzoom.close()
        self.slide.close()
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class SlideCache:
    def __init__(
        self,
        blobs: BlobStore,
        *,
        max_open: int,
        cache_bytes: int,
        renditions: Prerenderer | None = None,
        recheck_seconds: float | None = None,
    ) -> None:
        self.blobs = blobs
        self.recheck_seconds = recheck_seconds
        """How long an open slide trusts a chunk that passed (see ``blobs/checked.py``)."""
        self.renditions = renditions
        self.max_open = max(1, max_open)
        self.cache_bytes = cache_bytes
        # Two thirds for decoded tiles (derived levels are built from them), a third for
        # encoded non-passthrough tiles (derived-level JPEGs served again and again).
        self.tiles: LRUCache[TileKey, RGBArray] = LRUCache(cache_bytes * 2 // 3)
        self.encoded: LRUCache[Hashable, bytes] = LRUCache(cache_bytes // 3)
        self._entries: OrderedDict[str, SlideEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}

    def peek(self, blob_id: str) -> SlideEntry | None:
        """The open entry without blocking I/O (safe on the event loop)."""
        with self._lock:
            entry = self._entries.get(blob_id)
            if entry is not None:
                self._entries.move_to_end(blob_id)
            return entry

    def get(self, blob_id: str) -> SlideEntry:
        """The open entry, opening the blob's slide if needed (blocking: call from a thread)."""
        entry = self.peek(blob_id)
        if entry is not None:
            return entry
        with self._lock:
            gate = self._opening.setdefault(blob_id, threading.Lock())
        with gate:
            entry = self.peek(blob_id)
            if entry is not None:
                return entry
            path = self.blobs.path(blob_id)
            # The size check on open (and sums for an old blob); None: a served folder's
            # file, which has none.
            sums = self.blobs.sums(blob_id)
            fd = os.open(path, os.O_RDONLY)
            try:
                # Everything the slide decodes or parses is checked first: a rendered tile
                # is never made of bytes that fail their checksums (the copy is then
                # quarantined, as for a passthrough tile).
                check = (
                    None
                    if sums is None
                    else CheckedFile(
                        fd, sums, self._corrupt(blob_id), recheck_seconds=self.recheck_seconds
                    )
                )
                slide = open_slide(path, check=check)
            except BaseException:
                os.close(fd)
                raise
            entry = SlideEntry(blob_id, slide, self.tiles, self.encoded, self.renditions, fd)
            evicted: list[SlideEntry] = []
            with self._lock:
                self._entries[blob_id] = entry
                while len(self._entries) > self.max_open:
                    evicted.append(self._entries.popitem(last=False)[1])
                self._opening.pop(blob_id, None)
        for old in evicted:
            old.close()
        return entry

    def _corrupt(self, blob_id: str) -> Callable[[str], Exception]:
        return lambda why: self.blobs.corrupt(blob_id, why)

    def deepzoom_counts(self) -> dict[str, float]:
        """Deep Zoom tiles by how they were answered, summed over the open slides."""
        with self._lock:
            entries = list(self._entries.values())
        totals = dict.fromkeys(("passthrough", "prerendered", "rendered", "cache_hits"), 0.0)
        for entry in entries:
            stats = entry.deepzoom.stats()
            totals["passthrough"] += stats.passthrough
            totals["prerendered"] += stats.prerendered
            totals["rendered"] += stats.rendered
            totals["cache_hits"] += stats.cache_hits
        return totals

    def cache_counts(self) -> tuple[int, int]:
        """Decoded-tile cache (hits, misses)."""
        stats = self.tiles.stats()
        return stats.hits, stats.misses

    def evict(self, blob_id: str) -> None:
        with self._lock:
            entry = self._entries.pop(blob_id, None)
        if entry is not None:
            entry.close()

    def close(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            entry.close()
