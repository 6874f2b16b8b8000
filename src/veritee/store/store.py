"""The broker's persistent state: sessions, sealed resources, policies, reference values,
the audit log and a few settings — one :class:`Store` over SQLite or PostgreSQL.

Every call is one short transaction (on PostgreSQL a single-statement call runs in autocommit,
one round trip). Protocol steps that must happen once — consuming a nonce, attesting a
session, claiming a setting — are a single conditional ``UPDATE``/``INSERT``, so they stay
atomic when several threads, processes or replicas share the database.

No business rule lives here: the broker decides *whether* to attest or release; the store
only records it, keeps the session state machine consistent and keeps secrets sealed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal

from sqlalchemy import Connection, Engine, Integer, Row, bindparam, func, inspect, select, tuple_

from veritee import blocking
from veritee.store.engine import (
    SQLITE_BEGIN_WRITE,
    make_engine,
    parse_url,
    sqlite_wait_policy,
    translated,
)
from veritee.store.errors import (
    InvalidRecordError,
    SessionStateError,
    SessionUnknownError,
    StoreConfigError,
    StoreUnavailableError,
)
from veritee.store.records import (
    AUDIT_KINDS,
    MAX_NAME,
    POLICY_KINDS,
    SESSION_STATES,
    AuditEvent,
    PolicyRecord,
    ReferenceValueInput,
    ReferenceValueRecord,
    Session,
    check_json,
    check_length,
    check_member,
    check_name,
    check_resource_path,
    utc,
    utc_or_none,
)
from veritee.store.schema import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    SCHEMA_VERSION,
    UTCDateTime,
    audit_log,
    reference_value_changes,
    schema_version,
)
from veritee.store.sealing import Sealer, resource_aad, setting_aad
from veritee.store.statements import Statements

Mode = Literal["read", "one", "tx"]
#: Largest page any listing returns (the admin API asks for at most 1,000 and one more).
MAX_PAGE: Final = 10_000
#: Page of a listing whose caller names no ``limit``.
DEFAULT_PAGE: Final = 100
#: Sessions one purge statement deletes; each batch is its own short transaction.
PURGE_BATCH: Final = 2000
#: Shortest pause between purge batches. The purge also pauses 19 times as long as its last
#: batch took, so it holds SQLite's write lock at most a twentieth of the time and a writer
#: polling for it (SQLite's busy handler retries after 1, 2, 5, 10 ... 100 ms) gets it within a try.
PURGE_PAUSE_S: Final = 0.002
#: The share of one core a purge backlog may take (the pause after each batch follows).
PURGE_DUTY: Final = 0.05
#: Names per ``IN (...)`` of :meth:`Store.reference_values_for` (well below SQLite's 32,766
#: parameters and PostgreSQL's 65,535).
IN_BATCH: Final = 500
#: Locks out other writers of reference-value changes until commit, so that on PostgreSQL
#: change numbers become visible in order (readers are not blocked). SQLite's
#: ``BEGIN IMMEDIATE`` serializes writers already.
_PG_LOCK_CHANGES: Final = f"LOCK TABLE {reference_value_changes.name} IN EXCLUSIVE MODE"


class Store:
    """Persistent state of one broker deployment. Thread-safe; share one per process."""

    def __init__(self, engine: Engine, sealer: Sealer,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Use :meth:`open`. ``clock`` stamps what the store writes without a caller's
        instant (migrations, settings); every other call takes ``now`` explicitly."""
        self._engine = engine
        self._clock = clock
        self._sealer = sealer
        self._pg = engine.dialect.name == "postgresql"
        self._q = Statements(postgresql=self._pg)
        # Single statements run in autocommit (on SQLite the driver is always in autocommit;
        # on PostgreSQL an engine sharing the pool sets it per checkout).
        single = engine.execution_options(isolation_level="AUTOCOMMIT") if self._pg else engine
        self._engines: dict[Mode, Engine] = {"read": single, "one": single, "tx": engine}

    @classmethod
    def open(
        cls,
        url: str,
        *,
        kek: bytes,
        create: bool = True,
        previous_keks: Sequence[bytes] = (),
        pool_size: int = 10,
        clock: Callable[[], datetime] | None = None,
        busy_timeout: float | None = None,
    ) -> Store:
        """Open the store at ``url`` (``sqlite:///path.db`` or
        ``postgresql+psycopg://user@host:port/db``).

        ``kek`` (32 bytes) seals new secrets; ``previous_keks`` still open rows sealed before a
        rotation. With ``create`` the schema is created or upgraded (:meth:`migrate`);
        without it the schema must exist at this code's version already."""
        sealer = Sealer(kek, previous_keks)
        engine = make_engine(parse_url(url), pool_size=pool_size, create=create,
                             **({} if busy_timeout is None else {"busy_timeout": busy_timeout}))
        store = cls(engine, sealer) if clock is None else cls(engine, sealer, clock)
        try:
            if create:
                store.migrate()
            else:
                store._check_schema()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for operators' tooling and tests; not for business code)."""
        return self._engine

    @property
    def key_id(self) -> str:
        """Public name of the KEK that seals new rows."""
        return self._sealer.current_id

    @contextmanager
    def _tx(self, op: str, mode: Mode = "tx") -> Iterator[Connection]:
        """A connection for one call. ``read`` and ``one``: each statement is atomic on its
        own (autocommit; one round trip on PostgreSQL); ``tx``: one transaction around several
        statements, which on SQLite takes the write lock up front."""
        if self._pg:
            with translated(op), self._engines[mode].connect() as conn, conn.begin():
                yield conn
            return
        # SQLite: where the caller may not block (veritee.blocking), a lock is not waited for.
        with translated(op), self._engines[mode].connect() as conn, \
                sqlite_wait_policy(conn, may_wait=blocking.may_block()), conn.begin():
            if mode == "tx":
                conn.exec_driver_sql(SQLITE_BEGIN_WRITE)
            yield conn

    @property
    def embedded(self) -> bool:
        """SQLite: statements are local file operations that wait only for another
        connection's lock (so a caller that may not block can try them; see
        :mod:`veritee.blocking`). False for PostgreSQL, where every statement is a network
        round trip."""
        return not self._pg

    # --- schema -------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema; idempotent, and safe when several processes start at
        once (a transaction-level advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite)."""
        with self._tx("migrate") as conn:
            if self._pg:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            schema_version.create(conn, checkfirst=True)
            current = self._version(conn)
            for version, title, step in MIGRATIONS:
                if version > current:
                    step(conn)
                    conn.execute(
                        schema_version.insert(),
                        {"version": version, "title": title, "applied_at": self._clock()},
                    )

    def schema_version(self) -> int:
        """The highest schema version applied (0 for an empty database)."""
        with self._tx("schema_version", "read") as conn:
            if not inspect(conn).has_table(schema_version.name):
                return 0
            return self._version(conn)

    def _version(self, conn: Connection) -> int:
        current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
        if current > SCHEMA_VERSION:
            raise StoreConfigError(
                f"database schema is version {current}, this code knows up to {SCHEMA_VERSION}"
            )
        return int(current)

    def _check_schema(self) -> None:
        current = self.schema_version()
        if current != SCHEMA_VERSION:
            raise StoreConfigError(
                f"database schema is version {current}, expected {SCHEMA_VERSION}: run migrate"
            )

    # --- sessions -----------------------------------------------------------------------------

    def create_session(self, s: Session) -> None:
        """Record a new session (normally ``authed``); a reused id is a
        :class:`~veritee.store.errors.StoreConflictError`."""
        check_member(s.state, SESSION_STATES, "session state")
        if (s.state == "attested") != (s.token is not None):
            raise InvalidRecordError("a session has a token exactly when it is attested")
        if not isinstance(s.id, str) or not 0 < len(s.id) <= 128:
            raise InvalidRecordError("session id must be 1..128 characters")
        params = {
            "id": s.id,
            "tee": check_length(s.tee, 64, "tee"),
            "nonce": s.nonce,
            "request": check_json(s.request, "session request"),
            "extra": check_json(s.extra, "session extra"),
            "state": s.state,
            "nonce_used": bool(s.nonce_used),
            "token": s.token,
            "created_at": utc(s.created_at, "created_at"),
            "expires_at": utc(s.expires_at, "expires_at"),
        }
        with self._tx("create_session", "one") as conn:
            conn.execute(self._q.session_insert, params)

    def get_session(self, session_id: str, *, now: datetime) -> Session | None:
        """The session, or ``None`` if it does not exist or has expired at ``now``."""
        with self._tx("get_session", "read") as conn:
            row = conn.execute(
                self._q.session_get, {"p_id": session_id, "p_now": utc(now, "now")}
            ).first()
        return None if row is None else _session(row)

    def attest_session(
        self, session_id: str, *, token: str, expires_at: datetime, now: datetime
    ) -> Session:
        """Move a live session from ``authed`` to ``attested`` with ``token``, valid until
        ``expires_at``. Repeating the call with the same token returns the session unchanged
        (KBS answers a repeated /attest with the stored token); another token is
        :class:`SessionStateError`; a missing or expired session :class:`SessionUnknownError`.
        """
        params = {
            "p_id": session_id,
            "p_now": utc(now, "now"),
            "p_token": token,
            "p_expires": utc(expires_at, "expires_at"),
        }
        with self._tx("attest_session", "one") as conn:
            row = conn.execute(self._q.session_attest, params).first()
            if row is None:
                lookup = {"p_id": session_id, "p_now": params["p_now"]}
                row = conn.execute(self._q.session_get, lookup).first()
                if row is None:
                    raise SessionUnknownError("session is unknown or expired")
                if row.state != "attested" or row.token != token:
                    raise SessionStateError(f"session is {row.state} with another token")
        return _session(row)

    def attest_challenge(
        self, session_id: str, *, nonce: str, token: str, expires_at: datetime, now: datetime
    ) -> None:
        """Spend the challenge ``nonce`` of a live ``authed`` session and attest it with
        ``token`` (valid until ``expires_at``), in one conditional ``UPDATE``: the protocol
        step of a successful attestation, which succeeds once per session across every
        process sharing the database.

        Raises:
            SessionUnknownError: the session is missing or expired.
            SessionStateError: it is attested already, its challenge was spent, or ``nonce``
                is not its challenge.
        """
        params = {
            "p_id": session_id,
            "p_now": utc(now, "now"),
            "p_nonce": nonce,
            "p_token": token,
            "p_expires": utc(expires_at, "expires_at"),
        }
        with self._tx("attest_challenge", "one") as conn:
            if conn.execute(self._q.challenge_attest, params).rowcount == 1:
                return
            lookup = {"p_id": session_id, "p_now": params["p_now"]}
            row = conn.execute(self._q.session_get, lookup).first()
        if row is None:
            raise SessionUnknownError("session is unknown or expired")
        reason = ("attested already" if row.state == "attested" else
                  "its challenge was spent" if row.nonce_used else "the nonce is not its challenge")
        raise SessionStateError(f"session cannot be attested: {reason}")

    def consume_nonce(self, session_id: str, nonce: str, *, now: datetime) -> bool:
        """Mark the challenge of a live ``authed`` session used. ``True`` exactly once per
        session, across every process sharing the database; ``False`` for a replay, a wrong
        nonce, or a missing, expired or attested session."""
        params = {"p_id": session_id, "p_nonce": nonce, "p_now": utc(now, "now")}
        with self._tx("consume_nonce", "one") as conn:
            return conn.execute(self._q.nonce_consume, params).rowcount == 1

    def delete_session(self, session_id: str) -> bool:
        """Forget a session; ``True`` if there was one."""
        with self._tx("delete_session", "one") as conn:
            return conn.execute(self._q.session_delete, {"p_id": session_id}).rowcount > 0

    def purge_expired(self, *, now: datetime, batch: int = PURGE_BATCH,
                      max_seconds: float | None = None, duty: float = PURGE_DUTY) -> int:
        """Delete the sessions expired at ``now`` (``expires_at <= now``), oldest first, in
        statements of at most ``batch`` rows; returns how many were deleted.

        Each batch is its own short transaction (a few milliseconds on SQLite), and the
        purge pauses between batches (:data:`PURGE_PAUSE_S`, or 19 times as long as the
        batch took: :data:`PURGE_DUTY`), so writers waiting for the lock get it and the purge
        takes at most a twentieth of a core per process (every worker purges; ``duty``, a
        fraction in (0, 1], sets another share): a backlog of a million expired sessions
        never holds the lock near the busy timeout. With ``max_seconds`` the purge stops
        after the batch that reaches it; the next call goes on where it stopped. Blocks the
        calling thread for the whole purge: run it in a thread (the server does)."""
        if isinstance(duty, bool) or not isinstance(duty, int | float) or not 0 < duty <= 1:
            raise InvalidRecordError(f"duty is {duty!r}, expected a fraction in (0, 1]")
        params = {"p_now": utc(now, "now"), "p_batch": _page_limit(batch, "batch")}
        _check_budget(max_seconds)
        started = time.monotonic()
        total = 0
        while True:
            before = time.monotonic()
            with self._tx("purge_expired", "one") as conn:
                deleted = int(conn.execute(self._q.session_purge, params).rowcount)
            total += deleted
            after = time.monotonic()
            if deleted < batch or (max_seconds is not None and after - started >= max_seconds):
                return total
            # Pause 19 times as long as the batch took: waiting writers get SQLite's lock
            # (they poll for it), and a backlog is worked off with a twentieth of a core
            # (:data:`PURGE_DUTY`) instead of competing with the flows being served.
            time.sleep(max(PURGE_PAUSE_S, (after - before) * (1 - duty) / duty))

    # --- resources ----------------------------------------------------------------------------

    def put_resource(self, path: str, data: bytes, *, now: datetime) -> int:
        """Seal ``data`` under the KEK at ``path`` (``repo/type/tag``); returns its version
        (1 for a new path, one more on each overwrite)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidRecordError(f"resource data must be bytes, got {type(data).__name__}")
        kid, nonce, sealed = self._sealer.seal(bytes(data), resource_aad(check_resource_path(path)))
        stamp = utc(now, "now")
        params = {
            "path": path,
            "version": 1,
            "key_id": kid,
            "nonce": nonce,
            "ciphertext": sealed,
            "created_at": stamp,
            "updated_at": stamp,
        }
        with self._tx("put_resource", "one") as conn:
            return int(conn.execute(self._q.resource_put, params).scalar_one())

    def get_resource(self, path: str) -> bytes | None:
        """The plaintext at ``path``, ``None`` if absent; :class:`StoreIntegrityError` if the
        row does not authenticate (tampered, moved from another path, or another KEK)."""
        with self._tx("get_resource", "read") as conn:
            row = conn.execute(self._q.resource_get, {"p_path": check_resource_path(path)}).first()
        if row is None:
            return None
        return self._sealer.open(
            row.key_id, row.nonce, row.ciphertext, resource_aad(path), what=f"resource {path}"
        )

    def delete_resource(self, path: str) -> bool:
        with self._tx("delete_resource", "one") as conn:
            params = {"p_path": check_resource_path(path)}
            return conn.execute(self._q.resource_delete, params).rowcount > 0

    def list_resources(self, *, limit: int = DEFAULT_PAGE, after: str | None = None
                       ) -> list[str]:
        """A page of resource paths in path order: the first ``limit`` after the path
        ``after`` (the last one of the previous page; ``None`` for the first page)."""
        params = {"p_limit": _page_limit(limit), "p_after": _after(after)}
        with self._tx("list_resources", "read") as conn:
            return list(conn.execute(self._q.resource_page, params).scalars())

    def rewrap_all(self, new_kek: bytes) -> int:
        """Reseal every resource and setting under ``new_kek`` in one transaction, and use it
        for new rows from now on (the old KEKs can still open rows other replicas write until
        they are restarted with the new one). Returns the number of rows resealed; a row that
        does not authenticate aborts the whole rotation."""
        sealer = self._sealer.rotated(new_kek)
        count = 0
        with self._tx("rewrap_all") as conn:
            for row in conn.execute(self._q.resource_all).all():
                count += self._reseal(conn, sealer, row, self._q.resource_reseal, "p_path")
            for row in conn.execute(self._q.setting_all).all():
                count += self._reseal(conn, sealer, row, self._q.setting_reseal, "p_key")
        self._sealer = sealer
        return count

    @staticmethod
    def _reseal(conn: Connection, sealer: Sealer, row: Row[Any], stmt: Any, key: str) -> int:
        if row.key_id == sealer.current_id:
            return 0
        name = row[0]
        aad = resource_aad(name) if key == "p_path" else setting_aad(name)
        plain = sealer.open(row.key_id, row.nonce, row.ciphertext, aad, what=f"row {name}")
        kid, nonce, sealed = sealer.seal(plain, aad)
        conn.execute(stmt, {key: name, "p_key_id": kid, "p_nonce": nonce, "p_ciphertext": sealed})
        return 1

    # --- policies -----------------------------------------------------------------------------

    def put_policy(
        self, kind: str, policy_id: str, source: str, *, now: datetime, author: str | None = None
    ) -> int:
        """Store ``source`` as the next version of policy ``(kind, policy_id)``; returns it."""
        head = {
            "kind": check_member(kind, POLICY_KINDS, "policy kind"),
            "policy_id": check_name(policy_id, "policy id"),
        }
        if not isinstance(source, str):
            raise InvalidRecordError("policy source must be text")
        row = {
            **head,
            "source": source,
            "created_at": utc(now, "now"),
            "author": check_length(author, MAX_NAME, "author"),
        }
        with self._tx("put_policy") as conn:
            version = int(conn.execute(self._q.policy_bump, head).scalar_one())
            conn.execute(self._q.policy_insert, {**row, "version": version})
        return version

    def get_policy(
        self, kind: str, policy_id: str, version: int | None = None
    ) -> PolicyRecord | None:
        """The latest version of a policy, or the given ``version``; ``None`` if absent."""
        params = {"p_kind": kind, "p_policy_id": policy_id, "p_version": version}
        stmt = self._q.policy_latest if version is None else self._q.policy_version
        with self._tx("get_policy", "read") as conn:
            row = conn.execute(stmt, params).first()
        return None if row is None else _policy(row)

    def list_policies(self, kind: str | None = None, *, limit: int = DEFAULT_PAGE,
                      after: str | tuple[str, str] | None = None) -> list[PolicyRecord]:
        """A page of the latest version of each policy, by kind then id: the first ``limit``
        after the cursor ``after`` — with ``kind``, the policy id of the previous page's last
        record; without, its ``(kind, policy_id)``; ``None`` for the first page."""
        params: dict[str, Any] = {"p_limit": _page_limit(limit)}
        if kind is None:
            if after is not None and not (isinstance(after, tuple) and len(after) == 2):
                raise InvalidRecordError("listing every kind, the cursor is (kind, policy_id)")
            after_kind, after_id = after or (None, None)
            stmt = self._q.policy_page_all
            params |= {"p_after_kind": _after(after_kind), "p_after": _after(after_id)}
        else:
            if after is not None and not isinstance(after, str):
                raise InvalidRecordError("listing one kind, the cursor is a policy id")
            stmt = self._q.policy_page_kind
            params |= {"p_kind": check_member(kind, POLICY_KINDS, "policy kind"),
                       "p_after": _after(after)}
        with self._tx("list_policies", "read") as conn:
            return [_policy(row) for row in conn.execute(stmt, params)]

    # --- reference values ---------------------------------------------------------------------

    def put_reference_value(
        self,
        name: str,
        values: list[Any],
        *,
        provenance: str,
        expires: datetime | None,
        now: datetime,
    ) -> int:
        """Store ``values`` (JSON values) as the next version of ``name``; returns it."""
        return self.put_reference_values({name: values}, provenance=provenance,
                                         expires=expires, now=now)[name]

    def put_reference_values(
        self,
        items: Mapping[str, list[Any]],
        *,
        provenance: str,
        expires: datetime | None,
        now: datetime,
    ) -> dict[str, int]:
        """Store each ``name: values`` of ``items`` as the next version of that name, in one
        transaction (all or none); returns ``{name: new version}``."""
        return self.put_reference_records(
            [_Entry(name, values, provenance, expires) for name, values in items.items()],
            now=now)

    def put_reference_records(self, entries: Iterable[ReferenceValueInput], *,
                              now: datetime) -> dict[str, int]:
        """Store each entry (name, values, provenance, expires: the appraisal layer's
        ``ReferenceValue`` or a :class:`ReferenceValueRecord`) as the next version of its
        name, in one transaction; returns ``{name: new version}`` (an entry repeating a name
        is one more version). Every entry is checked before anything is written."""
        stamp = utc(now, "now")
        rows = [_rv_row(entry, stamp) for entry in entries]
        versions: dict[str, int] = {}
        if not rows:
            return versions
        with self._tx("put_reference_values") as conn:
            self._lock_changes(conn)
            for row in rows:
                head = {"name": row["name"]}
                version = int(conn.execute(self._q.rv_bump, head).scalar_one())
                conn.execute(self._q.rv_insert, {**row, "version": version})
                versions[row["name"]] = version
            conn.execute(self._q.rv_change_insert,
                         [{"name": row["name"], "changed_at": stamp} for row in rows])
        return versions

    def get_reference_values(self, *, now: datetime) -> dict[str, list[Any]]:
        """``{name: values}`` from the latest version of each name, leaving out names whose
        latest version has expired (a superseded version never comes back). One statement,
        every name: for a cache that loads them all (see :meth:`reference_changes`)."""
        with self._tx("get_reference_values", "read") as conn:
            rows = conn.execute(self._q.rv_list_live, {"p_now": utc(now, "now")})
            return {row.name: list(row.values_json) for row in rows}

    def get_reference_value(self, name: str, *, now: datetime | None = None
                            ) -> ReferenceValueRecord | None:
        """The latest version of ``name``, ``None`` if there is none or (with ``now``) it
        has expired; one point query."""
        params: dict[str, Any] = {"p_name": check_name(name, "reference value name")}
        if now is None:
            stmt = self._q.rv_get_all
        else:
            stmt, params["p_now"] = self._q.rv_get_live, utc(now, "now")
        with self._tx("get_reference_value", "read") as conn:
            row = conn.execute(stmt, params).first()
        return None if row is None else _reference_value(row)

    def list_reference_values(self, *, now: datetime | None = None, limit: int = DEFAULT_PAGE,
                              after: str | None = None) -> list[ReferenceValueRecord]:
        """A page of the latest version of each name, by name: the first ``limit`` after the
        name ``after`` (``None``: the first page); with ``now``, only those not expired."""
        params: dict[str, Any] = {"p_limit": _page_limit(limit), "p_after": _after(after)}
        if now is None:
            stmt = self._q.rv_page_all
        else:
            stmt, params["p_now"] = self._q.rv_page_live, utc(now, "now")
        with self._tx("list_reference_values", "read") as conn:
            return [_reference_value(row) for row in conn.execute(stmt, params)]

    def iter_reference_values(self, *, now: datetime | None = None, page: int = 1000
                              ) -> Iterator[ReferenceValueRecord]:
        """Every latest version (with ``now``, every live one), by name, read a page at a
        time (each page its own read: a name changed meanwhile shows either version)."""
        after = None
        while True:
            records = self.list_reference_values(now=now, limit=page, after=after)
            yield from records
            if len(records) < page:
                return
            after = records[-1].name

    def reference_values_for(self, names: Iterable[str], *, now: datetime
                             ) -> dict[str, ReferenceValueRecord]:
        """The latest live version of each of ``names`` that has one (read with ``IN``
        lists of :data:`IN_BATCH` names): what a cache reloads for the names
        :meth:`reference_changes` reported. A name left out was deleted or has expired."""
        if isinstance(names, str):
            raise InvalidRecordError("names must be an iterable of names, not one string")
        wanted = sorted({check_name(name, "reference value name") for name in names})
        found: dict[str, ReferenceValueRecord] = {}
        params: dict[str, Any] = {"p_now": utc(now, "now")}
        with self._tx("reference_values_for", "read") as conn:
            for start in range(0, len(wanted), IN_BATCH):
                params["p_names"] = wanted[start:start + IN_BATCH]
                for row in conn.execute(self._q.rv_for_live, params):
                    found[row.name] = _reference_value(row)
        return found

    def reference_changes(self, after: int) -> tuple[int, list[str]]:
        """``(latest, names)``: the latest change number, and the distinct names put or
        deleted by changes numbered above ``after`` (by name). Every put and delete takes a
        number in the transaction that makes it, in commit order, so a cache that loaded
        everything after reading ``latest`` (``reference_changes(0)`` on a fresh store is
        ``(0, [])``) stays current by reloading :meth:`reference_values_for` these names.
        An indexed range: the cost is the number of changes, not of names. Expiry is not a
        change (records carry ``expires``). ``latest < after`` means the numbering went
        back (a database restored from a backup): reload everything."""
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidRecordError(f"after is {after!r}, expected a change number >= 0")
        with self._tx("reference_changes", "read") as conn:
            latest = int(conn.execute(self._q.rv_change_latest).scalar_one())
            if latest <= after:
                return latest, []
            params = {"p_after": after, "p_latest": latest}
            return latest, list(conn.execute(self._q.rv_changed_since, params).scalars())

    def delete_reference_value(self, name: str) -> bool:
        """Delete every version of ``name`` (a change, when there was one); a later put
        continues the version count."""
        params = {"p_name": check_name(name, "reference value name")}
        with self._tx("delete_reference_value") as conn:
            self._lock_changes(conn)
            if conn.execute(self._q.rv_delete, params).rowcount == 0:
                return False
            conn.execute(self._q.rv_change_insert, {"name": name, "changed_at": self._clock()})
        return True

    def _lock_changes(self, conn: Connection) -> None:
        if self._pg:
            conn.exec_driver_sql(_PG_LOCK_CHANGES)

    # --- audit log ----------------------------------------------------------------------------

    def append_audit(self, event: AuditEvent) -> int:
        """Append ``event`` (its ``id`` is ignored); returns the id it was given."""
        params = self.audit_row(event)
        with self._tx("append_audit", "one") as conn:
            return int(conn.execute(self._q.audit_insert, params).scalar_one())

    def audit_row(self, event: AuditEvent) -> dict[str, Any]:
        """``event`` checked and shaped as a row for :meth:`append_audit_rows`; raises what
        :meth:`append_audit` raises for a value the store refuses."""
        return {
            "kind": check_member(event.kind, AUDIT_KINDS, "audit kind"),
            "at": utc(event.at, "at"),
            "session_id": check_length(event.session_id, 128, "session_id"),
            "tee": check_length(event.tee, 64, "tee"),
            "subject": check_length(event.subject, MAX_NAME, "subject"),
            "resource": check_length(event.resource, MAX_NAME, "resource"),
            "verdict": check_length(check_name(event.verdict, "verdict"), 32, "verdict"),
            "failed_rules": check_json(list(event.failed_rules), "failed_rules"),
            "detail": check_json(dict(event.detail), "audit detail"),
        }

    def append_audit_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows from :meth:`audit_row`, in order, in one transaction."""
        if rows:
            with self._tx("append_audit_rows") as conn:
                conn.execute(self._q.audit_insert_many, list(rows))

    def list_audit(
        self,
        *,
        limit: int = 100,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
    ) -> list[AuditEvent]:
        """A page of audit events, newest first: by ``at`` descending, then by id (the
        order of appending) descending.

        ``kind`` keeps one kind; ``since`` (inclusive) and ``until`` (exclusive) bound
        ``at``; ``before`` is the id of the last event of the previous page (the cursor):
        the page continues after it in this order, so an event appended later never shifts
        a page. An unknown ``before`` is :class:`InvalidRecordError`. Every combination is
        one range of the ``(at, id)`` or ``(kind, at, id)`` index, read in order: a page
        costs its size, whatever the size of the log."""
        stmt = select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        stmt = stmt.limit(_page_limit(limit))
        if kind is not None:
            stmt = stmt.where(audit_log.c.kind == check_member(kind, AUDIT_KINDS, "audit kind"))
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= utc(since, "since"))
        upper = None if until is None else utc(until, "until")
        with self._tx("list_audit", "read") as conn:
            if before is not None:
                cursor_at = self._audit_at(conn, before)
                if upper is None or cursor_at < upper:  # the cursor bounds the range alone
                    upper = None
                    stmt = stmt.where(tuple_(audit_log.c.at, audit_log.c.id) < tuple_(
                        bindparam("p_cursor_at", cursor_at, type_=UTCDateTime()),
                        bindparam("p_cursor_id", before, type_=Integer())))
            if upper is not None:
                stmt = stmt.where(audit_log.c.at < upper)
            return [_audit(row) for row in conn.execute(stmt)]

    def _audit_at(self, conn: Connection, event_id: int) -> datetime:
        if isinstance(event_id, bool) or not isinstance(event_id, int) or event_id < 1:
            raise InvalidRecordError(f"before is {event_id!r}, expected an audit event id")
        at = conn.execute(self._q.audit_at, {"p_id": event_id}).scalar()
        if at is None:
            raise InvalidRecordError(f"the cursor (before={event_id}) names no audit event")
        stamp: datetime = at
        return stamp

    # --- settings -----------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        """A setting (sealed at rest like resources), ``None`` if absent."""
        with self._tx("get_setting", "read") as conn:
            row = conn.execute(self._q.setting_get, {"p_key": key}).first()
        return None if row is None else self._open_setting(key, row)

    def put_setting_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless ``key`` is set already; returns the value that won, so that
        replicas generating (say) a signing key at the same moment all adopt one."""
        params = self._setting_params(key, value)
        for _ in range(3):  # a concurrent delete between the insert and the read: try again
            with self._tx("put_setting_if_absent", "one") as conn:
                if conn.execute(self._q.setting_put_if_absent, params).first() is not None:
                    return value
                row = conn.execute(self._q.setting_get, {"p_key": key}).first()
            if row is not None:
                return self._open_setting(key, row)
        raise StoreUnavailableError("put_setting_if_absent: the key kept changing")

    def put_setting(self, key: str, value: str) -> None:
        """Set ``key`` to ``value``, replacing any value."""
        with self._tx("put_setting", "one") as conn:
            conn.execute(self._q.setting_put, self._setting_params(key, value))

    def delete_setting(self, key: str) -> bool:
        with self._tx("delete_setting", "one") as conn:
            return conn.execute(self._q.setting_delete, {"p_key": key}).rowcount > 0

    def _setting_params(self, key: str, value: str) -> dict[str, Any]:
        if not isinstance(value, str):
            raise InvalidRecordError("setting values are text")
        kid, nonce, sealed = self._sealer.seal(
            value.encode(), setting_aad(check_name(key, "setting key"))
        )
        return {
            "key": key,
            "key_id": kid,
            "nonce": nonce,
            "ciphertext": sealed,
            "updated_at": self._clock(),
        }

    def _open_setting(self, key: str, row: Row[Any]) -> str:
        plain = self._sealer.open(
            row.key_id, row.nonce, row.ciphertext, setting_aad(key), what=f"setting {key}"
        )
        return plain.decode()


