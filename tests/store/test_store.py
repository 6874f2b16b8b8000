"""veritee.store on SQLite and PostgreSQL: every call, expiry, the session state machine,
sealing at rest, versioning, the append-only audit log, migrations and error translation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text

from support.store import (
    KEK,
    MINUTE,
    OTHER_KEK,
    T0,
    event,
    session,
)
from veritee.errors import EvidenceError, MisuseError, UndecidedError
from veritee.store import (
    SCHEMA_VERSION,
    InvalidRecordError,
    ResourcePathError,
    SessionStateError,
    SessionUnknownError,
    Store,
    StoreConfigError,
    StoreConflictError,
    StoreIntegrityError,
    StoreUnavailableError,
)
from veritee.store.schema import MIGRATIONS, resources, schema_version, sessions, settings


def raw(store: Store, sql: str, **params: Any) -> list[Any]:
    """Run SQL behind the store's back (as an attacker or a careless operator would)."""
    with store.engine.begin() as conn:
        result = conn.execute(text(sql), params)
        return list(result) if result.returns_rows else []


# --- opening and migrating ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "url", "kek"),
    [
        ("short KEK", "sqlite:///{tmp}/a.db", b"k" * 16),
        ("KEK not bytes", "sqlite:///{tmp}/a.db", "k" * 32),
        ("in-memory SQLite", "sqlite://", KEK),
        ("explicit :memory:", "sqlite:///:memory:", KEK),
        ("unsupported scheme", "mysql://u@localhost/db", KEK),
        ("not a URL", "just words", KEK),
        ("other PostgreSQL driver", "postgresql+asyncpg://u@localhost/db", KEK),
    ],
)
def test_open_refuses_bad_configuration(name: str, url: str, kek: Any, tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError):
        Store.open(url.format(tmp=tmp_path), kek=kek)


def test_open_without_create_needs_the_schema(url: str) -> None:
    with pytest.raises(StoreConfigError, match="run migrate"):
        Store.open(url, kek=KEK, create=False)
    Store.open(url, kek=KEK).close()
    with Store.open(url, kek=KEK, create=False) as store:
        assert store.schema_version() == SCHEMA_VERSION


def test_plain_postgresql_scheme_means_psycopg(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    with Store.open(url.replace("postgresql+psycopg://", "postgresql://"), kek=KEK) as store:
        assert store.engine.dialect.driver == "psycopg"


def test_migrate_is_idempotent(store: Store) -> None:
    store.migrate()
    store.migrate()
    with store.engine.connect() as conn:
        versions = conn.execute(select(schema_version.c.version)).scalars().all()
    assert versions == [v for v, _, _ in MIGRATIONS]
    assert store.schema_version() == SCHEMA_VERSION


def test_newer_schema_is_refused(url: str) -> None:
    with Store.open(url, kek=KEK) as store, store.engine.begin() as conn:
        conn.execute(schema_version.insert(), {"version": 999, "title": "future", "applied_at": T0})
    with pytest.raises(StoreConfigError, match="999"):
        Store.open(url, kek=KEK, create=False)
    with pytest.raises(StoreConfigError, match="999"):
        Store.open(url, kek=KEK)


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/sub/dir/store.db", kek=KEK):
        pass
    assert (tmp_path / "sub/dir/store.db").stat().st_mode & 0o777 == 0o600


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/s.db", kek=KEK) as store:
        assert raw(store, "PRAGMA journal_mode")[0][0] == "wal"
        assert raw(store, "PRAGMA busy_timeout")[0][0] == 5000
        assert raw(store, "PRAGMA foreign_keys")[0][0] == 1


# --- datetimes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        T0,
        datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
    ],
    ids=["t0", "max-micro", "before-epoch", "plus-0530", "year-9999"],
)
def test_datetimes_round_trip_exactly_as_utc(store: Store, stamp: datetime) -> None:
    store.create_session(dataclasses.replace(session(), created_at=stamp, expires_at=stamp))
    [s] = _all_sessions(store)  # read back regardless of expiry
    assert s["created_at"] == stamp
    assert s["created_at"].tzinfo is UTC
    assert s["expires_at"] == stamp


def _all_sessions(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(sessions))]


