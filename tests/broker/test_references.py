"""The broker's reference-value cache: loaded once, then only the names that changed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from support.store import T0
from veritee import blocking
from veritee.broker.references import ReferenceCache
from veritee.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """The store, counting the reads the cache makes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.full = 0
        self.names: list[list[str]] = []

    def reference_changes(self, after: int) -> tuple[int, list[str]]:
        return self.store.reference_changes(after)

    def iter_reference_values(self, **kwargs: Any) -> Any:
        self.full += 1
        return self.store.iter_reference_values(**kwargs)

    def reference_values_for(self, names: list[str], **kwargs: Any) -> Any:
        self.names.append(sorted(names))
        return self.store.reference_values_for(names, **kwargs)


def _cache(store: Store) -> tuple[ReferenceCache, Counting, Clock]:
    counting, clock = Counting(store), Clock()
    cache = ReferenceCache(counting, refresh_seconds=1.0,  # type: ignore[arg-type]
                           monotonic=clock)
    return cache, counting, clock


def test_loaded_once_then_only_changed_names(store: Store) -> None:
    store.put_reference_values({f"n{i}": [f"v{i}"] for i in range(50)}, provenance="t",
                               expires=None, now=T0)
    cache, counting, clock = _cache(store)
    first = cache.get(T0)
    assert len(first) == 50 and counting.full == 1
    assert cache.get(T0) is first                   # within the refresh interval
    clock.now = 5
    assert cache.get(T0) is first                   # nothing changed: the same object
    assert counting.names == []
    store.put_reference_value("n3", ["AB"], provenance="t", expires=None, now=T0)
    store.delete_reference_value("n7")
    clock.now = 10
    second = cache.get(T0)
    assert second is not first and second.generation != first.generation
    assert counting.names == [["n3", "n7"]] and counting.full == 1
    assert second.values["n3"] == ["AB"] and "n7" not in second.values
    assert second.document["reference_lower"]["n3"] == {"ab": True}
    assert first.values["n3"] == ["v3"]             # a prepared set never changes


def test_expired_values_leave_on_time(store: Store) -> None:
    store.put_reference_value("soon", ["x"], provenance="t", expires=T0 + timedelta(seconds=30),
                              now=T0)
    store.put_reference_value("kept", ["y"], provenance="t", expires=None, now=T0)
    cache, _, _ = _cache(store)
    assert set(cache.get(T0).values) == {"soon", "kept"}
    assert set(cache.get(T0 + timedelta(seconds=30)).values) == {"kept"}   # before a refresh


def test_a_superseded_expiry_does_not_drop_the_new_version(store: Store) -> None:
    store.put_reference_value("n", ["old"], provenance="t", expires=T0 + timedelta(seconds=5),
                              now=T0)
    cache, _, clock = _cache(store)
    cache.get(T0)
    store.put_reference_value("n", ["new"], provenance="t", expires=None, now=T0)
    clock.now = 2
    assert cache.get(T0).values["n"] == ["new"]
    assert cache.get(T0 + timedelta(seconds=6)).values["n"] == ["new"]


def test_forget_rereads_at_once(store: Store) -> None:
    cache, _, _ = _cache(store)
    assert len(cache.get(T0)) == 0
    store.put_reference_value("n", ["x"], provenance="t", expires=None, now=T0)
    assert len(cache.get(T0)) == 0                  # within the interval: not seen yet
    cache.forget()
    assert cache.get(T0).values["n"] == ["x"]


def test_on_the_event_loop_a_busy_cache_would_block(store: Store) -> None:
    cache, _, _ = _cache(store)
    cache._lock.acquire()                           # another thread is refreshing
    try:
        with blocking.nonblocking(), pytest.raises(blocking.WouldBlock):
            cache.get(T0)
    finally:
        cache._lock.release()
    assert len(cache.get(T0)) == 0


def test_a_failed_read_leaves_the_cache_consistent(store: Store) -> None:
    store.put_reference_value("a", ["1"], provenance="t", expires=T0 + timedelta(seconds=1),
                              now=T0)
    store.put_reference_value("b", ["2"], provenance="t", expires=None, now=T0)
    cache, counting, clock = _cache(store)
    cache.get(T0)

    def broken(after: int) -> tuple[int, list[str]]:
        raise blocking.WouldBlock("test")

    counting.reference_changes = broken  # type: ignore[method-assign]
    clock.now = 5
    with pytest.raises(blocking.WouldBlock):
        cache.get(T0 + timedelta(seconds=2))        # "a" expired, then the read failed
    del counting.reference_changes
    assert set(cache.get(T0 + timedelta(seconds=2)).values) == {"b"}
