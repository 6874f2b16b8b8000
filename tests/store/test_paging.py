"""The store stays O(1) per flow at any size (issue 8): the session purge in bounded batches
beside live writers, audit pages by cursor and time window, keyset pages of names, point
reads, reference-value change tracking, and the query plans (SQLite) that make them so."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Integer,
    String,
    cast,
    event,
    false,
    func,
    insert,
    inspect,
    literal,
    null,
    select,
)

from support.store import KEK, MINUTE, T0, session
from support.store import event as audit_event
from veritee.appraisal import parse_reference_values
from veritee.store import InvalidRecordError, Store, StoreError
from veritee.store.engine import make_engine, parse_url
from veritee.store.schema import (
    MIGRATIONS,
    UTCDateTime,
    reference_value_heads,
    reference_values,
    schema_version,
    sessions,
)
from veritee.store.sealing import Sealer
from veritee.store.store import IN_BATCH

HOUR = timedelta(hours=1)
NAIVE = T0.replace(tzinfo=None)


# --- helpers --------------------------------------------------------------------------------


def bulk_sessions(store: Store, n: int, *, prefix: str, expires_at: datetime) -> None:
    """``n`` sessions in one ``INSERT ... SELECT`` over a recursive series (both dialects;
    200,000 rows take well under a second, an executemany about 15 s)."""
    series = select(literal(0, Integer()).label("i")).cte("series", recursive=True)
    series = series.union_all(select(series.c.i + 1).where(series.c.i < n - 1))
    rows = select(
        (literal(prefix, String()) + cast(series.c.i, String())).label("id"),
        literal("snp", String()), literal("N", String()), literal({}, JSON()),
        literal({}, JSON()), literal("authed", String()), false(), null(),
        literal(T0, UTCDateTime()), literal(expires_at, UTCDateTime()))
    columns = ["id", "tee", "nonce", "request", "extra", "state", "nonce_used", "token",
               "created_at", "expires_at"]
    with store.engine.begin() as conn:
        conn.execute(insert(sessions).from_select(columns, rows))


def count_sessions(store: Store, *, expired_at: datetime | None = None) -> int:
    stmt = select(func.count()).select_from(sessions)
    if expired_at is not None:
        stmt = stmt.where(sessions.c.expires_at <= literal(expired_at, UTCDateTime()))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


@contextmanager
def statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the store sends to the driver inside, BEGIN and PRAGMA included (an
    engine hook, for tests only: it slows every statement)."""
    seen: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        seen.append((" ".join(statement.split()), parameters))

    event.listen(store.engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", grab)


def sqlite_plans(store: Store, call: Callable[[], object]) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN lines of every statement ``call`` runs."""
    with statements(store) as seen:
        call()
    lines: list[str] = []
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for statement, parameters in seen:
            if not statement.upper().startswith(("BEGIN", "PRAGMA")):
                lines += [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement,
                                                        parameters)]
    return lines


def deletes(seen: list[tuple[str, Any]]) -> int:
    return sum(statement.startswith("DELETE") for statement, _ in seen)


# --- purge ----------------------------------------------------------------------------------

EXPIRED = 200_000


def test_purge_in_batches_never_starves_a_writer(url: str) -> None:
    """200,000 expired sessions purged while a thread keeps writing (new sessions, nonces,
    resources) with a 250 ms busy timeout: no write fails, and the purge removes exactly
    the expired rows. (One DELETE of them all held SQLite's lock for about 0.3 s here, and
    for a million rows past the broker's 1 s timeout.)"""
    with Store.open(url, kek=KEK, busy_timeout=0.25) as store:
        for part in range(4):
            bulk_sessions(store, EXPIRED // 4, prefix=f"old{part}-",
                          expires_at=T0 - timedelta(seconds=part))
        bulk_sessions(store, 500, prefix="live-", expires_at=T0 + HOUR)
        waits, errors, stop = [], [], threading.Event()

        def writer() -> None:
            n = 0
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    store.create_session(session(f"w{n}", nonce="N", ttl=HOUR))
                    assert store.consume_nonce(f"w{n}", "N", now=T0)
                    store.put_resource("writer/key/one", b"x", now=T0)
                except StoreError as exc:
                    errors.append(exc)
                waits.append(time.perf_counter() - started)
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            started = time.perf_counter()
            purged = store.purge_expired(now=T0, duty=0.5)    # harsher than the default
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            thread.join(30)
        assert errors == []
        assert purged == EXPIRED
        assert count_sessions(store) == 500 + len(waits)
        assert count_sessions(store, expired_at=T0) == 0
        print(f"purged {purged} in {elapsed:.2f} s; {len(waits)} writer rounds, "
              f"longest {max(waits) * 1000:.1f} ms")


def test_purge_batches_and_time_budget(store: Store) -> None:
    for i in range(25):
        store.create_session(session(f"old{i}", ttl=MINUTE - timedelta(seconds=i)))
    store.create_session(session("live", ttl=2 * MINUTE))
    with statements(store) as seen:
        assert store.purge_expired(now=T0 + MINUTE, batch=10, max_seconds=1e-9) == 10
    assert deletes(seen) == 1  # the budget was spent after one batch
    with statements(store) as seen:
        assert store.purge_expired(now=T0 + MINUTE, batch=10) == 15
    assert deletes(seen) == 2  # 10, then 5 < batch: done
    assert store.purge_expired(now=T0 + MINUTE) == 0
    assert store.get_session("live", now=T0 + MINUTE) is not None


@pytest.mark.parametrize(("name", "kwargs"), [
    ("batch 0", {"batch": 0}),
    ("batch True", {"batch": True}),
    ("batch huge", {"batch": 10**6}),
    ("max_seconds 0", {"max_seconds": 0}),
    ("max_seconds negative", {"max_seconds": -1}),
    ("max_seconds text", {"max_seconds": "1"}),
    ("duty 0", {"duty": 0}),
    ("duty above 1", {"duty": 1.5}),
    ("duty True", {"duty": True}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_purge_refuses_bad_arguments(store: Store, name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecordError):
        store.purge_expired(now=T0, **kwargs)


# --- audit pages ----------------------------------------------------------------------------

KINDS = ("attest", "release", "refuse", "admin")


def fill_audit(store: Store, n: int, *, at: Callable[[int], datetime]) -> list[int]:
    rows = [store.audit_row(audit_event(KINDS[i % 4], at(i), subject=f"c{i}")) for i in range(n)]
    store.append_audit_rows(rows)
    return [e.id for e in reversed(store.list_audit(limit=n)) if e.id is not None]


def walk(store: Store, limit: int, **query: Any) -> list[int]:
    """Every event of a listing, following the cursor page by page."""
    ids: list[int] = []
    before = None
    while True:
        page = store.list_audit(limit=limit, before=before, **query)
        assert len(page) <= limit
        ids += [e.id for e in page if e.id is not None]
        if len(page) < limit:
            return ids
        before = page[-1].id


def expected(store: Store, **query: Any) -> list[int]:
    """The same listing in Python: every event, filtered and sorted by (at, id) newest first."""
    every = store.list_audit(limit=10_000)
    since, until, kind = query.get("since"), query.get("until"), query.get("kind")
    kept = [e for e in every if (kind is None or e.kind == kind)
            and (since is None or e.at >= since) and (until is None or e.at < until)]
    return [e.id for e in sorted(kept, key=lambda e: (e.at, e.id), reverse=True)
            if e.id is not None]


WINDOWS: list[tuple[str, dict[str, Any]]] = [
    ("everything", {}),
    ("one kind", {"kind": "refuse"}),
    ("since", {"since": T0 + 100 * MINUTE}),
    ("until", {"until": T0 + 37 * MINUTE}),
    ("window", {"since": T0 + 20 * MINUTE, "until": T0 + 150 * MINUTE}),
    ("kind in a window", {"kind": "attest", "since": T0 + 3 * MINUTE,
                          "until": T0 + 201 * MINUTE}),
    ("empty window", {"since": T0 + 50 * MINUTE, "until": T0 + 50 * MINUTE}),
]


@pytest.mark.parametrize(("name", "query"), WINDOWS, ids=[w[0] for w in WINDOWS])
def test_audit_pages_cover_the_listing_once(store: Store, name: str,
                                            query: dict[str, Any]) -> None:
    fill_audit(store, 250, at=lambda i: T0 + i * MINUTE)
    want = expected(store, **query)
    for limit in (1, 7, 100, 1000):
        assert walk(store, limit, **query) == want


def test_audit_order_is_time_then_id_and_the_cursor_follows_it(store: Store) -> None:
    """Batches of two workers interleave: ids are not in time order. Pages follow
    (at, id) descending, and the cursor (an id) continues after that event."""
    fill_audit(store, 60, at=lambda i: T0 + ((i * 37) % 60) * MINUTE // 2)
    want = expected(store)
    assert want != sorted(want, reverse=True)  # the ids are out of time order
    assert walk(store, 7) == want
    assert walk(store, 5, kind="admin", since=T0 + 3 * MINUTE) == expected(
        store, kind="admin", since=T0 + 3 * MINUTE)


def test_audit_window_is_since_inclusive_until_exclusive(store: Store) -> None:
    fill_audit(store, 3, at=lambda i: T0 + i * MINUTE)
    listed = store.list_audit(since=T0 + MINUTE, until=T0 + 2 * MINUTE)
    assert [e.at for e in listed] == [T0 + MINUTE]


def test_an_event_appended_meanwhile_does_not_shift_a_page(store: Store) -> None:
    fill_audit(store, 10, at=lambda i: T0 + i * MINUTE)
    first = store.list_audit(limit=4)
    store.append_audit(audit_event("attest", T0 + HOUR))
    second = store.list_audit(limit=4, before=first[-1].id)
    assert [e.at for e in second] == [T0 + i * MINUTE for i in (5, 4, 3, 2)]


@pytest.mark.parametrize(("name", "kwargs"), [
    ("unknown id", {"before": 999}),
    ("zero", {"before": 0}),
    ("negative", {"before": -1}),
    ("bool", {"before": True}),
    ("text", {"before": "1"}),
    ("naive until", {"until": NAIVE}),
    ("naive since", {"since": NAIVE}),
    ("limit 0", {"limit": 0}),
    ("limit huge", {"limit": 10**9}),
    ("kind", {"kind": "bogus"}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_audit_queries_are_refused(store: Store, name: str, kwargs: dict[str, Any]) -> None:
    store.append_audit(audit_event())
    with pytest.raises(InvalidRecordError):
        store.list_audit(**kwargs)


# --- names: point reads and keyset pages ------------------------------------------------------


def put(store: Store, name: str, values: list[Any], *, expires: datetime | None = None) -> int:
    return store.put_reference_value(name, values, provenance="p", expires=expires, now=T0)


def test_get_reference_value_is_the_latest_version(store: Store) -> None:
    put(store, "m", ["old"])
    put(store, "m", ["new"], expires=T0 + HOUR)
    put(store, "other", ["x"])
    got = store.get_reference_value("m", now=T0)
    assert got is not None and (got.values, got.version) == (["new"], 2)
    assert store.get_reference_value("m", now=T0 + HOUR) is None  # the latest expired
    expired = store.get_reference_value("m")
    assert expired is not None and expired.version == 2
    assert store.get_reference_value("absent", now=T0) is None
    store.delete_reference_value("m")
    assert store.get_reference_value("m") is None


def test_reference_value_pages(store: Store) -> None:
    names = [f"n{i:02d}" for i in range(25)]
    for i, name in enumerate(names):
        put(store, name, [i], expires=T0 + HOUR if i % 3 == 0 else None)
    pages, after = [], None
    while True:
        page = store.list_reference_values(limit=10, after=after)
        pages.append([r.name for r in page])
        if len(page) < 10:
            break
        after = page[-1].name
    assert pages == [names[:10], names[10:20], names[20:]]
    live = [n for i, n in enumerate(names) if i % 3]
    assert [r.name for r in store.list_reference_values(now=T0 + HOUR, limit=5)] == live[:5]
    assert [r.name for r in store.list_reference_values(now=T0 + HOUR, limit=5,
                                                        after=live[4])] == live[5:10]
    assert [r.name for r in store.iter_reference_values(page=7)] == names
    assert [r.name for r in store.iter_reference_values(now=T0 + HOUR, page=4)] == live
    assert store.get_reference_values(now=T0 + HOUR) == {
        r.name: r.values for r in store.iter_reference_values(now=T0 + HOUR)}


def test_resource_and_policy_pages(store: Store) -> None:
    paths = [f"repo/key/k{i:02d}" for i in range(12)]
    for path in paths:
        store.put_resource(path, b"s", now=T0)
    assert store.list_resources(limit=5) == paths[:5]
    assert store.list_resources(limit=5, after=paths[4]) == paths[5:10]
    assert store.list_resources(after=paths[9]) == paths[10:]
    ids = [f"p{i:02d}" for i in range(8)]
    for pid in ids:
        store.put_policy("attestation", pid, "package policy", now=T0)
        store.put_policy("resource", pid, "package policy", now=T0)
    page = store.list_policies("attestation", limit=3, after=ids[2])
    assert [(p.kind, p.policy_id) for p in page] == [("attestation", i) for i in ids[3:6]]
    page = store.list_policies(limit=4, after=("attestation", ids[6]))
    assert [(p.kind, p.policy_id) for p in page] == [
        ("attestation", ids[7]), ("resource", ids[0]), ("resource", ids[1]),
        ("resource", ids[2])]


@pytest.mark.parametrize(("name", "call"), [
    ("lone surrogate", lambda s: s.list_reference_values(after="\ud800")),
    ("control character", lambda s: s.list_resources(after="a\x00b")),
    ("too long", lambda s: s.list_reference_values(after="x" * 256)),
    ("not text", lambda s: s.list_resources(after=5)),
    ("limit 0", lambda s: s.list_resources(limit=0)),
    ("limit bool", lambda s: s.list_reference_values(limit=True)),
    ("policy cursor for all kinds", lambda s: s.list_policies(after="p")),
    ("pair cursor for one kind", lambda s: s.list_policies("resource", after=("a", "b"))),
    ("policy kind", lambda s: s.list_policies("bogus")),
    ("point read surrogate", lambda s: s.get_reference_value("\udc80")),
    ("one string of names", lambda s: s.reference_values_for("abc", now=T0)),
    ("naive now", lambda s: s.reference_values_for(["a"], now=NAIVE)),
    ("changes after -1", lambda s: s.reference_changes(-1)),
    ("changes after text", lambda s: s.reference_changes("0")),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_listing_arguments_are_refused(store: Store, name: str,
                                           call: Callable[[Store], object]) -> None:
    with pytest.raises(InvalidRecordError):
        call(store)


# --- reference-value changes ----------------------------------------------------------------


def test_reference_changes_report_puts_and_deletes(store: Store) -> None:
    assert store.reference_changes(0) == (0, [])
    assert store.put_reference_values({"b": [1], "a": [2]}, provenance="p", expires=None,
                                      now=T0) == {"b": 1, "a": 1}
    first, names = store.reference_changes(0)
    assert (first, names) == (2, ["a", "b"])
    assert store.reference_changes(first) == (first, [])
    put(store, "b", [3])
    put(store, "b", [4])
    assert store.delete_reference_value("a") is True
    assert store.delete_reference_value("a") is False  # nothing deleted: no change
    latest, names = store.reference_changes(first)
    assert (latest, names) == (first + 3, ["a", "b"])
    assert store.reference_changes(latest + 10) == (latest, [])  # numbering went back


def test_put_reference_values_is_one_transaction(store: Store) -> None:
    with pytest.raises(InvalidRecordError):
        store.put_reference_values({"a": [1], "b": "not a list"}, provenance="p",
                                   expires=None, now=T0)
    assert store.get_reference_values(now=T0) == {}
    assert store.reference_changes(0) == (0, [])
    assert store.put_reference_values({}, provenance="p", expires=None, now=T0) == {}
    with statements(store) as seen:
        store.put_reference_values({f"n{i}": [i] for i in range(50)}, provenance="p",
                                   expires=T0 + HOUR, now=T0)
    # One transaction: SQLite's BEGIN IMMEDIATE, or PostgreSQL's lock on the change table.
    assert sum(s.startswith(("BEGIN", "LOCK TABLE")) for s, _ in seen) == 1
    assert len(store.get_reference_values(now=T0)) == 50
    assert store.get_reference_values(now=T0 + HOUR) == {}


def test_put_reference_records_keeps_each_entry_provenance_and_expiry(store: Store) -> None:
    entries = parse_reference_values({
        "plain": ["a"],
        "dated": {"values": [1], "expires": "2026-01-02T04:00:00Z", "provenance": "vendor"},
    }, source="admin:test")
    assert store.put_reference_records(entries, now=T0) == {"plain": 1, "dated": 1}
    dated = store.get_reference_value("dated")
    assert dated is not None and (dated.provenance, dated.expires) == (
        "vendor", datetime.fromisoformat("2026-01-02T04:00:00+00:00"))
    plain = store.get_reference_value("plain")
    assert plain is not None and (plain.provenance, plain.expires) == ("admin:test", None)
    assert store.put_reference_records([plain, plain], now=T0) == {"plain": 3}


def test_reference_values_for_reads_just_those_names(store: Store) -> None:
    names = [f"name-{i:04d}" for i in range(IN_BATCH * 2 + 7)]
    store.put_reference_values({n: [i] for i, n in enumerate(names)}, provenance="p",
                               expires=None, now=T0)
    put(store, "short", ["s"], expires=T0 + MINUTE)
    asked = [*names[::3], "absent", "short", names[0]]
    found = store.reference_values_for(asked, now=T0)
    assert sorted(found) == sorted({*names[::3], "short"})
    assert found[names[3]].values == [3]
    assert "short" not in store.reference_values_for(["short"], now=T0 + MINUTE)
    assert store.reference_values_for([], now=T0) == {}


def test_a_reader_following_changes_misses_none(store: Store) -> None:
    """Writers on several threads put names while a reader follows reference_changes from
    the last number it saw: every name put reaches the reader (numbers become visible in
    order, on PostgreSQL too)."""
    seen: set[str] = set()
    done = threading.Event()

    def reader() -> None:
        after = 0
        while True:
            finished = done.is_set()
            after, names = store.reference_changes(after)
            seen.update(names)
            if finished:
                return

    def writer(w: int) -> None:
        for i in range(15):
            store.put_reference_values({f"w{w}-{i}": [i], f"w{w}-x": [i]}, provenance="p",
                                       expires=None, now=T0)

    follower = threading.Thread(target=reader)
    follower.start()
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    done.set()
    follower.join(60)
    assert seen == {f"w{w}-{i}" for w in range(4) for i in (*range(15), "x")}


# --- query plans (SQLite) --------------------------------------------------------------------


PLANS: list[tuple[str, Callable[[Store], object]]] = [
    ("purge", lambda s: s.purge_expired(now=T0)),
    ("audit", lambda s: s.list_audit()),
    ("audit kind", lambda s: s.list_audit(kind="attest")),
    ("audit since", lambda s: s.list_audit(since=T0)),
    ("audit until", lambda s: s.list_audit(until=T0 + HOUR)),
    ("audit window cursor", lambda s: s.list_audit(since=T0, until=T0 + HOUR, before=2)),
    ("audit kind window cursor",
     lambda s: s.list_audit(kind="refuse", since=T0, until=T0 + HOUR, before=2)),
    ("reference page", lambda s: s.list_reference_values(now=T0, after="a")),
    ("reference point read", lambda s: s.get_reference_value("a", now=T0)),
    ("reference names", lambda s: s.reference_values_for(["a", "b"], now=T0)),
    ("reference changes", lambda s: s.reference_changes(0)),
    ("policy page", lambda s: s.list_policies("attestation", after="p")),
    ("policy page of every kind", lambda s: s.list_policies(after=("attestation", "p"))),
    ("resource page", lambda s: s.list_resources(after="a/b/c")),
]


@pytest.mark.parametrize(("name", "call"), PLANS, ids=[p[0] for p in PLANS])
def test_queries_read_an_index_range(store: Store, name: str,
                                     call: Callable[[Store], object]) -> None:
    """No listing scans a table, and none sorts (each page is read in index order) — but
    reference_changes, which sorts only the changes it returns."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    fill_audit(store, 3, at=lambda i: T0 + i * MINUTE)
    put(store, "a", [1])
    plan = sqlite_plans(store, lambda: call(store))
    assert plan
    scans = [line for line in plan if line.startswith("SCAN") and "INDEX" not in line]
    assert scans == [], plan
    if name != "reference changes":
        assert not any("TEMP B-TREE" in line for line in plan), plan


# --- migration --------------------------------------------------------------------------------


@contextmanager
def version_1(url: str) -> Iterator[Store]:
    """A store on a database with only migration 1 applied, as the code of version 1 left
    it (``Store.migrate`` applies the rest)."""
    engine = make_engine(parse_url(url), pool_size=2, create=True)
    with engine.begin() as conn:
        schema_version.create(conn)
        MIGRATIONS[0][2](conn)
        conn.execute(schema_version.insert(),
                     {"version": 1, "title": MIGRATIONS[0][1], "applied_at": T0})
    with Store(engine, Sealer(KEK)) as store:
        yield store


def test_a_version_1_database_is_upgraded(url: str) -> None:
    with version_1(url) as store:
        assert store.schema_version() == 1
        store.append_audit(audit_event("attest", T0))
        store.put_policy("resource", "default", "package policy", now=T0)
        with store.engine.begin() as conn:  # as version 1 wrote a reference value
            conn.execute(reference_value_heads.insert(), {"name": "m", "latest": 1})
            conn.execute(reference_values.insert(), {
                "name": "m", "version": 1, "values_json": ["kept"], "provenance": "p",
                "expires": None, "created_at": T0})
        store.migrate()
        assert store.schema_version() == MIGRATIONS[-1][0] == 2
        indexes = {i["name"] for i in inspect(store.engine).get_indexes("audit_log")}
        assert indexes == {"audit_log_at_id", "audit_log_kind_at_id"}
        assert [e.kind for e in store.list_audit(since=T0)] == ["attest"]
        assert store.get_reference_values(now=T0) == {"m": ["kept"]}
        assert store.reference_changes(0) == (0, [])  # changes are numbered from version 2
        assert put(store, "m", ["new"]) == 2
        assert store.reference_changes(0) == (1, ["m"])