NAIVE = datetime(2026, 1, 1)  # no tzinfo: the point of these tests

NAIVE_CALLS: list[tuple[str, Callable[[Store], object]]] = [
    ("get_session now", lambda s: s.get_session("s1", now=NAIVE)),
    (
        "create_session",
        lambda s: s.create_session(dataclasses.replace(session(), created_at=NAIVE)),
    ),
    ("attest expires", lambda s: s.attest_session("s1", token="t", expires_at=NAIVE, now=T0)),
    ("consume now", lambda s: s.consume_nonce("s1", "n", now=NAIVE)),
    ("purge now", lambda s: s.purge_expired(now=NAIVE)),
    ("put_resource now", lambda s: s.put_resource("a/b/c", b"x", now=NAIVE)),
    ("put_policy now", lambda s: s.put_policy("resource", "p", "package p", now=NAIVE)),
    (
        "reference expires",
        lambda s: s.put_reference_value("n", [], provenance="p", expires=NAIVE, now=T0),
    ),
    ("list_audit since", lambda s: s.list_audit(since=NAIVE)),
]


@pytest.mark.parametrize(("name", "call"), NAIVE_CALLS, ids=[n for n, _ in NAIVE_CALLS])
def test_naive_datetimes_are_refused(
    store: Store, name: str, call: Callable[[Store], object]
) -> None:
    with pytest.raises(InvalidRecordError, match="timezone-aware"):
        call(store)


# --- sessions -----------------------------------------------------------------------------


def test_session_round_trip(store: Store) -> None:
    s = session()
    store.create_session(s)
    assert store.get_session("s1", now=T0) == s
    assert store.get_session("nope", now=T0) is None


@pytest.mark.parametrize(
    ("offset", "alive"),
    [(-MINUTE, True), (5 * MINUTE - timedelta(microseconds=1), True), (5 * MINUTE, False)],
    ids=["before", "last-microsecond", "at-expiry"],
)
def test_session_expires(store: Store, offset: timedelta, alive: bool) -> None:
    store.create_session(session())
    assert (store.get_session("s1", now=T0 + offset) is not None) is alive