# --- arguments -----------------------------------------------------------------------------------


def _page_limit(limit: int, what: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRecordError(f"{what} is {limit!r}, expected 1..{MAX_PAGE}")
    return limit


def _check_budget(seconds: float | None) -> None:
    if seconds is not None and not (isinstance(seconds, int | float) and seconds > 0):
        raise InvalidRecordError(f"max_seconds is {seconds!r}, expected > 0 or None")


def _after(cursor: str | None) -> str:
    """A keyset cursor: a name (``""``, which sorts first on both backends, for none)."""
    return "" if cursor is None else check_name(cursor, "cursor")


@dataclass(frozen=True, slots=True)
class _Entry:
    """A reference value to write, from :meth:`Store.put_reference_values`' arguments."""

    name: str
    values: list[Any]
    provenance: str
    expires: datetime | None


def _rv_row(entry: ReferenceValueInput, stamp: datetime) -> dict[str, Any]:
    """A ``reference_values`` row (without its version), every field checked."""
    values = entry.values
    if not isinstance(values, list):
        raise InvalidRecordError(f"reference values must be a list, got {type(values).__name__}")
    if not isinstance(entry.provenance, str):
        raise InvalidRecordError("reference-value provenance must be text")
    return {
        "name": check_name(entry.name, "reference value name"),
        "values_json": check_json(values, "reference values"),
        "provenance": entry.provenance,
        "expires": utc_or_none(entry.expires, "expires"),
        "created_at": stamp,
    }


# --- rows -> records ----------------------------------------------------------------------------


def _session(row: Row[Any]) -> Session:
    return Session(
        id=row.id,
        tee=row.tee,
        nonce=row.nonce,
        request=dict(row.request),
        state=row.state,
        created_at=row.created_at,
        expires_at=row.expires_at,
        token=row.token,
        extra=dict(row.extra),
        nonce_used=bool(row.nonce_used),
    )


def _policy(row: Row[Any]) -> PolicyRecord:
    return PolicyRecord(
        kind=row.kind,
        policy_id=row.policy_id,
        version=row.version,
        source=row.source,
        created_at=row.created_at,
        author=row.author,
    )


def _reference_value(row: Row[Any]) -> ReferenceValueRecord:
    return ReferenceValueRecord(
        name=row.name,
        values=list(row.values_json),
        provenance=row.provenance,
        expires=row.expires,
        version=row.version,
        created_at=row.created_at,
    )


def _audit(row: Row[Any]) -> AuditEvent:
    return AuditEvent(
        kind=row.kind,
        at=row.at,
        session_id=row.session_id,
        tee=row.tee,
        subject=row.subject,
        resource=row.resource,
        verdict=row.verdict,
        failed_rules=list(row.failed_rules),
        detail=dict(row.detail),
        id=row.id,
    )
