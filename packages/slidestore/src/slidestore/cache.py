"""A thread-safe least-recently-used cache bounded in bytes, not in entries.

Decoded tiles are large (a 240x240 RGB tile is 169 KiB) and of varying size, so a bound
on the number of entries says nothing about memory; the bound here is on the sum of the
values' sizes. Concurrent misses for one key are computed once (single flight): a tile
server that receives the same tile from eight browser tabs at once decodes it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator

import msgspec


def sizeof(value: object) -> int:
    """Bytes a value holds: ``nbytes`` for numpy arrays, ``len`` for bytes-likes."""
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    raise TypeError(f"cannot size a {type(value).__name__}; pass sizeof= to the cache")


class CacheStats(msgspec.Struct, frozen=True, kw_only=True):
    """A consistent snapshot of a cache's counters."""

    hits: int
    """Lookups answered from the cache, or by waiting for another thread's computation."""
    misses: int
    """Lookups that found nothing: ``get`` returning ``None``, or ``get_or_compute`` starting
    a computation."""
    evictions: int
    entries: int
    bytes: int
    max_bytes: int


class _Flight[V]:
    """One computation in progress that other threads may wait for."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class LRUCache[K: Hashable, V]:
    """Least-recently-used mapping whose values never total more than ``max_bytes``.

    A value larger than ``max_bytes`` is returned to its caller but not kept, so the bound
    holds at every moment. ``max_bytes=0`` disables caching (single flight still applies).
    A computation that raises is not cached: the error goes to the caller and to threads
    that were waiting for that key, and the next lookup tries again.
    """

    def __init__(self, max_bytes: int, *, sizeof: Callable[[V], int] = sizeof) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._flights: dict[K, _Flight[V]] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    # -- plain mapping operations ------------------------------------------------------

    def get(self, key: K) -> V | None:
        """The cached value (marking it most recently used), or ``None``; counts hit/miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def put(self, key: K, value: V) -> None:
        size = self._sizeof(value)
        with self._lock:
            self._store(key, value, size)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[K]:
        """Keys from least to most recently used (a snapshot)."""
        with self._lock:
            return list(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                entries=len(self._entries),
                bytes=self._bytes,
                max_bytes=self.max_bytes,
            )

    # -- single flight -----------------------------------------------------------------

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """The cached value, or ``compute()``'s result, computed once however many ask."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                return entry[0]
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
                self._misses += 1
            else:
                self._hits += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value  # type: ignore[return-value]
        try:
            value = compute()
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                del self._flights[key]
            flight.done.set()
            raise
        size = self._sizeof(value)
        flight.value = value
        with self._lock:
            self._store(key, value, size)
            del self._flights[key]
        flight.done.set()
        return value

    # -- internals (lock held) ---------------------------------------------------------

    def _store(self, key: K, value: V, size: int) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if size > self.max_bytes:
            return
        while self._entries and self._bytes + size > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted
            self._evictions += 1
        self._entries[key] = (value, size)
        self._bytes += size
