"""Where the caller may not block (veritee.blocking), the store does not wait for SQLite's
write lock and collateral is not fetched: both raise WouldBlock before changing anything,
and the same call made where blocking is allowed waits as configured."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.store import KEK
from veritee import blocking
from veritee.collateral import CollateralSource, MemoryCache
from veritee.collateral.base import Response
from veritee.store import Store
from veritee.store.errors import StoreUnavailableError


def test_the_flag_is_per_context_and_does_not_reach_threads() -> None:
    blocking.about_to_block("nothing")  # allowed by default
    seen: list[bool] = []
    with blocking.nonblocking():
        assert not blocking.may_block()
        with pytest.raises(blocking.WouldBlock) as info:
            blocking.about_to_block("a fetch")
        assert info.value.what == "a fetch"
        thread = threading.Thread(target=lambda: seen.append(blocking.may_block()))
        thread.start()
        thread.join()
    assert blocking.may_block() and seen == [True]


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Store]:
    """A store whose database another connection holds the write lock of."""
    db = tmp_path / "locked.db"
    store = Store.open(f"sqlite:///{db}", kek=KEK, busy_timeout=0.05)
    store.put_setting("before", "1")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield store
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_a_write_that_meets_the_lock_would_block(locked: Store) -> None:
    with blocking.nonblocking(), pytest.raises(blocking.WouldBlock):
        locked.put_setting("during", "1")
    # Where blocking is allowed, the same pooled connection waits its busy timeout again
    # (and then fails as a store error, not as WouldBlock).
    with pytest.raises(StoreUnavailableError):
        locked.put_setting("during", "1")


def test_reads_do_not_wait_for_a_writer(locked: Store) -> None:
    with blocking.nonblocking():
        assert locked.get_setting("before") == "1"
        assert locked.get_setting("during") is None


def test_nothing_was_written_by_the_attempt_that_would_block(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store.open(f"sqlite:///{db}", kek=KEK, busy_timeout=0.05) as store:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with blocking.nonblocking(), pytest.raises(blocking.WouldBlock):
            store.put_setting("k", "v")
        holder.execute("ROLLBACK")
        holder.close()
        assert store.get_setting("k") is None
        with blocking.nonblocking():
            store.put_setting("k", "v")  # no lock now: the write goes ahead on the loop
        assert store.get_setting("k") == "v"


class _CountingFetcher:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def get(self, url: str) -> Response:
        self.urls.append(url)
        return Response(200, b"fetched")


def test_a_collateral_fetch_would_block_but_a_cached_answer_does_not() -> None:
    fetcher = _CountingFetcher()
    source = CollateralSource(cache=MemoryCache(), fetcher=fetcher)
    with blocking.nonblocking(), pytest.raises(blocking.WouldBlock) as info:
        source.get("https://vendor.test/a", "a VCEK", service="KDS")
    assert fetcher.urls == [] and "KDS" in info.value.what
    assert source.get("https://vendor.test/a", "a VCEK") == b"fetched"
    with blocking.nonblocking():
        assert source.get("https://vendor.test/a", "a VCEK") == b"fetched"
    assert fetcher.urls == ["https://vendor.test/a"]


def test_only_the_last_step_is_handed_on() -> None:
    calls: list[str] = []

    def write() -> str:
        calls.append("write")
        blocking.about_to_block("the write lock")
        return "written"

    with blocking.nonblocking(), pytest.raises(blocking.WouldBlock) as info:
        blocking.last_step(write)
    assert info.value.resume is write and info.value.what == "the write lock"
    assert info.value.resume() == "written"  # where it may block, the step goes ahead
    assert calls == ["write", "write"]
    inner = blocking.WouldBlock("inner", resume=lambda: "inner step")
    with pytest.raises(blocking.WouldBlock) as nested:
        blocking.last_step(lambda: (_ for _ in ()).throw(inner))
    assert nested.value is inner  # a step that names its own resumption keeps it
