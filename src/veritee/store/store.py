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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Row, func, inspect, select

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
    audit_log,
    schema_version,
)
from veritee.store.sealing import Sealer, resource_aad, setting_aad
from veritee.store.statements import Statements

Mode = Literal["read", "one", "tx"]
MAX_AUDIT_PAGE = 10_000


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

    def purge_expired(self, *, now: datetime) -> int:
        """Delete every session expired at ``now``; returns how many."""
        with self._tx("purge_expired", "one") as conn:
            return conn.execute(self._q.session_purge, {"p_now": utc(now, "now")}).rowcount

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

    def list_resources(self) -> list[str]:
        with self._tx("list_resources", "read") as conn:
            return list(conn.execute(self._q.resource_list).scalars())

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

    def list_policies(self, kind: str | None = None) -> list[PolicyRecord]:
        """The latest version of each policy (of ``kind`` if given), by kind then id."""
        if kind is None:
            stmt, params = self._q.policy_list_all, {}
        else:
            stmt, params = self._q.policy_list_kind, {"p_kind": kind}
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
        if not isinstance(values, list):
            raise InvalidRecordError(
                f"reference values must be a list, got {type(values).__name__}"
            )
        head = {"name": check_name(name, "reference value name")}
        row = {
            **head,
            "values_json": check_json(values, "reference values"),
            "provenance": provenance,
            "expires": utc_or_none(expires, "expires"),
            "created_at": utc(now, "now"),
        }
        with self._tx("put_reference_value") as conn:
            version = int(conn.execute(self._q.rv_bump, head).scalar_one())
            conn.execute(self._q.rv_insert, {**row, "version": version})
        return version

    def get_reference_values(self, *, now: datetime) -> dict[str, list[Any]]:
        """``{name: values}`` from the latest version of each name, leaving out names whose
        latest version has expired (a superseded version never comes back)."""
        return {r.name: r.values for r in self.list_reference_values(now=now)}

    def list_reference_values(self, *, now: datetime | None = None) -> list[ReferenceValueRecord]:
        """The latest version of each name, by name; with ``now``, only those not expired."""
        if now is None:
            stmt, params = self._q.rv_list_all, {}
        else:
            stmt, params = self._q.rv_list_live, {"p_now": utc(now, "now")}
        with self._tx("list_reference_values", "read") as conn:
            return [_reference_value(row) for row in conn.execute(stmt, params)]

    def delete_reference_value(self, name: str) -> bool:
        """Delete every version of ``name``; a later put continues the version count."""
        with self._tx("delete_reference_value", "one") as conn:
            return conn.execute(self._q.rv_delete, {"p_name": name}).rowcount > 0

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
        self, *, limit: int = 100, kind: str | None = None, since: datetime | None = None
    ) -> list[AuditEvent]:
        """The newest ``limit`` events (newest first), of ``kind`` and at or after ``since``
        if given."""
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidRecordError(f"limit is {limit}, expected 1..{MAX_AUDIT_PAGE}")
        stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if kind is not None:
            stmt = stmt.where(audit_log.c.kind == check_member(kind, AUDIT_KINDS, "audit kind"))
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= utc(since, "since"))
        with self._tx("list_audit", "read") as conn:
            return [_audit(row) for row in conn.execute(stmt)]

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
