"""The byte-bounded LRU cache: bound, eviction order, counters, single flight, threads."""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slidestore.cache import LRUCache, sizeof
from slidestore.errors import SlideReadError


def blob(n: int, fill: int = 0) -> bytes:
    return bytes([fill % 256]) * n


def test_sizeof_counts_bytes_of_arrays_and_buffers() -> None:
    assert sizeof(np.zeros((240, 240, 3), np.uint8)) == 172800
    assert sizeof(b"abc") == 3
    assert sizeof(bytearray(5)) == 5
    with pytest.raises(TypeError):
        sizeof(object())


def test_least_recently_used_is_evicted_first() -> None:
    cache: LRUCache[str, bytes] = LRUCache(300)
    for key in "abc":
        cache.put(key, blob(100))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", blob(100))
    assert cache.keys() == ["c", "a", "d"]
    assert "b" not in cache
    assert cache.stats().evictions == 1
    cache.put("e", blob(250))  # needs room for 250: evicts c, a and d
    assert cache.keys() == ["e"]
    assert cache.bytes == 250


def test_value_larger_than_the_bound_is_not_kept() -> None:
    cache: LRUCache[str, bytes] = LRUCache(100)
    cache.put("a", blob(60))
    cache.put("big", blob(101))
    assert "big" not in cache
    assert cache.keys() == ["a"]
    assert cache.get_or_compute("big2", lambda: blob(500)) == blob(500)
    assert cache.bytes == 60


def test_replacing_a_key_updates_its_size() -> None:
    cache: LRUCache[str, bytes] = LRUCache(100)
    cache.put("a", blob(60))
    cache.put("a", blob(30))
    assert cache.bytes == 30
    assert len(cache) == 1


def test_zero_bytes_disables_caching_and_negative_is_refused() -> None:
    cache: LRUCache[str, bytes] = LRUCache(0)
    assert cache.get_or_compute("a", lambda: b"x") == b"x"
    assert len(cache) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        LRUCache(-1)


def test_hit_and_miss_counters() -> None:
    cache: LRUCache[str, bytes] = LRUCache(1000)
    assert cache.get("a") is None
    cache.get_or_compute("a", lambda: b"1")
    cache.get_or_compute("a", lambda: b"2")
    assert cache.get("a") == b"1"
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 2)
    assert (cache.hits, cache.misses) == (2, 2)
    assert (stats.entries, stats.bytes, stats.max_bytes) == (1, 1, 1000)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=400),
    st.lists(
        st.tuples(st.sampled_from(["put", "get"]), st.integers(0, 7), st.integers(0, 150)),
        max_size=60,
    ),
)
def test_matches_a_reference_lru_model(max_bytes: int, ops: list[tuple[str, int, int]]) -> None:
    """Whatever the operations, contents and order equal a straightforward model's."""
    cache: LRUCache[int, bytes] = LRUCache(max_bytes)
    model: OrderedDict[int, int] = OrderedDict()
    for op, key, size in ops:
        if op == "put":
            model.pop(key, None)
            if size <= max_bytes:
                while model and sum(model.values()) + size > max_bytes:
                    model.popitem(last=False)
                model[key] = size
            cache.put(key, blob(size, key))
        else:
            got = cache.get(key)
            if key in model:
                model.move_to_end(key)
                assert got == blob(model[key], key)
            else:
                assert got is None
        assert cache.keys() == list(model)
        assert cache.bytes == sum(model.values()) <= max_bytes


def test_concurrent_misses_compute_once() -> None:
    cache: LRUCache[str, bytes] = LRUCache(1000)
    calls = 0
    start = threading.Barrier(8)

    def compute() -> bytes:
        nonlocal calls
        calls += 1
        time.sleep(0.05)
        return b"value"

    def ask(_: int) -> bytes:
        start.wait()
        return cache.get_or_compute("k", compute)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(8)))
    assert results == [b"value"] * 8
    assert calls == 1
    assert (cache.misses, cache.hits) == (1, 7)


def test_a_failing_computation_is_not_cached_and_spares_other_keys() -> None:
    cache: LRUCache[str, bytes] = LRUCache(1000)
    cache.put("good", b"ok")
    attempts = 0

    def broken() -> bytes:
        nonlocal attempts
        attempts += 1
        raise SlideReadError("corrupt tile")

    for _ in range(2):
        with pytest.raises(SlideReadError):
            cache.get_or_compute("bad", broken)
    assert attempts == 2  # retried: an error is never remembered
    assert "bad" not in cache
    assert cache.get_or_compute("good", broken) == b"ok"
    assert cache.get_or_compute("bad", lambda: b"fixed") == b"fixed"


def test_waiters_of_a_failing_computation_get_its_error() -> None:
    cache: LRUCache[str, bytes] = LRUCache(1000)
    start = threading.Barrier(4)

    def broken() -> bytes:
        time.sleep(0.05)
        raise SlideReadError("corrupt tile")

    def ask(_: int) -> str:
        start.wait()
        try:
            cache.get_or_compute("bad", broken)
        except SlideReadError:
            return "error"
        return "value"

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, range(4))) == ["error"] * 4
    assert len(cache) == 0


def test_threads_hammering_never_exceed_the_bound() -> None:
    max_bytes = 10_000
    cache: LRUCache[int, bytes] = LRUCache(max_bytes)
    computed: dict[int, int] = {}
    lock = threading.Lock()
    overshoot: list[int] = []

    def value_for(key: int) -> bytes:
        return blob(100 + 37 * key, key)

    def compute(key: int) -> bytes:
        with lock:
            computed[key] = computed.get(key, 0) + 1
        if key % 13 == 0:
            raise SlideReadError(f"key {key} is broken")
        return value_for(key)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(400):
            key = rng.randrange(60)
            try:
                assert cache.get_or_compute(key, lambda k=key: compute(k)) == value_for(key)
            except SlideReadError:
                assert key % 13 == 0
            stats = cache.stats()
            if stats.bytes > max_bytes:
                overshoot.append(stats.bytes)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(16)))
    assert overshoot == []
    stats = cache.stats()
    assert stats.bytes == sum(len(value_for(k)) for k in cache) <= max_bytes
    assert not any(k % 13 == 0 for k in cache)
    assert stats.hits + stats.misses == 16 * 400
    assert stats.misses == sum(computed.values())
