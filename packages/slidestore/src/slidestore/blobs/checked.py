"""One open blob whose bytes are held to its chunk sums before anything is made of them.

A passthrough tile is checked as it is read (:meth:`BlobStore.read_checked`). A *rendered*
tile is made of bytes a decoder reads — ours (a native JPEG tile, read with ``pread``) or
a library's (OpenSlide decoding a region, an associated image, the TIFF structure it
parses when it opens the file). :class:`CheckedFile` covers both:

* :meth:`read` returns checked bytes (every call: the bytes we decode ourselves);
* :meth:`verify` checks a range a library is about to read, and remembers the chunks that
  passed (one bit a chunk), so a viewer's many overlapping renders check each chunk once;
* :meth:`verify_outside` checks, when the slide is opened, every chunk that is not wholly
  inside the tile data the reads above cover — the header, the directories, their tag
  arrays, associated images — before any parser sees them;
* :meth:`verify_all` streams the whole file once (a format whose layout we cannot map).

A chunk that fails calls ``on_corrupt`` (a node quarantines the copy) and raises what it
returns, :class:`ReplicaCorrupt` by default.

What passed is remembered for ``recheck_seconds`` at most (None: for as long as the file
is open). A byte can rot after its check — its page evicted from the cache, then read
again from a bad sector — and a node keeps a slide open for hours, so the remembered
checks expire: :meth:`refresh` (called by :meth:`verify`, and by a slide before any
library read) forgets them all once the window has passed and checks the open-time set
(what :meth:`verify_outside` or :meth:`verify_all` covered: a library reads it with no
per-read check) again at once. Every byte a library reads was then checked within the
last ``recheck_seconds`` — give or take one check in flight when the window ended, which
may mark its chunks in the new window. Not so for a file whose layout we cannot map
(:meth:`verify_all`): re-reading all of it every window while it is in use would cost
more than the check is worth, so it is checked once, when opened.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from slidestore.blobs.sums import ChunkSums
from slidestore.errors import ReplicaCorrupt

_RUN: Final = 64
"""Chunks read and checked per ``pread`` when verifying a run (1 MiB of 16 KiB chunks)."""


class CheckedFile:
    """Reads of one open blob (``fd``), checked against its ``sums``. Thread-safe: the
    remembered bits only ever go from unchecked to checked."""

    def __init__(
        self,
        fd: int,
        sums: ChunkSums,
        on_corrupt: Callable[[str], Exception] | None = None,
        *,
        recheck_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fd = fd
        self.sums = sums
        self._on_corrupt = on_corrupt
        size = os.fstat(fd).st_size
        if size != sums.size:
            raise self.corrupt(f"the file holds {size} bytes, not {sums.size}")
        count = -(-sums.size // sums.chunk)
        self._checked = Bitmap(count)
        self._standing = np.zeros(count, np.bool_)  # the open-time set (see the module)
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._since = clock()  # when the remembered checks began
        self._expiry = threading.Lock()
        self.bytes_verified = 0
        """Bytes read and summed by :meth:`verify` and its kin (not by :meth:`read`)."""
        self.expired = 0
        """How many times the remembered checks were forgotten (see the module)."""

    @property
    def size(self) -> int:
        return self.sums.size

    def corrupt(self, why: str) -> Exception:
        if self._on_corrupt is not None:
            return self._on_corrupt(why)
        return ReplicaCorrupt(why)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, checked now (a short file fails too)."""
        data = self.sums.read(self.fd, start, end)
        if data is None:
            raise self.corrupt(f"bytes [{start}, {end}) do not match their checksums")
        chunk = self.sums.chunk
        self._checked.set(start // chunk, min(self._checked.size, -(-end // chunk)))
        return data

    def refresh(self) -> None:
        """Forget what passed if the window has ended, and check the open-time set again
        (before a library reads anything; cheap until the window ends: a clock read)."""
        if self.recheck_seconds is None:
            return
        if self._clock() - self._since < self.recheck_seconds:
            return
        with self._expiry:  # other readers wait: the open-time set is checked first
            now = self._clock()
            if now - self._since < self.recheck_seconds:
                return  # another thread just did it
            self._checked = Bitmap(self._checked.size)
            self._verify_chunks(np.flatnonzero(self._standing))
            self._since = now  # (not if that failed: every read fails until the copy goes)
            self.expired += 1

    def verify(self, start: int, end: int) -> None:
        """Check ``[start, end)`` unless every chunk of it passed in the window."""
        self.refresh()
        chunk = self.sums.chunk
        first, last = start // chunk, min(self._checked.size, -(-end // chunk))
        if first >= last:
            return
        done = self._checked.get(first, last)
        if not done.all():
            self._verify_chunks(first + np.flatnonzero(~done))

    def verify_outside(self, starts: npt.ArrayLike, ends: npt.ArrayLike) -> None:
        """Check every chunk not wholly inside the union of ``[starts[i], ends[i])``
        (the tile data, checked when read): the rest of the file, all of it at once."""
        self.refresh()
        outside = ~covered_chunks(self.sums, np.asarray(starts), np.asarray(ends))
        self._standing |= outside
        self._verify_chunks(np.flatnonzero(outside & ~self._checked.get(0, self._checked.size)))

    def verify_all(self) -> None:
        """Check every chunk not checked yet, streamed (``_RUN`` chunks at a time)."""
        # Not made part of the open-time set: a file we cannot map would be read whole
        # again every window while in use (see the module).
        self.refresh()
        self._verify_chunks(np.flatnonzero(~self._checked.get(0, self._checked.size)))

    def _verify_chunks(self, indices: npt.NDArray[np.intp]) -> None:
        """Check these chunks (sorted), reading consecutive ones together."""
        if not len(indices):
            return
        chunk = self.sums.chunk
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        for run in np.split(indices, breaks):
            for at in range(0, len(run), _RUN):
                first, last = int(run[at]), int(run[min(len(run), at + _RUN) - 1]) + 1
                start, end = first * chunk, min(self.sums.size, last * chunk)
                data = os.pread(self.fd, end - start, start)
                self.bytes_verified += len(data)
                if len(data) != end - start or not self.sums.matches(start, data):
                    raise self.corrupt(f"bytes [{start}, {end}) do not match their checksums")
                self._checked.set(first, last)


class Bitmap:
    """``size`` bits, all clear at first (one bit a chunk: a 25 GB blob's is 200 KB)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._bytes = np.zeros(-(-size // 8), np.uint8)

    def get(self, first: int, last: int) -> npt.NDArray[np.bool_]:
        """Bits ``[first, last)`` as booleans."""
        skip = first % 8
        packed = self._bytes[first // 8 : -(-last // 8)]
        bits = np.unpackbits(packed, bitorder="little")[skip : skip + last - first]
        return bits.astype(np.bool_)

    def set(self, first: int, last: int) -> None:
        """Set bits ``[first, last)`` (threads may race: bits only ever get set, and a
        lost set only means a chunk is checked again)."""
        if first >= last:
            return
        low, high = first // 8, -(-last // 8)
        bits = np.unpackbits(self._bytes[low:high], bitorder="little")
        bits[first - low * 8 : last - low * 8] = 1
        self._bytes[low:high] = np.packbits(bits, bitorder="little")


def covered_chunks(
    sums: ChunkSums, starts: npt.NDArray[np.integer], ends: npt.NDArray[np.integer]
) -> npt.NDArray[np.bool_]:
    """For each chunk, whether it lies wholly inside the union of the ranges (clipped to
    the blob). Ranges that touch merge, so tiles stored back to back cover the chunks
    their boundaries fall in."""
    count = -(-sums.size // sums.chunk)
    inside = np.zeros(count, np.bool_)
    starts = np.clip(starts.astype(np.int64), 0, sums.size)
    ends = np.clip(ends.astype(np.int64), 0, sums.size)
    keep = ends > starts
    if not keep.any():
        return inside
    order = np.argsort(starts[keep], kind="stable")
    s, e = starts[keep][order], ends[keep][order]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), np.bool_)
    new[1:] = s[1:] > reach[:-1]
    heads = np.flatnonzero(new)
    merged_start = s[heads]
    merged_end = np.maximum.reduceat(e, heads)
    chunk = sums.chunk
    first = -(-merged_start // chunk)
    # The blob's last chunk may be short: a range reaching the end covers it.
    last = np.where(merged_end >= sums.size, count, merged_end // chunk)
    full = first < last
    marks = np.zeros(count + 1, np.int64)
    np.add.at(marks, first[full], 1)
    np.add.at(marks, last[full], -1)
    inside[:] = np.cumsum(marks[:count]) > 0
    return inside
