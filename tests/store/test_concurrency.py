"""Races: threads sharing one Store, and processes sharing one database (an SQLite file, or a
PostgreSQL schema), as uvicorn workers and broker replicas do. Each race starts its
contenders at a barrier; exactly one may win a nonce, a session or a setting."""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from support.store import KEK, MINUTE, T0, contender, event, session
from veritee.store import SCHEMA_VERSION, SessionStateError, Store
from veritee.store.schema import MIGRATIONS, schema_version

THREADS = 12
PROCESSES = 2
T = TypeVar("T")


def race(n: int, call: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``call(i)`` for i in range(n) on n threads released together."""
    barrier = threading.Barrier(n)

    def contender(i: int) -> T | BaseException:
        barrier.wait(10)
        try:
            return call(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(contender, range(n)))


# --- threads --------------------------------------------------------------------------------


def test_consume_nonce_once_across_threads(store: Store) -> None:
    store.create_session(session(nonce="N"))
    results = race(THREADS, lambda _: store.consume_nonce("s1", "N", now=T0))
    assert sorted(results, key=str) == [False] * (THREADS - 1) + [True]


def test_attest_session_once_across_threads(store: Store) -> None:
    store.create_session(session())

    def attest(i: int) -> str | None:
        s = store.attest_session("s1", token=f"t{i}", expires_at=T0 + MINUTE, now=T0)
        return s.token

    results = race(THREADS, attest)
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert all(isinstance(r, SessionStateError) for r in results if r not in winners)
    stored = store.get_session("s1", now=T0)
    assert stored is not None
    assert stored.token == winners[0]


def test_attest_challenge_once_across_threads(store: Store) -> None:
    store.create_session(session(nonce="N"))

    def attest(i: int) -> str:
        store.attest_challenge("s1", nonce="N", token=f"t{i}", expires_at=T0 + MINUTE, now=T0)
        return f"t{i}"

    results = race(THREADS, attest)
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert all(isinstance(r, SessionStateError) for r in results if r not in winners)
    stored = store.get_session("s1", now=T0)
    assert stored is not None
    assert stored.token == winners[0]


def test_put_setting_if_absent_agrees_across_threads(store: Store) -> None:
    results = race(THREADS, lambda i: store.put_setting_if_absent("ear-key", f"key-{i}"))
    assert len(set(map(str, results))) == 1
    assert store.get_setting("ear-key") == results[0]


def test_policy_versions_are_unique_across_threads(store: Store) -> None:
    results = race(THREADS, lambda i: store.put_policy("resource", "p", f"v{i}", now=T0))
    assert sorted(results, key=str) == sorted(range(1, THREADS + 1), key=str)
    latest = store.get_policy("resource", "p")
    assert latest is not None
    assert latest.version == THREADS


def test_put_resource_versions_are_unique_across_threads(store: Store) -> None:
    results = race(THREADS, lambda i: store.put_resource("a/b/c", b"%d" % i, now=T0))
    assert sorted(results, key=str) == sorted(range(1, THREADS + 1), key=str)


def test_mixed_load_across_threads(store: Store) -> None:
    """The broker's flow (session, nonce, attest, read, two audit lines) on many threads."""
    store.put_resource("a/b/c", b"secret", now=T0)

    def flow(i: int) -> bytes | None:
        sid = f"s{i}"
        store.create_session(session(sid, nonce=f"n{i}"))
        assert store.consume_nonce(sid, f"n{i}", now=T0)
        store.attest_session(sid, token=f"t{i}", expires_at=T0 + MINUTE, now=T0)
        store.append_audit(event("attest", session_id=sid))
        data = store.get_resource("a/b/c")
        store.append_audit(event("release", session_id=sid, resource="a/b/c"))
        return data

    assert race(THREADS, flow) == [b"secret"] * THREADS
    assert len(store.list_audit(limit=1000)) == 2 * THREADS


# --- processes --------------------------------------------------------------------------------


def race_processes(url: str) -> list[tuple[object, ...]]:
    """Run :func:`test_store_support.contender` in PROCESSES fresh interpreters (spawn: no fork
    of a threaded pytest process) on one empty database; return what each reported."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=contender, args=(url, i, barrier, results)) for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    out: dict[int, tuple[object, ...]] = {}
    try:
        for _ in procs:
            index, value = results.get(timeout=60)
            out[index] = value
    except queue.Empty:
        pytest.fail(f"a contender did not report; got {out}")
    finally:
        for proc in procs:
            proc.join(30)
        results.close()
        results.join_thread()
    return [out[i] for i in range(PROCESSES)]


def test_processes_race_to_migrate_consume_and_claim(url: str) -> None:
    """Processes open one empty database at once (all migrate), then race for one nonce,
    then race to claim one setting."""
    results = race_processes(url)
    assert all(len(r) == 3 for r in results), results
    versions, consumed, claimed = zip(*results, strict=True)
    assert versions == (SCHEMA_VERSION,) * PROCESSES
    assert sorted(consumed, key=str) == [False] * (PROCESSES - 1) + [True]
    assert len(set(claimed)) == 1
    assert str(claimed[0]).startswith("key-")
    with Store.open(url, kek=KEK, create=False) as store:
        assert store.get_setting("ear-key") == claimed[0]
        with store.engine.connect() as conn:
            rows = conn.execute(schema_version.select()).all()
    assert [r.version for r in rows] == [version for version, _, _ in MIGRATIONS]