@pytest.mark.parametrize(
    ("name", "change", "error"),
    [
        ("unknown state", {"state": "bogus"}, InvalidRecordError),
        ("attested without token", {"state": "attested"}, InvalidRecordError),
        ("authed with token", {"token": "t"}, InvalidRecordError),
        ("empty id", {"id": ""}, InvalidRecordError),
        ("overlong id", {"id": "x" * 129}, InvalidRecordError),
    ],
)
def test_bad_sessions_are_refused(
    store: Store, name: str, change: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.create_session(dataclasses.replace(session(), **change))


def test_duplicate_session_id_conflicts(store: Store) -> None:
    store.create_session(session())
    with pytest.raises(StoreConflictError) as info:
        store.create_session(session())
    assert "s1" not in str(info.value)  # session ids are credentials


def _attest(store: Store, token: str = "t1", *, at: datetime = T0) -> Any:
    return store.attest_session("s1", token=token, expires_at=T0 + 10 * MINUTE, now=at)


def _authed_then_attested(store: Store) -> None:
    store.create_session(session())
    _attest(store)


ATTEST_CASES: list[tuple[str, Callable[[Store], None], Callable[[Store], Any], Any]] = [
    ("authed to attested", lambda s: s.create_session(session()), _attest, "attested"),
    (
        "same token again is idempotent",
        _authed_then_attested,
        _attest,
        "attested",
    ),
    (
        "another token",
        _authed_then_attested,
        lambda s: _attest(s, "t2"),
        SessionStateError,
    ),
    ("unknown session", lambda s: None, _attest, SessionUnknownError),
    (
        "expired session",
        lambda s: s.create_session(session()),
        lambda s: _attest(s, at=T0 + 5 * MINUTE),
        SessionUnknownError,
    ),
]


@pytest.mark.parametrize(
    ("name", "setup", "call", "expect"), ATTEST_CASES, ids=[c[0] for c in ATTEST_CASES]
)
def test_attest_session_state_machine(
    store: Store,
    name: str,
    setup: Callable[[Store], None],
    call: Callable[[Store], Any],
    expect: Any,
) -> None:
    setup(store)
    if isinstance(expect, type):
        with pytest.raises(expect) as info:
            call(store)
        assert isinstance(info.value, EvidenceError)  # the requester's fault: KBS answers 401
        assert "s1" not in str(info.value)
        assert "t1" not in str(info.value)
        return
    got = call(store)
    assert (got.state, got.token, got.expires_at) == ("attested", "t1", T0 + 10 * MINUTE)
    assert store.get_session("s1", now=T0) == got


def _attest_quietly(store: Store) -> None:
    _attest(store)


CONSUME_CASES: list[tuple[str, Callable[[Store], None], list[tuple[str, str, datetime, bool]]]] = [
    ("once, then replay", lambda s: None, [("s1", "N", T0, True), ("s1", "N", T0, False)]),
    (
        "wrong nonce does not burn it",
        lambda s: None,
        [("s1", "X", T0, False), ("s1", "N", T0, True)],
    ),
    ("unknown session", lambda s: None, [("s2", "N", T0, False)]),
    ("expired session", lambda s: None, [("s1", "N", T0 + 5 * MINUTE, False)]),
    ("attested session", _attest_quietly, [("s1", "N", T0, False)]),
]


@pytest.mark.parametrize(
    ("name", "setup", "steps"), CONSUME_CASES, ids=[c[0] for c in CONSUME_CASES]
)
def test_consume_nonce(
    store: Store,
    name: str,
    setup: Callable[[Store], None],
    steps: list[tuple[str, str, datetime, bool]],
) -> None:
    store.create_session(session(nonce="N"))
    setup(store)
    for sid, nonce, now, expected in steps:
        assert store.consume_nonce(sid, nonce, now=now) is expected


def _challenge(store: Store, nonce: str = "N", *, at: datetime = T0, token: str = "t1") -> None:
    store.attest_challenge("s1", nonce=nonce, token=token, expires_at=T0 + 10 * MINUTE, now=at)


CHALLENGE_CASES: list[tuple[str, Callable[[Store], None], Callable[[Store], None], Any]] = [
    ("spends the nonce and attests", lambda s: None, _challenge, None),
    ("a second time", _challenge, lambda s: _challenge(s, token="t2"), SessionStateError),
    ("wrong nonce", lambda s: None, lambda s: _challenge(s, "X"), SessionStateError),
    ("nonce spent by a failed attempt", lambda s: s.consume_nonce("s1", "N", now=T0), _challenge,
     SessionStateError),
    ("attested by attest_session", _attest_quietly, _challenge, SessionStateError),
    ("expired session", lambda s: None, lambda s: _challenge(s, at=T0 + 5 * MINUTE),
     SessionUnknownError),
    ("unknown session", lambda s: s.delete_session("s1"), _challenge, SessionUnknownError),
]


@pytest.mark.parametrize(
    ("name", "setup", "call", "error"), CHALLENGE_CASES, ids=[c[0] for c in CHALLENGE_CASES]
)
def test_attest_challenge(
    store: Store,
    name: str,
    setup: Callable[[Store], None],
    call: Callable[[Store], None],
    error: type[Exception] | None,
) -> None:
    store.create_session(session(nonce="N"))
    setup(store)
    before = store.get_session("s1", now=T0)
    if error is not None:
        with pytest.raises(error) as info:
            call(store)
        assert isinstance(info.value, EvidenceError)
        assert "N" not in str(info.value).split(": ", 1)[-1].split()  # no nonce in messages
        assert store.get_session("s1", now=T0) == before      # nothing changed
        return
    call(store)
    got = store.get_session("s1", now=T0)
    assert got is not None
    assert (got.state, got.token, got.nonce_used, got.expires_at) == (
        "attested", "t1", True, T0 + 10 * MINUTE)


def test_nonce_used_is_read_back(store: Store) -> None:
    store.create_session(session(nonce="N"))
    assert store.get_session("s1", now=T0).nonce_used is False  # type: ignore[union-attr]
    store.consume_nonce("s1", "N", now=T0)
    assert store.get_session("s1", now=T0).nonce_used is True  # type: ignore[union-attr]


def test_delete_and_purge_sessions(store: Store) -> None:
    for i in range(1, 4):
        store.create_session(session(f"s{i}", ttl=i * MINUTE))
    assert store.delete_session("s1") is True
    assert store.delete_session("s1") is False
    assert store.purge_expired(now=T0 + 2 * MINUTE) == 1  # s2 expires at exactly T0+2min
    assert store.purge_expired(now=T0 + 2 * MINUTE) == 0
    assert [s["id"] for s in _all_sessions(store)] == ["s3"]


# --- resources ----------------------------------------------------------------------------

SECRET = b"-----BEGIN KEY----- a very recognisable secret -----END KEY-----"


def test_resource_round_trip_and_versions(store: Store) -> None:
    assert store.get_resource("default/key/one") is None
    assert store.put_resource("default/key/one", SECRET, now=T0) == 1
    assert store.put_resource("default/key/one", b"second", now=T0) == 2
    assert store.put_resource("default/key/two", b"", now=T0) == 1
    assert store.get_resource("default/key/one") == b"second"
    assert store.get_resource("default/key/two") == b""
    assert store.list_resources() == ["default/key/one", "default/key/two"]
    assert store.delete_resource("default/key/one") is True
    assert store.delete_resource("default/key/one") is False
    assert store.list_resources() == ["default/key/two"]
    assert store.put_resource("default/key/one", b"again", now=T0) == 1


def test_resource_data_must_be_bytes(store: Store) -> None:
    with pytest.raises(InvalidRecordError):
        store.put_resource("a/b/c", "text", now=T0)  # type: ignore[arg-type]


def test_resources_and_settings_are_sealed_at_rest(store: Store, url: str) -> None:
    store.put_resource("default/key/one", SECRET, now=T0)
    store.put_setting("signing-key", SECRET.decode())
    for table in (resources, settings):
        with store.engine.connect() as conn:
            for row in conn.execute(select(table)):
                assert SECRET not in b"".join(str(v).encode() for v in row)
                assert SECRET[10:30] not in bytes(row.ciphertext)
    if url.startswith("sqlite"):
        store.close()
        db = Path(url.removeprefix("sqlite:///"))
        for path in db.parent.glob(db.name + "*"):
            assert SECRET[10:30] not in path.read_bytes(), path.name


TAMPER: list[tuple[str, str]] = [
    ("flipped ciphertext bit", "UPDATE resources SET ciphertext = :evil WHERE path = 'a/b/one'"),
    ("flipped nonce bit", "UPDATE resources SET nonce = :evil_nonce WHERE path = 'a/b/one'"),
    ("truncated ciphertext", "UPDATE resources SET ciphertext = :short WHERE path = 'a/b/one'"),
    ("unknown key id", "UPDATE resources SET key_id = 'ffffffffffffffff' WHERE path = 'a/b/one'"),
    (
        "row swapped from another path",
        "UPDATE resources SET nonce = :other_nonce, ciphertext = :other WHERE path = 'a/b/one'",
    ),
]


@pytest.mark.parametrize(("name", "sql"), TAMPER, ids=[t[0] for t in TAMPER])
def test_tampered_resources_do_not_authenticate(store: Store, name: str, sql: str) -> None:
    store.put_resource("a/b/one", SECRET, now=T0)
    store.put_resource("a/b/two", b"other secret", now=T0)
    [one] = raw(store, "SELECT nonce, ciphertext FROM resources WHERE path = 'a/b/one'")
    [two] = raw(store, "SELECT nonce, ciphertext FROM resources WHERE path = 'a/b/two'")
    ct, nonce = bytes(one.ciphertext), bytes(one.nonce)
    params = {
        "evil": ct[:5] + bytes([ct[5] ^ 1]) + ct[6:],
        "evil_nonce": bytes([nonce[0] ^ 0x80]) + nonce[1:],
        "short": ct[:-1],
        "other": bytes(two.ciphertext),
        "other_nonce": bytes(two.nonce),
    }
    raw(store, sql, **{k: v for k, v in params.items() if f":{k}" in sql})
    with pytest.raises(StoreIntegrityError) as info:
        store.get_resource("a/b/one")
    assert isinstance(info.value, UndecidedError)
    assert SECRET.decode() not in str(info.value)
    assert store.get_resource("a/b/two") == b"other secret"


def test_setting_ciphertext_does_not_open_as_a_resource(store: Store) -> None:
    store.put_resource("a/b/c", b"resource", now=T0)
    store.put_setting("a/b/c", "setting")  # same name, other domain of associated data
    raw(
        store,
        "UPDATE resources SET nonce = (SELECT nonce FROM settings), "
        "ciphertext = (SELECT ciphertext FROM settings)",
    )
    with pytest.raises(StoreIntegrityError):
        store.get_resource("a/b/c")


def test_wrong_kek_does_not_open(url: str) -> None:
    with Store.open(url, kek=KEK) as store:
        store.put_resource("a/b/c", SECRET, now=T0)
        store.put_setting("k", "v")
    with Store.open(url, kek=OTHER_KEK) as other:
        with pytest.raises(StoreIntegrityError, match="does not hold") as info:
            other.get_resource("a/b/c")
        assert KEK.hex() not in str(info.value)
        with pytest.raises(StoreIntegrityError):
            other.get_setting("k")


def test_kek_rotation(url: str) -> None:
    with Store.open(url, kek=KEK) as store:
        store.put_resource("a/b/c", SECRET, now=T0)
        store.put_setting("k", "v")
    # A replica restarted with the new KEK still reads rows sealed under the old one...
    with Store.open(url, kek=OTHER_KEK, previous_keks=[KEK]) as store:
        assert store.get_resource("a/b/c") == SECRET
        store.put_resource("a/b/d", b"new", now=T0)
        [row] = raw(store, "SELECT key_id FROM resources WHERE path = 'a/b/d'")
        assert row.key_id == store.key_id
    # ...and rotation reseals everything under the new one.
    with Store.open(url, kek=KEK) as store, pytest.raises(StoreIntegrityError):
        store.get_resource("a/b/d")
    with Store.open(url, kek=KEK, previous_keks=[OTHER_KEK]) as store:
        assert store.rewrap_all(OTHER_KEK) == 2  # a/b/c and the setting; a/b/d already new
        assert store.rewrap_all(OTHER_KEK) == 0
        with Store.open(url, kek=OTHER_KEK, create=False) as other:
            assert store.key_id == other.key_id
    with Store.open(url, kek=OTHER_KEK) as store:
        assert store.get_resource("a/b/c") == SECRET
        assert store.get_resource("a/b/d") == b"new"
        assert store.get_setting("k") == "v"
    with Store.open(url, kek=KEK) as store, pytest.raises(StoreIntegrityError):
        store.get_resource("a/b/c")


def test_rotation_aborts_whole_on_a_bad_row(store: Store) -> None:
    store.put_resource("a/b/c", SECRET, now=T0)
    store.put_resource("a/b/d", b"x", now=T0)
    raw(store, "UPDATE resources SET ciphertext = :c WHERE path = 'a/b/d'", c=b"\0" * 17)
    with pytest.raises(StoreIntegrityError):
        store.rewrap_all(OTHER_KEK)
    assert store.get_resource("a/b/c") == SECRET  # untouched, still under the old KEK


BAD_PATHS = [
    "",
    "a/b",
    "a/b/c/d",
    "a//c",
    "/a/b/c",
    "a/b/c/",
    "../b/c",
    "a/../c",
    "a/b/..",
    "a/b/.",
    "a/b/x..y",
    "a/b/c d",
    "a/b/c\x00",
    "a/b/ç",
    "a/b/c?x=1",
    "a\\b/c/d",
    "a/b/" + "x" * 300,
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_resource_paths_are_refused(store: Store, path: str) -> None:
    for call in (
        lambda: store.put_resource(path, b"x", now=T0),
        lambda: store.get_resource(path),
        lambda: store.delete_resource(path),
    ):
        with pytest.raises(ResourcePathError) as info:
            call()
        assert isinstance(info.value, MisuseError)


@pytest.mark.parametrize("path", ["default/key/1", "repo.name/type_x/tag-1.2", "A/B/.hidden"])
def test_good_resource_paths(store: Store, path: str) -> None:
    store.put_resource(path, b"x", now=T0)
    assert store.get_resource(path) == b"x"


# --- settings -----------------------------------------------------------------------------


def test_settings(store: Store) -> None:
    assert store.get_setting("ear-key") is None
    assert store.put_setting_if_absent("ear-key", "first") == "first"
    assert store.put_setting_if_absent("ear-key", "second") == "first"
    assert store.get_setting("ear-key") == "first"
    store.put_setting("ear-key", "third")
    assert store.get_setting("ear-key") == "third"
    assert store.delete_setting("ear-key") is True
    assert store.delete_setting("ear-key") is False
    assert store.put_setting_if_absent("ear-key", "fourth") == "fourth"
    with pytest.raises(InvalidRecordError):
        store.put_setting("", "x")


# --- policies -----------------------------------------------------------------------------


def test_policies_are_versioned(store: Store) -> None:
    assert store.get_policy("attestation", "default") is None
    assert store.put_policy("attestation", "default", "package v1", now=T0, author="alice") == 1
    later = T0 + MINUTE
    assert store.put_policy("attestation", "default", "package v2", now=later) == 2
    assert store.put_policy("resource", "default", "package r1", now=T0) == 1
    latest = store.get_policy("attestation", "default")
    assert latest is not None
    assert (latest.version, latest.source, latest.created_at, latest.author) == (
        2,
        "package v2",
        later,
        None,
    )
    first = store.get_policy("attestation", "default", 1)
    assert first is not None
    assert (first.source, first.author) == ("package v1", "alice")
    assert store.get_policy("attestation", "default", 3) is None
    listed = [(p.kind, p.policy_id, p.version) for p in store.list_policies()]
    assert listed == [("attestation", "default", 2), ("resource", "default", 1)]
    assert [p.kind for p in store.list_policies("resource")] == ["resource"]


@pytest.mark.parametrize(
    ("kind", "policy_id", "source"),
    [
        ("bogus", "p", "s"),
        ("resource", "", "s"),
        ("resource", "x" * 256, "s"),
        ("resource", "p", 1),
    ],
)
def test_bad_policies_are_refused(store: Store, kind: str, policy_id: str, source: Any) -> None:
    with pytest.raises(InvalidRecordError):
        store.put_policy(kind, policy_id, source, now=T0)


# --- reference values ---------------------------------------------------------------------

HOUR = timedelta(hours=1)


def test_reference_values(store: Store) -> None:
    values = [1, "a", {"k": [True, None]}, 1.5]
    assert (
        store.put_reference_value("forever", values, provenance="sample", expires=None, now=T0) == 1
    )
    assert (
        store.put_reference_value("hour", ["h"], provenance="rim", expires=T0 + HOUR, now=T0) == 1
    )
    assert store.get_reference_values(now=T0) == {"forever": values, "hour": ["h"]}
    assert store.get_reference_values(now=T0 + HOUR) == {"forever": values}
    records = store.list_reference_values()
    assert [(r.name, r.version, r.provenance, r.expires) for r in records] == [
        ("forever", 1, "sample", None),
        ("hour", 1, "rim", T0 + HOUR),
    ]
    assert [r.name for r in store.list_reference_values(now=T0 + HOUR)] == ["forever"]


def test_reference_values_latest_version_wins_even_when_expired(store: Store) -> None:
    store.put_reference_value("m", ["old"], provenance="p", expires=T0 + 2 * HOUR, now=T0)
    assert store.put_reference_value("m", ["new"], provenance="p", expires=T0 + HOUR, now=T0) == 2
    assert store.get_reference_values(now=T0) == {"m": ["new"]}
    assert store.get_reference_values(now=T0 + HOUR) == {}  # "old" was superseded, never back


def test_delete_reference_value(store: Store) -> None:
    store.put_reference_value("m", ["a"], provenance="p", expires=None, now=T0)
    store.put_reference_value("m", ["b"], provenance="p", expires=None, now=T0)
    assert store.delete_reference_value("m") is True
    assert store.delete_reference_value("m") is False
    assert store.get_reference_values(now=T0) == {}
    assert store.put_reference_value("m", ["c"], provenance="p", expires=None, now=T0) == 3


@pytest.mark.parametrize(("name", "values"), [("m", {"a": 1}), ("m", "abc"), ("", [])])
def test_bad_reference_values_are_refused(store: Store, name: str, values: Any) -> None:
    with pytest.raises(InvalidRecordError):
        store.put_reference_value(name, values, provenance="p", expires=None, now=T0)


# --- audit log ----------------------------------------------------------------------------


def test_audit_append_and_list(store: Store) -> None:
    ids = [
        store.append_audit(event("attest", T0)),
        store.append_audit(event("release", T0 + MINUTE, resource="a/b/c")),
        store.append_audit(
            event("refuse", T0 + 2 * MINUTE, verdict="contraindicated", failed_rules=["svn"])
        ),
        store.append_audit(event("admin", T0 + 3 * MINUTE, session_id=None, tee=None)),
    ]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    listed = store.list_audit()
    assert [e.id for e in listed] == ids[::-1]
    assert listed[-1] == dataclasses.replace(event("attest", T0), id=ids[0])
    assert listed[1].failed_rules == ["svn"]
    assert [e.kind for e in store.list_audit(limit=2)] == ["admin", "refuse"]
    assert [e.kind for e in store.list_audit(kind="release")] == ["release"]
    assert [e.kind for e in store.list_audit(since=T0 + 2 * MINUTE)] == ["admin", "refuse"]
    assert store.list_audit(kind="attest", since=T0 + MINUTE) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.append_audit(event("bogus")),
        lambda s: s.append_audit(event(detail={"not json": object()})),
        lambda s: s.append_audit(event(detail={"nan": float("nan")})),
        lambda s: s.append_audit(event(subject="x" * 256)),
        lambda s: s.append_audit(event(session_id="x" * 129)),
        lambda s: s.append_audit(event(verdict="")),
        lambda s: s.append_audit(event(verdict="x" * 33)),
        lambda s: s.list_audit(kind="bogus"),
        lambda s: s.list_audit(limit=0),
        lambda s: s.list_audit(limit=10_001),
    ],
    ids=[
        "kind",
        "not-json",
        "nan",
        "long-subject",
        "long-session-id",
        "empty-verdict",
        "long-verdict",
        "list-kind",
        "limit-0",
        "limit-big",
    ],
)
def test_bad_audit_calls_are_refused(store: Store, call: Callable[[Store], object]) -> None:
    with pytest.raises(InvalidRecordError):
        call(store)


@pytest.mark.parametrize(
    "sql",
    ["UPDATE audit_log SET verdict = 'affirming'", "DELETE FROM audit_log"],
    ids=["update", "delete"],
)
def test_audit_log_is_append_only(store: Store, sql: str) -> None:
    store.append_audit(event("refuse", verdict="contraindicated"))
    with pytest.raises(sa_exc.DBAPIError, match="append-only"):
        raw(store, sql)
    assert [e.verdict for e in store.list_audit()] == ["contraindicated"]


def test_audit_log_cannot_be_truncated_on_postgres(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL only")
    store.append_audit(event())
    with pytest.raises(sa_exc.DBAPIError, match="append-only"):
        raw(store, "TRUNCATE audit_log")
    assert len(store.list_audit()) == 1


# --- errors at the boundary ---------------------------------------------------------------


def test_unreachable_postgres_is_unavailable() -> None:
    url = "postgresql+psycopg://veritee:hunter2@127.0.0.1:9/nowhere?connect_timeout=2"
    with pytest.raises(StoreUnavailableError) as info:
        Store.open(url, kek=KEK)
    assert isinstance(info.value, UndecidedError)
    assert "hunter2" not in str(info.value)


def test_sqlite_file_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreUnavailableError):
        Store.open(f"sqlite:///{tmp_path}/file/store.db", kek=KEK)


def test_database_failures_are_translated_without_parameters(store: Store) -> None:
    store.create_session(session())
    raw(store, "DROP TABLE sessions")
    with pytest.raises(StoreUnavailableError, match=r"^attest_session: database failed") as info:
        store.attest_session("s1", token="secret-token", expires_at=T0 + MINUTE, now=T0)
    assert "secret-token" not in str(info.value)
    assert "secret-token" not in str(info.value.__cause__)  # hide_parameters on the engine
